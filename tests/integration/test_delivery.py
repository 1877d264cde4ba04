"""Case delivery you can trust (agent/outbox.c, agent/faults.c, agent/store.c):
nothing lost across a central API outage and agent crashes, nothing
duplicated, no case storms, maintenance windows, a full state directory.

Faults come from SNMP traps (net-snmp's snmptrap, and bench/trapgen for many
keys at once) through the default rules: linkDown opens a P3 fault per
interface, linkUp for the same ifIndex clears it. The truth is the stub's
database, read through its API.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BUILD, require_root, require_tool, wait_until
from test_snmptrap import LINK_DOWN, LINK_UP, TrapAgent, link_key, link_varbinds, v2c_args

FAST = "cases {\n  storm_keys 0\n  case_rate 100000\n  case_burst 100000\n  %s}\n"


class DeliveryAgent(TrapAgent):
    """A trap agent whose config also carries a cases block."""

    def __init__(self, tmp, stub, cases=FAST % "", rules_glob=None):
        os.makedirs(tmp, exist_ok=True)
        super().__init__(tmp, stub, snmp_settings='  community "public"\n', rules_glob=rules_glob)
        with open(self.conf, "a") as f:
            f.write(cases)

    def status(self):
        r = self.ctl("--json", "status")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def faults(self):
        r = self.ctl("--json", "faults")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["faults"]

    def down(self, i, admin=1):
        self.trap(*v2c_args(), ["", LINK_DOWN, *link_varbinds(i, admin=admin)])

    def up(self, i):
        self.trap(*v2c_args(), ["", LINK_UP, *link_varbinds(i, oper=1)])

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.logf.close()
        self.proc = None

    def settled(self):
        """Everything decided so far is on disk (nothing held in memory only)."""
        s = self.status()
        return s["cases"]["not_durable"] == 0 and not s["state"]["failing"]


def firing(agent):
    return {f["key"] for f in agent.faults() if f["state"] == "firing"}


def cases_by_key(stub):
    out = {}
    for c in stub.cases():
        out.setdefault(c["fault_key"], []).append(c)
    return out


@pytest.fixture
def dagent(stub, tmp_path):
    require_tool("snmptrap", "snmp")
    a = DeliveryAgent(str(tmp_path / "agent"), stub)
    yield a
    a.stop()


def test_outage_and_two_crashes_deliver_everything_exactly_once_in_order(stub, tmp_path):
    require_tool("snmptrap", "snmp")
    stub.stop()  # the central API is down from the start; same port and database later
    a = DeliveryAgent(str(tmp_path / "agent"), stub, FAST % "  reopen_window 0s\n")
    keys = [link_key(i) for i in range(1, 51)]
    try:
        a.start()
        for i in range(1, 26):
            a.down(i)
        assert wait_until(lambda: len(firing(a)) == 25 and a.settled(), 20), a.log()
        time.sleep(0.3)
        a.kill9()

        a.start()
        assert len(firing(a)) == 25  # restored, not lost
        for i in range(26, 51):
            a.down(i)
        for i in range(1, 11):
            a.up(i)  # clears faults the previous run opened: their rule state was restored
        assert wait_until(lambda: len(firing(a)) == 40 and a.settled(), 20), a.log()
        time.sleep(0.3)
        a.kill9()

        a.start()
        for i in range(11, 51):
            a.up(i)
        assert wait_until(lambda: not firing(a) and a.settled(), 20), a.log()
        st = a.status()
        assert st["cases"]["opens_pending"] == 50, st["cases"]
        assert st["cases"]["updates_pending"] == 50, st["cases"]
        assert st["cases"]["central_down"] is True

        stub.start()
        assert wait_until(lambda: a.status()["cases"]["sends_pending"] == 0, 40), a.ctl("outbox").stdout
        by_key = cases_by_key(stub)
        assert sorted(by_key) == sorted(keys)
        for key in keys:
            assert len(by_key[key]) == 1, (key, by_key[key])  # exactly one case per fault
            case = stub.case(by_key[key][0]["id"])
            types = [u["type"] for u in case["updates"]]
            assert types == ["cleared"], (key, types)  # exactly once, nothing else
            assert case["fault_active"] is False
            assert case["updates"][0]["created_at"] >= case["created_at"]  # open, then its clear
            assert case["occurrences"] == 1
        # no idempotent replay was needed to hide a duplicate: one case id per key
        assert len({c["idempotency_key"] for cs in by_key.values() for c in cs}) == 50
    finally:
        a.stop()


def test_restart_takes_up_the_open_case_instead_of_a_second_one(dagent, stub):
    dagent.start()
    dagent.down(7)
    case = stub.wait_for(lambda: cases_by_key(stub).get(link_key(7)), 10)[0]
    dagent.stop()
    dagent.start()
    dagent.down(7)  # the same fault, seen again by a new process
    dagent.up(7)
    stub.wait_for(lambda: not stub.case(case["id"])["fault_active"], 10)
    assert len(stub.cases()) == 1
    updates = [u["type"] for u in stub.case(case["id"])["updates"]]
    assert updates.count("cleared") == 1, updates
    assert "reopened" not in updates


def test_opens_and_updates_ask_for_the_minimal_answer(stub, tmp_path):
    """The outbox reads only the id from an answer, so its case opens and
    updates send "Prefer: return=minimal"; the stub (at info) logs the
    preference it applied. The case itself is complete on the stub."""
    require_tool("snmptrap", "snmp")
    stub.stop()
    stub.start(extra_args=["--verbose"])
    a = DeliveryAgent(str(tmp_path / "agent"), stub)
    try:
        a.start()
        a.down(5)
        case = stub.wait_for(lambda: cases_by_key(stub).get(link_key(5)), 10)[0]
        a.up(5)
        stub.wait_for(lambda: not stub.case(case["id"])["fault_active"], 10)
        assert case["title"] and case["evidence"] and case["readings"]
        # the stub's log reaches the test through a pipe drained by a thread,
        # so a line may land a moment after the answer the test already saw
        stub.wait_for(lambda: "POST /api/v1/cases 201 (return=minimal)" in stub.log, 5)
        stub.wait_for(lambda: "POST /api/v1/cases/%d/updates 201 (return=minimal)" % case["id"] in stub.log, 5)
        assert a.status()["cases"]["opened"] == 1
    finally:
        a.stop()


def test_maintenance_window_holds_cases_until_it_ends(dagent, stub):
    dagent.start()
    r = dagent.ctl("maintenance", "start", "--for", "4s", "--reason", "disk swap on the RAID shelf")
    assert r.returncode == 0, r.stderr
    assert "disk swap on the RAID shelf" in r.stdout
    dagent.down(1)  # still down at the end: its case opens then
    dagent.down(2)
    dagent.up(2)  # cleared within the window: never a case
    assert wait_until(lambda: {f["key"]: f for f in dagent.faults()}.get(link_key(1), {}).get("held"), 3)
    time.sleep(1)
    assert stub.cases() == []
    assert dagent.status()["cases"]["maintenance"] is True
    cases = stub.wait_for(lambda: stub.cases(), 10)
    assert [c["fault_key"] for c in cases] == [link_key(1)]
    full = stub.case(cases[0]["id"])
    assert "disk swap on the RAID shelf" in full["extra"]["held"]
    lst = dagent.ctl("maintenance", "list")
    assert "no maintenance window running" in lst.stdout and "ended" in lst.stdout, lst.stdout
    time.sleep(1.5)
    assert len(stub.cases()) == 1


def test_maintenance_window_persists_and_can_end_early(dagent, stub):
    dagent.start()
    assert dagent.ctl("maintenance", "start", "--for", "2h", "--reason", "kernel upgrade").returncode == 0
    again = dagent.ctl("maintenance", "start", "--for", "1h", "--reason", "another")
    assert again.returncode == 1 and "already running" in again.stderr
    dagent.down(3)
    dagent.stop()
    dagent.start()  # the window survives the restart, and the held fault with it
    lst = dagent.ctl("maintenance", "list")
    assert "in a maintenance window: #1" in lst.stdout, lst.stdout
    time.sleep(1)
    assert stub.cases() == []
    r = dagent.ctl("maintenance", "end")
    assert r.returncode == 0, r.stderr
    assert "ended" in dagent.ctl("maintenance", "list").stdout
    case = stub.wait_for(lambda: stub.cases(), 10)[0]
    assert case["fault_key"] == link_key(3)
    assert dagent.ctl("maintenance", "end").returncode == 1
    bad = dagent.ctl("maintenance", "start", "--for", "0s", "--reason", "x")
    assert bad.returncode == 2 and "duration" in bad.stderr


def test_flapping_key_is_one_case_with_one_flapping_note(stub, tmp_path):
    require_tool("snmptrap", "snmp")
    a = DeliveryAgent(str(tmp_path / "agent"), stub, FAST % "  flap_count 3\n  flap_window 3s\n")
    try:
        a.start()
        for _ in range(8):
            a.down(4)
            a.up(4)
        stub.wait_for(lambda: stub.cases(), 10)
        assert wait_until(lambda: a.status()["faults"]["flapping"] == 1, 5), a.log()
        time.sleep(1)
        assert len(stub.cases()) == 1
        case = stub.cases()[0]
        # settles 3 s after the last change: a final note, and the case told it is cleared
        stub.wait_for(lambda: any("stopped flapping" in (u.get("message") or "")
                                  for u in stub.case(case["id"])["updates"]), 10)
        full = stub.case(case["id"])
        types = [u["type"] for u in full["updates"]]
        notes = [u for u in full["updates"] if u["type"] == "note"]
        assert len(notes) == 2, types
        assert notes[0]["flapping"] is True
        assert notes[1]["flapping"] is False
        assert len(types) <= 8, types  # 16 changes, not 16 updates
        assert full["fault_active"] is False
        assert len(stub.cases()) == 1
    finally:
        a.stop()


def test_500_keys_of_one_rule_make_one_summary_case(stub, tmp_path):
    require_tool("snmptrap", "snmp")
    trapgen = os.path.join(BUILD, "bench", "trapgen")
    assert os.access(trapgen, os.X_OK), "make builds build/bench/trapgen for the integration tests"
    a = DeliveryAgent(str(tmp_path / "agent"), stub, "cases {\n  storm_keys 5\n  storm_window 1m\n}\n")
    try:
        a.start()
        r = subprocess.run([trapgen, "-h", "127.0.0.1", "-p", str(a.port), "-r", "2000", "-n", "500", "-k", "500"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: len(firing(a)) == 501, 15), (len(firing(a)), a.log()[-2000:])
        assert wait_until(lambda: a.status()["cases"]["sends_pending"] == 0, 20)
        time.sleep(1.5)  # the summary's note with the later keys goes within a second
        assert wait_until(lambda: a.status()["cases"]["sends_pending"] == 0, 10)
        cases = stub.cases()
        summary = [c for c in cases if c["fault_key"] == "storm:snmp-link-down"]
        assert len(summary) == 1, [c["fault_key"] for c in cases]
        assert len(cases) == 6, [c["fault_key"] for c in cases]  # the first 5 keys, then one summary
        full = stub.case(summary[0]["id"])
        listed = set(full["extra"]["storm_keys"])
        for u in full["updates"]:
            listed |= set(u.get("storm_keys", []))
        assert len(listed) == 200  # the first 200 by name ...
        notes = [u for u in full["updates"] if u["type"] == "note"]
        assert notes and notes[-1]["storm_members"] == 495
        assert notes[-1]["storm_unlisted"] == 295  # ... the rest counted, not silently shed
        assert "rule snmp-link-down" in full["title"]
        st = a.status()["cases"]
        assert st["storm_summarised"] == 495
    finally:
        a.stop()


def test_full_state_directory_is_reported_and_recovers(stub, tmp_path):
    require_root("needs root to mount a small tmpfs for the state directory")
    require_tool("snmptrap", "snmp")
    state = tmp_path / "agent" / "state"
    state.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    a = DeliveryAgent(str(tmp_path / "agent"), stub)
    try:
        a.start()
        a.down(1)
        stub.wait_for(lambda: stub.cases(), 10)
        # fill the filesystem, then more faults come
        subprocess.run(["dd", "if=/dev/zero", "of=%s/filler" % state, "bs=64k"], capture_output=True)
        for i in range(2, 40):
            a.down(i)
        assert wait_until(lambda: a.status()["state"]["failing"], 10), a.log()[-2000:]
        st = a.status()
        assert "full" in st["state"]["error"], st["state"]
        assert st["cases"]["not_durable"] > 0
        assert wait_until(lambda: "cannot save" in a.log() and "held in memory only" in a.log(), 5), a.log()[-2000:]
        time.sleep(1.5)
        assert len(stub.cases()) == 1  # nothing is sent before it is on disk
        assert a.proc.poll() is None
        assert "NOT SAVING" in a.ctl("status").stdout
        os.unlink(state / "filler")  # space returns
        assert wait_until(lambda: not a.status()["state"]["failing"], 10)
        stub.wait_for(lambda: len(stub.cases()) == 39, 20)
        assert wait_until(lambda: "saving works again" in a.log(), 5), a.log()[-2000:]
    finally:
        a.stop()
        subprocess.run(["umount", "-l", str(state)])


@pytest.fixture
def tstub(tmp_path):
    """A stub with --test-control, for fault injection."""
    from conftest import StubProcess

    d = tmp_path / "tstub"
    d.mkdir()
    s = StubProcess(d, test_control=True)
    try:
        s.start()
        yield s
    finally:
        code = s.stop()
        s._kill()
    assert code in (0, None), s.log[-2000:]


def responsive(agent, seconds):
    """weibaoctl answers within a second, again and again, for seconds; returns the worst time."""
    worst = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t = time.monotonic()
        r = agent.ctl("--json", "status")
        dt = time.monotonic() - t
        assert r.returncode == 0, r.stderr
        worst = max(worst, dt)
        time.sleep(0.1)
    return worst


def settle(agent, stub, timeout=30):
    """Waits until every injection was used and the agent owes nothing. The
    test must not ask the stub's API before: an injection hits whatever
    request comes next, the test's own included."""
    assert wait_until(lambda: not stub.injections()["injections"] and
                      agent.status()["cases"]["sends_pending"] == 0, timeout), agent.ctl("outbox").stdout


def test_a_hostile_central_api_still_gets_everything_exactly_once(tstub, tmp_path):
    require_tool("snmptrap", "snmp")
    stub = tstub
    a = DeliveryAgent(str(tmp_path / "agent"), stub, FAST % "")
    # answers time out after 2 s (the agent's timeout), so a 10 s stall is a lost answer
    try:
        a.start()
        # 1. three 500s, then it works
        stub.inject(action="status", status=500, count=3)
        a.down(1)
        settle(a, stub)
        case1 = cases_by_key(stub)[link_key(1)][0]
        # 2. 429 with Retry-After: 3 s of waiting, honoured
        stub.inject(action="status", status=429, retry_after=3, count=1)
        t0 = time.monotonic()
        a.down(2)
        settle(a, stub)
        assert time.monotonic() - t0 >= 2.5, "Retry-After: 3 was not honoured"
        # 3. a 10 s stall: the request is stored, its answer comes too late; the retry is a replay
        stub.inject(action="delay", seconds=10, count=1)
        a.down(3)
        worst = responsive(a, 4)
        assert worst < 1.0, "weibaoctl took %.2f s while the central API stalled" % worst
        settle(a, stub)
        # 4. dropped connections, before and after the server stored the request
        stub.inject(action="drop", when="before", count=1)
        stub.inject(action="drop", when="after", count=1)
        a.down(4)
        settle(a, stub)
        # 5. garbage answers, after and before processing: on an update this time
        stub.inject(action="garbage", when="after", count=1)
        stub.inject(action="garbage", when="before", count=1)
        a.up(1)  # the "cleared" of case 1
        settle(a, stub)
        applied = stub.injections()["applied"]
        assert applied == {"status": 4, "delay": 1, "drop": 2, "garbage": 2}, applied
        # exactly once: one case per key, one cleared update on case 1
        by_key = cases_by_key(stub)
        assert sorted(by_key) == sorted(link_key(i) for i in range(1, 5))
        assert all(len(v) == 1 for v in by_key.values()), by_key
        assert [u["type"] for u in stub.case(case1["id"])["updates"]] == ["cleared"]
        assert stub.case(case1["id"])["fault_active"] is False
        log = a.log()
        assert "HTTP 500" in log and "HTTP 429" in log
        assert stub.token not in log
    finally:
        a.stop()


def test_a_refused_request_is_parked_and_retried_on_request(tstub, tmp_path):
    require_tool("snmptrap", "snmp")
    stub = tstub
    a = DeliveryAgent(str(tmp_path / "agent"), stub)
    try:
        a.start()
        stub.inject(action="status", status=422, count=1)
        a.down(9)
        assert wait_until(lambda: a.status()["cases"]["parked"] == 1, 10), a.log()[-2000:]
        time.sleep(2)
        assert not stub.injections()["injections"]
        assert stub.cases() == []  # not retried blindly
        out = a.ctl("outbox").stdout
        assert "parked: HTTP 422" in out and "injected" in out, out
        assert "refused by the central API (HTTP 422" in a.log()
        r = a.ctl("outbox", "retry")
        assert r.returncode == 0 and "1 parked" in r.stdout, r.stdout
        stub.wait_for(lambda: stub.cases(), 10)
        assert a.status()["cases"]["parked"] == 0
    finally:
        a.stop()


def test_each_new_firing_period_names_the_case_just_before_it(stub, tmp_path):
    """reopen_window 0s: every recurrence is a new case, and each names its
    predecessor in previous_case_id, not the first case of the key."""
    require_tool("snmptrap", "snmp")
    a = DeliveryAgent(str(tmp_path / "agent"), stub, FAST % "  reopen_window 0s\n  flap_count 20\n")
    key = link_key(6)
    try:
        a.start()
        ids = []
        for period in range(4):
            a.down(6)
            new = stub.wait_for(lambda: [c for c in stub.cases(fault_key=key) if c["id"] not in ids], 10)
            assert len(new) == 1, new
            ids.append(new[0]["id"])
            # the agent knows the new case's id before the next period starts,
            # and its once-a-second walk has copied it to the fault: the next
            # open names it itself (not through the outbox's link to the record)
            assert wait_until(lambda: any(f["key"] == key and str(f.get("case_id")) == str(ids[-1])
                                          for f in a.faults()), 5), a.faults()
            time.sleep(1.5)
            a.up(6)
            assert wait_until(lambda: not stub.case(ids[-1])["fault_active"], 10), (period, a.faults(), a.log()[-3000:])
        prevs = [stub.case(i)["extra"].get("previous_case_id") for i in ids]
        assert prevs == [None] + [str(i) for i in ids[:-1]] or prevs == [None] + ids[:-1], (ids, prevs)
        assert a.status()["faults"]["flapping"] == 0
    finally:
        a.stop()


def test_a_key_forgotten_after_its_windows_still_names_its_last_case(stub, tmp_path):
    """A cleared fault is forgotten once its reopen and flap windows are over;
    its last case id outlives it (across a restart too), and the key's next
    firing period opens a case naming that case."""
    require_tool("snmptrap", "snmp")
    a = DeliveryAgent(str(tmp_path / "agent"), stub, FAST % "  reopen_window 0s\n  flap_window 1s\n")
    key = link_key(6)
    try:
        a.start()
        a.down(6)
        first = stub.wait_for(lambda: stub.cases(fault_key=key), 10)[0]
        a.up(6)
        stub.wait_for(lambda: not stub.case(first["id"])["fault_active"], 10)
        assert wait_until(lambda: not any(f["key"] == key for f in a.faults()), 10), a.faults()
        assert a.status()["faults"]["remembered"] == 1
        a.stop()
        a.start()
        assert a.faults() == [] and a.status()["faults"]["remembered"] == 1
        a.down(6)
        cases = stub.wait_for(lambda: len(stub.cases(fault_key=key)) == 2 and stub.cases(fault_key=key), 10)
        second = [c for c in cases if c["id"] != first["id"]][0]
        assert str(stub.case(second["id"])["extra"]["previous_case_id"]) == str(first["id"])
        assert a.status()["faults"]["remembered"] == 0  # taken up by the new fault
    finally:
        a.stop()


EVIDENCE_MAX = 8  # FAULT_EVIDENCE_MAX in agent/faults.c

# A second rule on the same key: a link down while administratively down too
# is P1; the next linkDown with the admin status up ends that rule, so the
# fault goes P3 -> P1 -> P3 ..., each rise a new piece of evidence.
ADMIN_DOWN_RULES = """rule snmp-link-admin-down {
        when source == "snmptrap" and trap == "IF-MIB::linkDown" and varbind[\"IF-MIB::ifAdminStatus\"] == "down"
        clear trap == "IF-MIB::linkUp" or varbind[\"IF-MIB::ifAdminStatus\"] == "up"
        level P1
        key "snmp:link:{source_addr}:{varbind[IF-MIB::ifIndex]}"
        title "Link administratively down on {source_addr}: ifIndex {varbind[IF-MIB::ifIndex]}"
}
"""


def test_a_reload_that_changes_a_rules_key_clears_its_faults(stub, tmp_path):
    """The old key's state could never clear once the rule makes other keys:
    the reload clears the fault and tells its case why; the rule then fires
    under its new key."""
    require_tool("snmptrap", "snmp")
    extra = tmp_path / "extra.rules"
    extra.write_text(ADMIN_DOWN_RULES.replace("snmp:link:", "snmp:admin:"))
    a = DeliveryAgent(str(tmp_path / "agent"), stub, rules_glob=str(extra))
    try:
        a.start()
        a.down(4, admin=2)
        old = stub.wait_for(lambda: stub.cases(fault_key="snmp:admin:127.0.0.1:4"), 10)[0]
        extra.write_text(ADMIN_DOWN_RULES.replace("snmp:link:", "snmp:admin-port:"))
        a.proc.send_signal(signal.SIGHUP)
        stub.wait_for(lambda: not stub.case(old["id"])["fault_active"], 10)
        (cleared,) = [u for u in stub.case(old["id"])["updates"] if u["type"] == "cleared"]
        assert "key changed, by a reload" in cleared["message"], cleared
        a.down(4, admin=2)
        stub.wait_for(lambda: stub.cases(fault_key="snmp:admin-port:127.0.0.1:4"), 10)
    finally:
        a.stop()


def test_a_case_carries_its_evidence_bounded_with_the_exact_symptoms(stub, tmp_path):
    """The case opens after a maintenance window with more events behind it
    than it keeps: the first and the latest ones, each with its time, source
    and every attribute (trap OID, varbinds)."""
    require_tool("snmptrap", "snmp")
    extra = tmp_path / "extra.rules"
    extra.write_text(ADMIN_DOWN_RULES)
    a = DeliveryAgent(str(tmp_path / "agent"), stub, rules_glob=str(extra))
    try:
        a.start()
        assert a.ctl("maintenance", "start", "--for", "1h", "--reason", "cabling").returncode == 0
        a.down(12)  # P3: the first event
        for _ in range(10):
            a.down(12, admin=2)  # P1: evidence
            a.down(12)  # back to P3 (a clear of the P1 rule: no evidence)
        a.down(12, admin=2)
        assert wait_until(lambda: [f for f in a.faults() if f["key"] == link_key(12) and f["level"] == "P1"], 10)
        time.sleep(0.5)
        assert a.ctl("maintenance", "end").returncode == 0
        case = stub.wait_for(lambda: stub.cases(fault_key=link_key(12)), 10)[0]
        ev = case["evidence"]
        assert isinstance(ev, list) and len(ev) == EVIDENCE_MAX, ev  # 12 events, bounded
        times = [e["time"] for e in ev]
        assert times == sorted(times)
        for e in ev:
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", e["time"]), e
            assert e["source"] == "snmptrap" and e["name"] == "linkDown", e
            attrs = e["attributes"]
            assert attrs["trap_oid"] == "1.3.6.1.6.3.1.1.5.3", attrs
            assert attrs["varbind[IF-MIB::ifIndex]"] == 12, attrs
            assert attrs["varbind[IF-MIB::ifDescr]"] == "eth12", attrs
            assert attrs["varbind[IF-MIB::ifOperStatus]"] == "down", attrs
        # the first event is kept; the others are the latest, all P1 rises
        assert ev[0]["attributes"]["varbind[IF-MIB::ifAdminStatus]"] == "up"
        assert all(e["attributes"]["varbind[IF-MIB::ifAdminStatus]"] == "down" for e in ev[1:])
        assert ev[0]["time"] <= case["first_seen"] or case["first_seen"].startswith(ev[0]["time"][:19])
        assert case["level"] == "P1"
        assert case["readings"]["varbind[IF-MIB::ifAdminStatus]"] == "down"
    finally:
        a.stop()


def test_kill_9_while_opens_and_updates_are_in_flight_delivers_each_once_in_order(tstub, tmp_path):
    """The agent dies twice with requests on the wire whose answers the stub
    holds back (stored, not yet answered): once with every case open in
    flight, once with every level update in flight. After the restarts each
    key has one case, and its updates arrive once each, in order: level
    (P3 -> P1), then cleared."""
    require_tool("snmptrap", "snmp")
    stub = tstub
    n = 8
    extra = tmp_path / "extra.rules"
    extra.write_text(ADMIN_DOWN_RULES)
    a = DeliveryAgent(str(tmp_path / "agent"), stub, rules_glob=str(extra))
    with open(a.conf) as f:
        conf = f.read()
    assert "  timeout 2s\n" in conf
    with open(a.conf, "w") as f:  # a held answer must still be awaited when the agent dies
        f.write(conf.replace("  timeout 2s\n", "  timeout 30s\n"))
    keys = [link_key(i) for i in range(1, n + 1)]

    def injected():
        return stub.log.count(": injecting delay")

    try:
        stub.inject(action="delay", seconds=8, count=n, match="/api/v1/cases")
        a.start()
        for i in range(1, n + 1):
            a.down(i)
        assert wait_until(lambda: injected() == n, 10), stub.log[-2000:]
        for i in range(1, n + 1):
            a.down(i, admin=2)  # P1: a level update, queued behind the open in flight
        assert wait_until(lambda: a.settled() and
                          all(f["level"] == "P1" for f in a.faults() if f["key"] in keys), 10), a.log()[-2000:]
        st = a.status()["cases"]
        assert st["in_flight"] == n and st["opens_pending"] == n and st["updates_pending"] == n, st
        a.kill9()

        # every open reached the stub before the crash; the level updates are held next
        stub.inject(action="delay", seconds=8, count=n, match="/api/v1/cases/")
        a.start()
        assert wait_until(lambda: injected() == 2 * n, 15), stub.log[-2000:]
        assert wait_until(lambda: a.status()["cases"]["opens_pending"] == 0, 10)
        st = a.status()["cases"]
        assert st["in_flight"] == n and st["updates_pending"] == n, st
        a.kill9()

        a.start()
        assert firing(a) == set(keys)  # restored, not lost
        for i in range(1, n + 1):
            a.up(i)
        settle(a, stub)
        by_key = cases_by_key(stub)
        assert sorted(by_key) == sorted(keys)
        for key in keys:
            assert len(by_key[key]) == 1, (key, by_key[key])  # the open replayed, never a second case
            case = stub.case(by_key[key][0]["id"])
            types = [u["type"] for u in case["updates"]]
            assert types == ["level", "cleared"], (key, types)  # once each, in order
            assert case["updates"][0]["previous_level"] == "P3" and case["updates"][0]["level"] == "P1"
            assert case["level"] == "P1" and case["fault_active"] is False
        applied = stub.injections()["applied"]
        assert applied["delay"] == 2 * n and sum(applied.values()) == 2 * n, applied
        # the opens were stored before the first crash: their retries were replays
        assert a.log().count("already open (idempotent retry)") == n, a.log()[-3000:]
    finally:
        a.stop()
