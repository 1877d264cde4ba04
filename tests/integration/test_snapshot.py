"""The health snapshot and the downtime ledger (agent/snapshot.c,
agent/history.c, agent/ledger.c): every snapshot taken here validates against
the schema in docs/snapshot.md; kill -9 and clean stops land in the ledger as
unclean and clean outages of the right length; readings show up in the
history.
"""

import json
import os
import re
import signal
import time

import pytest

from conftest import ROOT, require_root, require_tool, wait_until
from test_snmptrap import LINK_DOWN, TrapAgent, link_key, link_varbinds, v2c_args


def schema():
    text = open(os.path.join(ROOT, "docs", "snapshot.md")).read()
    m = re.search(r"## Schema.*?```json\n(.*?)```", text, re.S)
    assert m, "no schema block in docs/snapshot.md"
    return json.loads(m.group(1))


TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def validate(value, sch, path="$"):
    """The subset of JSON Schema docs/snapshot.md uses; raises AssertionError with the path."""
    types = sch.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        ok = False
        for t in types:
            if t == "integer":
                ok |= isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
            elif t == "number":
                ok |= isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok |= isinstance(value, TYPES[t])
        assert ok, f"{path}: expected {types}, got {type(value).__name__} {value!r:.80}"
    if "enum" in sch:
        assert value in sch["enum"], f"{path}: {value!r} not in {sch['enum']}"
    if "minimum" in sch and isinstance(value, (int, float)):
        assert value >= sch["minimum"], f"{path}: {value} < {sch['minimum']}"
    if "pattern" in sch and isinstance(value, str):
        assert re.search(sch["pattern"], value), f"{path}: {value!r} does not match {sch['pattern']}"
    if isinstance(value, dict):
        for k in sch.get("required", []):
            assert k in value, f"{path}: missing {k}"
        for k, sub in sch.get("properties", {}).items():
            if k in value:
                validate(value[k], sub, f"{path}.{k}")
    if isinstance(value, list) and "items" in sch:
        for i, v in enumerate(value):
            validate(v, sch["items"], f"{path}[{i}]")


def test_the_validator_refuses_what_the_schema_forbids():
    s = schema()
    with pytest.raises(AssertionError):
        validate({"version": 1}, s)
    with pytest.raises(AssertionError, match="version"):
        validate({"version": 2}, {"properties": {"version": {"enum": [1]}}})
    with pytest.raises(AssertionError, match="quarter"):
        validate({"quarter": "2026-Q5"}, {"properties": {"quarter": {"type": "string", "pattern": r"^\d{4}-Q[1-4]$"}}})


class LedgerAgent(TrapAgent):
    def __init__(self, tmp, stub, alive="1s"):
        os.makedirs(tmp, exist_ok=True)
        super().__init__(tmp, stub, snmp_settings='  community "public"\n')
        text = open(self.conf).read()
        text = text.replace("  log_level debug\n", "  log_level debug\n  alive_interval %s\n" % alive, 1)
        with open(self.conf, "w") as f:
            f.write(text)

    def snapshot(self, *args):
        r = self.ctl("snapshot", *args)
        assert r.returncode == 0, r.stderr
        snap = json.loads(r.stdout)
        validate(snap, schema())
        return snap

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.logf.close()
        self.proc = None


@pytest.fixture
def lagent(stub, tmp_path):
    require_tool("snmptrap", "snmp")
    a = LedgerAgent(str(tmp_path / "agent"), stub)
    yield a
    a.stop()


def test_snapshot_validates_and_carries_inventory_config_faults_and_events(lagent, stub):
    lagent.start()
    lagent.trap(*v2c_args(), ["", LINK_DOWN, *link_varbinds(5)])
    stub.wait_for(lambda: stub.cases(), 10)
    wait_until(lambda: any(e["kind"] == "case-opened" for e in lagent.snapshot()["history"]["events"]), 5)
    snap = lagent.snapshot("--since", "7d")
    assert snap["version"] == 1
    assert snap["agent"]["cpus"] == os.cpu_count()
    assert snap["config"]["path"] == lagent.conf
    assert len(snap["config"]["rules_files"]) >= 3
    assert [f["key"] for f in snap["faults"]] == [link_key(5)]
    kinds = [(e["kind"], e["object"]) for e in snap["history"]["events"]]
    assert ("fault-firing", link_key(5)) in kinds and ("case-opened", link_key(5)) in kinds, kinds
    assert ("agent-start", "trap-agent") in kinds
    assert snap["collectors"][0]["name"] == "snmptrap"
    assert snap["agent_health"]["cases"]["opened"] == 1
    # the digest follows the file: another comment, another digest
    before = snap["config"]["digest"]
    with open(lagent.conf, "a") as f:
        f.write("# changed\n")
    assert lagent.snapshot()["config"]["digest"] != before
    bad = lagent.ctl("snapshot", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_kill_then_clean_stop_make_one_unclean_and_one_clean_outage(lagent, stub):
    lagent.start()
    time.sleep(1.5)  # a sign of life after the start
    lagent.kill9()
    t0 = time.time()
    time.sleep(3)
    lagent.start()
    gap1 = time.time() - t0
    outages = lagent.snapshot()["downtime"]["outages"]
    assert len(outages) == 1, outages
    o = outages[0]
    assert o["clean"] is False and o["host_rebooted"] is False
    # from the last sign of life (at most alive_interval before the kill) to the start
    assert gap1 - 0.5 <= o["duration_s"] <= gap1 + 1.5, (o, gap1)

    lagent.stop()  # SIGTERM: a clean stop
    t1 = time.time()
    time.sleep(2)
    lagent.start()
    gap2 = time.time() - t1
    dt = lagent.snapshot()["downtime"]
    assert len(dt["outages"]) == 2, dt["outages"]
    c = dt["outages"][1]
    assert c["clean"] is True
    assert gap2 - 0.5 <= c["duration_s"] <= gap2 + 0.5, (c, gap2)
    assert abs(dt["unclean_s"] - o["duration_s"]) < 0.01
    assert abs(dt["clean_s"] - c["duration_s"]) < 0.01
    assert dt["warranty_days"] == 0  # seconds of downtime earn no day
    # whole quarters from the one holding since: the outages fall in one of them
    q = [x for x in dt["quarters"] if x["outages"]]
    assert len(q) == 1 and q[0]["outages"] == 2, dt["quarters"]
    # the agent alone was down (same boot id): listed, not system downtime
    assert not any(x["counted"] for x in dt["outages"])
    assert dt["system_down_s"] == 0 and q[0]["system_down_s"] == 0
    assert lagent.snapshot()["agent_health"]["restarts"] == 2


def test_readings_show_up_in_the_history(stub, tmp_path):
    require_root()
    from test_agent import Agent, LABEL  # the sensor agent on a fake hwmon tree

    a = Agent(str(tmp_path), stub.url, stub.token_file)
    try:
        a.start()
        a.hw.set_temp("testcpu", 1, 50.0)
        time.sleep(2.5)
        a.hw.set_temp("testcpu", 1, 54.0)
        time.sleep(2)
        r = a.ctl("snapshot", "--since", "1h")
        assert r.returncode == 0, r.stderr
        snap = json.loads(r.stdout)
        validate(snap, schema())
        temps = [s for s in snap["history"]["series"] if s["source"] == "sensor" and LABEL in s["object"]]
        assert temps, snap["history"]["series"]
        s = temps[0]
        assert s["unit"] == "C"
        assert s["thresholds"] == {"max": 80.0, "crit": 95.0}, s
        assert s["summary"]["max"] >= 54.0 and s["summary"]["min"] <= 50.0, s["summary"]
        assert s["summary"]["readings"] >= 3
        assert s["minutes"], s
    finally:
        a.stop()
