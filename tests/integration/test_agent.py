"""End-to-end: real libsensors on a fake hwmon tree -> weibao-agent -> weibao-stub.

The agent runs in a private mount namespace (unshare -m) whose /sys/class/hwmon
is a directory of this test; writing temp1_input there changes what libsensors
reads inside. Needs root for the namespace: without it the tests skip with a
reason, and under CI=true a skip is a failure (see conftest.require_root).
"""
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, ROOT, AgentProcess, _die_with_parent, require_root, wait_until
from hwmon import FakeHwmon

# Short durations so the suite stays quick; the shipped default rules are
# exercised by test_default_rules_open_p3_case. As in the defaults, the P3 rule
# waits less than the P4 one, so a sudden overheat opens its case at P3 at once.
FAST_RULES = """
rule temperature-high {
    when   source == "sensor" and name == "temperature" and value >= max
    for    3s
    clear  value < max - 3 for 2s
    level  P4
    key    "temp:{chip}/{label}"
    title  "Temperature high: {label} on {chip} at {value} C (max {max} C)"
}

rule temperature-critical {
    when   source == "sensor" and name == "temperature" and (value >= crit or alarm)
    for    2s
    clear  value < crit - 5 and not alarm for 3s
    level  P3
    key    "temp:{chip}/{label}"
    title  "Temperature alarm: {label} on {chip} at {value} C (critical {crit} C)"
    description "reading {value} C, max {max} C, critical {crit} C"
}
"""

CHIP = "testcpu-virtual-0"
LABEL = "Package id 0"
KEY = "temp:%s/%s" % (CHIP, LABEL)


class Agent(AgentProcess):
    """One weibao-agent in its own mount namespace with a fake hwmon tree."""

    def __init__(self, tmp, stub_url, token_file, rules_text=FAST_RULES, interval="1s", rules_glob=None,
                 extra_conf='collector snmptrap {\n  enabled no\n}\n', central_extra=""):
        self.tmp = tmp
        self.hw = FakeHwmon(os.path.join(tmp, "hwmon"))
        self.hw.add_chip("testcpu", [dict(label=LABEL, input=45.0, max=80.0, crit=95.0)])
        self.rules_dir = os.path.join(tmp, "rules.d")
        os.makedirs(self.rules_dir, exist_ok=True)
        if rules_text is not None:
            self.write_rules(rules_text)
        self.sock = os.path.join(tmp, "agent.sock")
        self.log_path = os.path.join(tmp, "agent.log")
        self.conf = os.path.join(tmp, "agent.conf")
        with open(self.conf, "w") as f:
            f.write(
                'agent {\n  id "test-agent"\n  state_dir "%s"\n  control_socket "%s"\n'
                '  log_level debug\n  rules "%s"\n}\n'
                'central {\n  url "%s"\n  token_file "%s"\n  timeout 2s\n  retry 1s\n%s}\n'
                "collector sensors {\n  interval %s\n  max_jump 100\n}\n"
                % (os.path.join(tmp, "state"), self.sock, rules_glob or os.path.join(self.rules_dir, "*.rules"),
                   stub_url, token_file, central_extra, interval)
                + extra_conf
            )
        self.proc = None

    def write_rules(self, text, name="test.rules"):
        with open(os.path.join(self.rules_dir, name), "w") as f:
            f.write(text)

    def start(self, env=None):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.hw.wrap([os.path.join(BUILD, "weibao-agent"), "--config", self.conf]),
            stdout=self.logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            env=dict(os.environ, **(env or {})))
        wait_until(lambda: os.path.exists(self.sock) or self.proc.poll() is not None, 10)
        assert self.proc.poll() is None, "agent exited early:\n" + self.log()


@pytest.fixture
def agent(stub, tmp_path):
    require_root()
    a = Agent(str(tmp_path), stub.url, stub.token_file)
    yield a
    a.stop()


def cases_for(stub, key=KEY):
    return [c for c in stub.cases() if c["fault_key"] == key]


def test_hot_sensor_opens_one_case_then_clears(agent, stub):
    agent.start()
    time.sleep(2)
    assert cases_for(stub) == []
    t0 = time.monotonic()
    agent.hw.set_temp("testcpu", 1, 97.0)
    # poll interval (1 s) + for (2 s) + 2 s
    c = stub.wait_for(lambda: cases_for(stub), 5.5)
    assert c, "no case within interval + for + 2 s; agent log:\n" + agent.log()
    assert time.monotonic() - t0 <= 5.5
    c = cases_for(stub)
    assert len(c) == 1
    case = stub.case(c[0]["id"])
    assert case["level"] == "P3"
    assert case["rule"] == "temperature-critical"
    assert case["fault_key"] == KEY
    assert "97" in case["title"] and LABEL in case["title"] and CHIP in case["title"]
    assert case["readings"]["value"] == 97.0
    assert case["readings"]["crit"] == 95.0
    assert case["readings"]["max"] == 80.0
    assert case["readings"]["chip"] == CHIP
    assert case["readings"]["label"] == LABEL
    assert case["agent"]["id"] == "test-agent"
    for field in ("hostname", "machine_id", "os", "kernel", "version", "hw_vendor", "hw_model", "cpu_model", "cpus",
                  "memory_bytes"):
        assert field in case["agent"]
    assert case["agent"]["cpus"] == os.cpu_count()
    assert case["agent"]["memory_bytes"] == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") or \
        abs(case["agent"]["memory_bytes"] - os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) < 64 << 20
    assert case["fault_active"] is True

    # Hot for 10 more polls: still exactly one case.
    time.sleep(10)
    assert len(cases_for(stub)) == 1

    # Cool below crit - 5 (and below max - 3): cleared after the clear "for".
    agent.hw.set_temp("testcpu", 1, 60.0)
    stub.wait_for(lambda: not stub.case(c[0]["id"])["fault_active"], 10)
    case = stub.case(c[0]["id"])
    assert case["fault_active"] is False
    assert case["status"] == "open"  # closing belongs to people
    assert [u["type"] for u in case["updates"]].count("cleared") == 1
    cleared = [u for u in case["updates"] if u["type"] == "cleared"][0]
    # The reading that cleared it: from the event when one cleared it, else
    # (the clear "for" ran out between polls) named in the message; never
    # the stale hot reading.
    if cleared.get("readings"):
        assert cleared["readings"]["value"] == 60.0, cleared
    else:
        assert "at 60 C" in cleared["message"], cleared
    assert len(cases_for(stub)) == 1

    # Heats again within the reopen window (1h by default): the same case
    # is told "reopened", no second case (docs/rules.md).
    agent.hw.set_temp("testcpu", 1, 98.0)
    stub.wait_for(lambda: stub.case(c[0]["id"])["fault_active"], 8)
    case = stub.case(c[0]["id"])
    assert [u["type"] for u in case["updates"]].count("reopened") == 1, case["updates"]
    assert len(cases_for(stub)) == 1, agent.log()


def test_recurrence_after_the_reopen_window_opens_a_case_naming_the_old_one(stub, tmp_path):
    a = Agent(str(tmp_path), stub.url, stub.token_file, extra_conf="collector snmptrap {\n  enabled no\n}\ncases {\n  reopen_window 0s\n}\n")
    try:
        a.start()
        a.hw.set_temp("testcpu", 1, 97.0)
        stub.wait_for(lambda: cases_for(stub), 20)
        first = cases_for(stub)[0]
        a.hw.set_temp("testcpu", 1, 60.0)
        stub.wait_for(lambda: not stub.case(first["id"])["fault_active"], 10)
        a.hw.set_temp("testcpu", 1, 98.0)
        stub.wait_for(lambda: len(cases_for(stub)) == 2, 20)
        cs = cases_for(stub)
        newer = stub.case(cs[1]["id"])
        assert newer["fault_active"] is True
        assert str(newer["extra"]["previous_case_id"]) == str(first["id"])
        assert not any(u["type"] == "reopened" for u in stub.case(first["id"])["updates"])
    finally:
        a.stop()


def test_level_precedence_p4_then_p3_on_one_case(agent, stub):
    agent.start()
    agent.hw.set_temp("testcpu", 1, 85.0)  # over max only: P4
    stub.wait_for(lambda: cases_for(stub), 8)
    c = cases_for(stub)
    assert len(c) == 1 and c[0]["level"] == "P4", agent.log()
    agent.hw.set_temp("testcpu", 1, 96.0)  # over crit too: P3 on the same case
    stub.wait_for(lambda: stub.case(c[0]["id"])["level"] == "P3", 8)
    case = stub.case(c[0]["id"])
    assert case["level"] == "P3"
    assert any(u["type"] == "level" for u in case["updates"])
    assert len(cases_for(stub)) == 1


def test_weibaoctl(agent, stub):
    agent.start()
    r = agent.ctl("status")
    assert r.returncode == 0, r.stderr
    assert "rules:      2 loaded" in r.stdout
    assert "sensors" in r.stdout and "running" in r.stdout
    agent.hw.set_temp("testcpu", 1, 97.0)
    stub.wait_for(lambda: cases_for(stub), 8)
    wait_until(lambda: "delivered" in agent.ctl("faults").stdout, 5)
    r = agent.ctl("faults")
    assert r.returncode == 0
    assert KEY in r.stdout and "P3" in r.stdout and "firing" in r.stdout
    r = agent.ctl("snapshot")
    assert r.returncode == 0
    snap = json.loads(r.stdout)
    assert snap["version"] == 1
    assert snap["faults"][0]["key"] == KEY
    sensors = [c for c in snap["collectors"] if c["name"] == "sensors"][0]
    assert json.dumps(sensors).count("97") >= 1
    r = agent.ctl("reload")
    assert r.returncode == 0 and "reloaded: 2 rules" in r.stdout
    r = agent.ctl("frobnicate")
    assert r.returncode == 1 and "unknown command" in r.stderr


def test_weibaoctl_without_agent(tmp_path):
    r = subprocess.run([os.path.join(BUILD, "weibaoctl"), "-s", str(tmp_path / "none.sock"), "status"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "cannot talk to the agent" in r.stderr and "is weibao-agent running?" in r.stderr


def test_sighup_with_broken_rules_keeps_old_rules(agent, stub):
    agent.start()
    agent.write_rules("rule broken {\n    when value >>> 3\n}\n", name="zz-broken.rules")
    agent.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in agent.log(), 5)
    log = agent.log()
    assert "zz-broken.rules:2:" in log
    assert "running configuration and rules stay in force" in log
    assert agent.proc.poll() is None
    # The old rules still work.
    agent.hw.set_temp("testcpu", 1, 97.0)
    assert stub.wait_for(lambda: cases_for(stub), 8), agent.log()
    assert cases_for(stub)[0]["level"] == "P3"
    r = agent.ctl("status")
    assert "1 failed" in r.stdout


def test_stub_down_at_start_case_opens_when_it_comes_up(stub, tmp_path):
    require_root()
    stub.stop()
    a = Agent(str(tmp_path), stub.url, stub.token_file)
    try:
        a.start()
        a.hw.set_temp("testcpu", 1, 97.0)
        wait_until(lambda: "opening the case failed" in a.log(), 10)
        assert "opening the case failed" in a.log()
        assert a.proc.poll() is None
        stub.start()
        assert stub.wait_for(lambda: cases_for(stub), 10), a.log()
        assert len(cases_for(stub)) == 1
        # logged when the answer arrives, a moment after the stub stored the case
        assert wait_until(lambda: "after failed attempts" in a.log(), 5), a.log()
    finally:
        a.stop()


def test_wrong_token_is_logged_clearly(stub, tmp_path):
    require_root()
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")
    bad.chmod(0o600)
    a = Agent(str(tmp_path), stub.url, str(bad))
    try:
        a.start()
        a.hw.set_temp("testcpu", 1, 97.0)
        # the case's open, not only the check-in, is refused and says why
        wait_until(lambda: "refused the bearer token (HTTP 401) on opening the case" in a.log(), 10)
        assert "central API refused the bearer token (HTTP 401) on opening the case" in a.log()
        assert "not-the-token" not in a.log()
        assert cases_for(stub) == []
    finally:
        a.stop()


def test_default_rules_open_p3_case(stub, tmp_path):
    require_root()
    a = Agent(str(tmp_path), stub.url, stub.token_file, rules_text=None,
              rules_glob=os.path.join(ROOT, "rules", "default", "*.rules"))
    try:
        a.start()
        a.hw.set_temp("testcpu", 1, 99.0)
        # interval 1 s + the default "for 10s" + 2 s
        assert stub.wait_for(lambda: [c for c in cases_for(stub) if c["level"] == "P3"], 13), a.log()
        c = [c for c in cases_for(stub) if c["level"] == "P3"]
        assert len(c) == 1
        assert c[0]["rule"] == "temperature-critical"
        # the "for 10s" ran out between two readings, yet the case carries them
        full = stub.case(c[0]["id"])
        assert full["readings"]["value"] == 99.0 and full["readings"]["crit"] == 95.0, full["readings"]
    finally:
        a.stop()


def test_sd_notify_ready_status_reloading(agent, stub, tmp_path):
    """The agent tells systemd READY, STATUS and RELOADING through $NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    try:
        agent.start(env={"NOTIFY_SOCKET": path})
        msgs = []
        while not any("READY=1" in m for m in msgs):
            msgs.append(s.recv(4096).decode())
        while not any(m.startswith("STATUS=") for m in msgs):
            msgs.append(s.recv(4096).decode())
        status = [m for m in msgs if m.startswith("STATUS=")][0]
        assert "2 rules" in status and "0 faults firing" in status
        agent.proc.send_signal(signal.SIGHUP)
        while not any("RELOADING=1" in m for m in msgs):
            msgs.append(s.recv(4096).decode())
    finally:
        s.close()


def test_logs_go_to_the_journal_under_systemd(agent, stub, tmp_path):
    """With stderr connected to the journal (JOURNAL_STREAM names it, as systemd
    sets it), log lines go to journald's native socket with a PRIORITY. A fake
    journald socket is bind-mounted over /run/systemd inside the agent's mount
    namespace."""
    fake = tmp_path / "run-systemd"
    (fake / "journal").mkdir(parents=True)
    j = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    j.bind(str(fake / "journal" / "socket"))
    j.settimeout(5)
    try:
        logf = open(agent.log_path, "ab")
        st = os.fstat(logf.fileno())
        argv = ["sh", "-c", 'mount --bind "$0" /run/systemd && exec "$@"', str(fake),
                os.path.join(BUILD, "weibao-agent"), "--config", agent.conf]
        agent.logf = logf
        agent.proc = subprocess.Popen(agent.hw.wrap(argv), stdout=logf, stderr=subprocess.STDOUT,
                                      preexec_fn=_die_with_parent,
                                      env=dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)))
        entries = []
        while not any("started: agent id test-agent" in e for e in entries):
            entries.append(j.recv(65536).decode(errors="replace"))
        started = [e for e in entries if "started: agent id test-agent" in e][0]
        fields = dict(line.split("=", 1) for line in started.splitlines() if "=" in line)
        assert fields["PRIORITY"] == "5"  # notice
        assert fields["SYSLOG_IDENTIFIER"] == "weibao-agent"
        assert "started: agent id" not in agent.log()  # not duplicated on stderr
    finally:
        j.close()


def test_second_agent_on_same_socket_is_refused(agent, stub):
    agent.start()
    r = subprocess.run(agent.hw.wrap([os.path.join(BUILD, "weibao-agent"), "--config", agent.conf]),
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "another weibao-agent is answering on it" in r.stderr
    assert agent.ctl("status").returncode == 0  # the first one still answers


def worker_pids(agent):
    """PIDs of the agent's children named weibao-sender (its HTTP worker)."""
    pid = agent.proc.pid
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        kids = [int(p) for p in f.read().split()]
    out = []
    for k in kids:
        try:
            with open("/proc/%d/comm" % k) as f:
                if f.read().strip() == "weibao-sender":
                    out.append(k)
        except FileNotFoundError:
            pass
    return out


def test_http_worker_killed_is_replaced(agent, stub):
    """The HTTP worker is a child process; if it dies, the next send starts a new one."""
    agent.start()
    assert worker_pids(agent) == []  # idle agents run no worker
    agent.hw.set_temp("testcpu", 1, 97.0)
    c = stub.wait_for(lambda: cases_for(stub), 8)
    pids = worker_pids(agent)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    wait_until(lambda: "HTTP worker was killed by signal KILL" in agent.log() or not worker_pids(agent), 5)
    agent.hw.set_temp("testcpu", 1, 60.0)
    stub.wait_for(lambda: not stub.case(c[0]["id"])["fault_active"], 10)
    assert agent.proc.poll() is None
    new = worker_pids(agent)
    assert new and new != pids


def test_http_worker_exits_when_idle(agent, stub):
    """The worker (and libcurl's memory) is gone 3 s after the last send."""
    agent.start()
    agent.hw.set_temp("testcpu", 1, 97.0)
    stub.wait_for(lambda: cases_for(stub), 8)
    assert len(worker_pids(agent)) == 1
    t0 = time.monotonic()
    assert wait_until(lambda: not worker_pids(agent), 25), "worker still running"
    assert time.monotonic() - t0 >= 2  # not before the idle time (3 s after its last answer)
    # Still hot: the next occurrence update (at most one a minute) would start a
    # new worker; a cool-down does now.
    agent.hw.set_temp("testcpu", 1, 60.0)
    c = cases_for(stub)[0]
    stub.wait_for(lambda: not stub.case(c["id"])["fault_active"], 10)


def test_missing_http_worker_is_reported_and_retried(agent, stub):
    agent.start(env={"WEIBAO_SENDER": "/nonexistent/weibao-sender"})
    agent.hw.set_temp("testcpu", 1, 97.0)
    wait_until(lambda: "is weibao-sender installed" in agent.log(), 8)
    assert "opening the case failed: cannot start the request: No such file or directory" in agent.log()
    assert agent.proc.poll() is None
    assert cases_for(stub) == []
    r = agent.ctl("faults")
    assert "opening" in r.stdout and "is weibao-sender installed" in r.stdout


def test_sigterm_stops_cleanly(agent, stub):
    agent.start()
    assert agent.stop() == 0
    assert not os.path.exists(agent.sock)


def test_malformed_config_exits_2_with_position(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('agent {\n  state_dir "/tmp"\n}\ncentral {\n  url "http://127.0.0.1:1"\n  timeout ten\n}\n')
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "%s:6:11:" % conf in r.stderr, r.stderr
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "%s:6:11:" % conf in r.stderr


def test_collector_setting_out_of_range_has_position(tmp_path):
    conf = tmp_path / "range.conf"
    conf.write_text('central {\n  url "http://127.0.0.1:1"\n  token_file "t"\n}\n'
                    'agent {\n  rules "%s/rules/default/*.rules"\n}\n'
                    'collector sensors {\n  interval 1ms\n}\ncollector fans {\n}\n' % ROOT)
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "%s:9:12: collector sensors: interval must be between 100ms and 1d" % conf in r.stderr, r.stderr
    assert "%s:11:1: collector fans: unknown collector (built in: sensors, snmptrap" % conf in r.stderr, r.stderr


def test_check_accepts_example_config():
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config",
                        os.path.join(ROOT, "examples", "agent.conf")], capture_output=True, text=True)
    # The example's token file only exists once the demo ran; --check does not read it.
    assert r.returncode == 0, r.stderr
    assert "rule temperature-critical" in r.stdout
