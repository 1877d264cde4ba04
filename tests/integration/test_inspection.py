"""Quarterly inspections end to end: agents check in with a weibao-stub, an
inspection request on the stub reaches them in their next check-in answer,
and each uploads its snapshot through its outbox (no inbound port on the
agent); an agent kept away from the stub is a P1 "host not reporting" case
opened by the central side, cleared when it returns; the central side can
start a maintenance window.
"""

import json
import os
import signal
import time

import pytest

from conftest import StubProcess, require_tool, wait_until
from test_snapshot import schema, validate
from test_snmptrap import TrapAgent


class CheckinAgent(TrapAgent):
    def __init__(self, tmp, stub, agent_id):
        os.makedirs(tmp, exist_ok=True)
        super().__init__(tmp, stub, snmp_settings='  community "public"\n')
        text = open(self.conf).read()
        text = text.replace('id "trap-agent"', 'id "%s"' % agent_id, 1)
        text = text.replace("  occurrence_interval 1s\n", "  occurrence_interval 1s\n  checkin_interval 1s\n", 1)
        with open(self.conf, "w") as f:
            f.write(text)
        self.agent_id = agent_id

    def status(self):
        r = self.ctl("--json", "status")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture
def cstub(tmp_path):
    d = tmp_path / "cstub"
    d.mkdir()
    s = StubProcess(d, test_control=True)
    try:
        s.start(["--deadman-intervals", "3"])
        yield s
    finally:
        code = s.stop()
        s._kill()
    assert code in (0, None), s.log[-2000:]


def agents_of(stub):
    r = stub.get("/api/v1/agents")
    assert r.status == 200, r
    return {a["agent_id"] if "agent_id" in a else a["id"]: a for a in r.json["agents"]}


def test_inspection_of_two_agents_stores_both_snapshots_within_a_checkin(cstub, tmp_path):
    require_tool("snmptrap", "snmp")
    a1 = CheckinAgent(str(tmp_path / "a1"), cstub, "host-one")
    a2 = CheckinAgent(str(tmp_path / "a2"), cstub, "host-two")
    try:
        a1.start()
        a2.start()
        assert wait_until(lambda: {"host-one", "host-two"} <= set(agents_of(cstub)), 10), agents_of(cstub)
        r = cstub.post("/api/v1/inspections", json={"agents": ["host-one", "host-two"], "seconds": 86400},
                       headers={"Idempotency-Key": "insp-1"})
        assert r.status == 201, r
        req = str(r.json["id"])
        t0 = time.monotonic()

        def stored(agent_id):
            g = cstub.get("/api/v1/agents/%s/snapshots/%s" % (agent_id, req))
            return g.json if g.status == 200 else None

        assert wait_until(lambda: stored("host-one") and stored("host-two"), 10)
        took = time.monotonic() - t0
        assert took < 1.0 + 2.0, "both snapshots within one check-in interval (1 s) and the upload: %.1f s" % took
        for agent_id in ("host-one", "host-two"):
            snap = stored(agent_id)
            validate(snap, schema())
            assert snap["agent"]["id"] == agent_id
        insp = cstub.get("/api/v1/inspections/%s" % req)
        assert insp.status == 200, insp
        # the agents acknowledged the command: it is not run twice
        time.sleep(2.5)
        for a in (a1, a2):
            assert a.status()["checkin"]["commands"] == 1, a.status()["checkin"]
            assert a.status()["cases"]["requests_pending"] == 0
    finally:
        a1.stop()
        a2.stop()


def test_an_agent_kept_away_is_a_p1_not_reporting_case_cleared_on_return(cstub, tmp_path):
    require_tool("snmptrap", "snmp")
    a = CheckinAgent(str(tmp_path / "a"), cstub, "host-gone")
    try:
        a.start()
        assert wait_until(lambda: "host-gone" in agents_of(cstub), 10)
        a.proc.send_signal(signal.SIGKILL)  # a crashed host cannot report its own crash
        a.proc.wait()
        a.logf.close()
        a.proc = None

        def not_reporting():
            return [c for c in cstub.cases() if c["fault_key"] == "central:not-reporting:host-gone"]

        cases = cstub.wait_for(not_reporting, 15)
        case = cases[0]
        assert case["level"] == "P1"
        assert case["fault_active"] is True
        assert "not reporting" in case["title"]
        a.start()
        cstub.wait_for(lambda: not cstub.case(case["id"])["fault_active"], 10)
        assert [u["type"] for u in cstub.case(case["id"])["updates"]] == ["cleared"]
        assert len(not_reporting()) == 1
    finally:
        a.stop()


def test_the_central_side_starts_a_maintenance_window(cstub, tmp_path):
    require_tool("snmptrap", "snmp")
    a = CheckinAgent(str(tmp_path / "a"), cstub, "host-maint")
    try:
        a.start()
        assert wait_until(lambda: "host-maint" in agents_of(cstub), 10)
        r = cstub.post("/api/v1/agents/host-maint/commands",
                       json={"type": "maintenance-start", "seconds": 600, "reason": "controller firmware"},
                       headers={"Idempotency-Key": "m-1"})
        assert r.status in (200, 201), r
        assert wait_until(lambda: a.status()["cases"]["maintenance"], 5), a.log()[-2000:]
        assert "controller firmware" in a.ctl("maintenance").stdout
        r = cstub.post("/api/v1/agents/host-maint/commands", json={"type": "maintenance-end"},
                       headers={"Idempotency-Key": "m-2"})
        assert r.status in (200, 201), r
        assert wait_until(lambda: not a.status()["cases"]["maintenance"], 5)
    finally:
        a.stop()


def test_the_inspection_report_page_shows_both_hosts_and_their_open_cases(cstub, tmp_path):
    require_tool("snmptrap", "snmp")
    require_tool("chromium", "chromium")
    from test_report import ARTIFACTS, chromium
    from test_snmptrap import LINK_DOWN, link_varbinds, v2c_args

    a1 = CheckinAgent(str(tmp_path / "a1"), cstub, "rep-one")
    a2 = CheckinAgent(str(tmp_path / "a2"), cstub, "rep-two")
    try:
        a1.start()
        a2.start()
        a1.trap(*v2c_args(), ["", LINK_DOWN, *link_varbinds(6, descr="<b>uplink</b>")])
        cstub.wait_for(lambda: cstub.cases(), 10)
        assert wait_until(lambda: {"rep-one", "rep-two"} <= set(agents_of(cstub)), 10)
        r = cstub.post("/api/v1/inspections", json={"agents": ["rep-one", "rep-two"]},
                       headers={"Idempotency-Key": "insp-rep"})
        assert r.status == 201, r
        req = r.json["id"]
        assert wait_until(lambda: cstub.get("/api/v1/inspections/%s" % req).json["snapshots_received"] == 2, 10)
        page = cstub.get("/inspections/%s/report.html" % req)
        assert page.status == 200, page
        assert page.headers["content-type"].startswith("text/html")
        html = page.body.decode()
        assert "<script" not in html
        assert "&lt;b&gt;uplink&lt;/b&gt;" in html or "&lt;b&gt;uplink" in html  # the device's text, escaped
        path = tmp_path / "inspection.html"
        path.write_text(html)
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "inspection-report.png")
        r = chromium("--screenshot=" + shot, "--window-size=1280,3000", "file://" + str(path))
        assert r.returncode == 0 and os.path.getsize(shot) > 10000, r.stderr[-2000:]
        dom = chromium("--dump-dom", "file://" + str(path)).stdout
        assert "rep-one" in dom and "rep-two" in dom
        assert dom.count("<svg") >= 4
        case = cstub.cases()[0]
        assert case["title"].split(":")[0] in dom  # the open case is listed
        # no token, no page
        assert cstub.get("/inspections/%s/report.html" % req, auth=False).status == 401
        assert cstub.get("/inspections/999/report.html").status == 404
    finally:
        a1.stop()
        a2.stop()
