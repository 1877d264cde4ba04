"""What systemd sees of weibao: the units in packaging/systemd/ (sandbox
exposure, syntax) and the agent's notify protocol (READY, the watchdog
pinged from the event loop, silence when the loop hangs).

The booted-system test (nspawn) comes with the Debian package."""

import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import BUILD, ROOT, AgentProcess, _die_with_parent, require_root, require_tool

UNITS = os.path.join(ROOT, "packaging", "systemd")


def require_systemd_analyze():
    require_tool("systemd-analyze", "systemd")


def exposure(unit):
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", os.path.join(UNITS, unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for %s: ([0-9.]+)" % re.escape(unit), r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1)), r.stdout


@pytest.mark.parametrize("unit", ["weibao-agent.service", "weibao-stub.service"])
def test_unit_exposure_is_at_most_2(unit):
    require_systemd_analyze()
    level, report = exposure(unit)
    assert level <= 2.0, report


def test_agent_unit_keeps_what_the_agent_needs():
    require_systemd_analyze()
    _, report = exposure("weibao-agent.service")
    # no capability at all: port 162 comes from the socket unit
    assert re.search(r"✓ CapabilityBoundingSet=~CAP_NET_\(BIND_SERVICE", report), report
    with open(os.path.join(UNITS, "weibao-agent.service")) as f:
        unit = f.read()
    for line in ("AF_NETLINK", "Type=notify", "WatchdogSec=", "Restart=on-failure", "User=weibao", "ProtectSystem=strict",
                 "Sockets=weibao-agent.socket", "StateDirectory=weibao", "RuntimeDirectory=weibao"):
        assert line in unit, line
    # systemctl reload waits for the agent's answer and fails with it (a
    # signal would return at once, before the new rules are read)
    assert re.findall(r"^ExecReload=.*$", unit, re.M) == ["ExecReload=/usr/sbin/weibaoctl reload"], unit
    with open(os.path.join(UNITS, "weibao-agent.socket")) as f:
        sock = f.read()
    assert "ListenDatagram=162" in sock


def test_units_verify():
    """systemd-analyze verify finds nothing wrong beyond the binaries not
    being installed on the test machine."""
    require_systemd_analyze()
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", "weibao-agent.service", "weibao-agent.socket",
                        "weibao-stub.service"], cwd=UNITS, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    unexpected = [l for l in lines
                  if not re.search(r"Command /usr/sbin/(weibao-agent|weibao-stub|weibaoctl) is not executable", l)]
    assert not unexpected, "\n".join(lines)


class NotifyAgent(AgentProcess):
    def __init__(self, tmp, stub):
        self.sock = os.path.join(tmp, "agent.sock")
        self.log_path = os.path.join(tmp, "agent.log")
        self.conf = os.path.join(tmp, "agent.conf")
        self.notify_path = os.path.join(tmp, "notify.sock")
        with open(self.conf, "w") as f:
            f.write('agent {\n  id "wd"\n  state_dir "%s"\n  control_socket "%s"\n  rules "%s"\n}\n'
                    'central {\n  url "%s"\n  token_file "%s"\n}\n'
                    "collector sensors {\n  enabled no\n}\ncollector snmptrap {\n  enabled no\n}\n"
                    % (os.path.join(tmp, "state"), self.sock, os.path.join(ROOT, "rules", "default", "*.rules"),
                       stub.url, stub.token_file))
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.messages = []

    def start(self, watchdog_usec):
        self.logf = open(self.log_path, "ab")
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, WATCHDOG_USEC=str(watchdog_usec),
                   WEIBAO_TEST_STALL="1")
        self.proc = subprocess.Popen([os.path.join(BUILD, "weibao-agent"), "--config", self.conf],
                                     stdout=self.logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                     env=env)

    def read_notify(self, seconds):
        """(monotonic time, message) pairs received for that long."""
        got = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.notify.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.notify.recv(4096)
            except socket.timeout:
                break
            for m in data.decode().split("\n"):
                if m:
                    got.append((time.monotonic(), m))
        return got

    def command(self, line, timeout=30):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.sock)
            s.sendall(line.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data.decode()
                data += chunk


def test_watchdog_is_pinged_from_the_loop_and_stops_when_it_hangs(stub, tmp_path):
    a = NotifyAgent(str(tmp_path), stub)
    a.start(watchdog_usec=400000)
    try:
        msgs = a.read_notify(1.5)
        texts = [m for _, m in msgs]
        assert "READY=1" in texts, texts
        pings = [t for t, m in msgs if m == "WATCHDOG=1"]
        # every 200 ms: at least 5 in 1.5 s
        assert len(pings) >= 5, texts
        # the loop hangs for 2 s (test mode): no ping meanwhile, then pings again
        import threading
        answer = {}
        th = threading.Thread(target=lambda: answer.setdefault("a", a.command("stall 2")))
        t0 = time.monotonic()
        th.start()
        msgs = a.read_notify(3.0)
        th.join(10)
        assert json.loads(answer.get("a", "{}")).get("ok") is True, answer
        pings = [t - t0 for t, m in msgs if m == "WATCHDOG=1"]
        gaps = [b - a_ for a_, b in zip([0.0] + pings, pings)]
        assert max(gaps) >= 1.8, pings  # silent while stalled: systemd would restart it
        assert any(p > 2.0 for p in pings), pings  # and pinging again after
    finally:
        a.stop()
        a.notify.close()


def test_stall_command_does_not_exist_outside_test_mode(stub, tmp_path):
    a = NotifyAgent(str(tmp_path), stub)
    a.logf = open(a.log_path, "ab")
    a.proc = subprocess.Popen([os.path.join(BUILD, "weibao-agent"), "--config", a.conf], stdout=a.logf,
                              stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                              env={k: v for k, v in os.environ.items() if k != "WEIBAO_TEST_STALL"})
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(a.sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        ans = json.loads(a.command("stall 1"))
        assert ans["ok"] is False and "unknown command" in ans["error"], ans
    finally:
        a.stop()
        a.notify.close()


def journal_entries(sock, seconds):
    """Entries sent with journald's native protocol to sock, as dicts."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        entry = {}
        for line in data.decode(errors="replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                entry[k] = v
        out.append(entry)
    return out


def test_journal_gets_priorities_and_fault_fields(stub, tmp_path):
    """Under systemd (stderr is the journal stream), log lines go to the
    journal with a priority from their severity and, for faults, the fields
    FAULT_KEY, FAULT_LEVEL, RULE and CASE_ID. A private mount namespace puts
    the test's own socket where journald's would be."""
    require_root("needs root for a mount namespace")
    from test_snmptrap import LINK_DOWN, SNMP_ENV, link_varbinds, make_agent, require_snmp_tools
    require_snmp_tools()
    jdir = tmp_path / "journal"
    jdir.mkdir()
    js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    js.bind(str(jdir / "socket"))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "p1.rules").write_text('rule journal-cold-start {\n    when source == "snmptrap" and '
                                    'trap == "SNMPv2-MIB::coldStart"\n    level P1\n'
                                    '    key "journal:{source_addr}"\n    title "cold start"\n}\n')
    a = make_agent(tmp_path / "agent", stub, snmp_settings='  community "public"\n',
                   rules_glob=str(rules / "*.rules"))
    a.logf = open(a.log_path, "ab")
    st = os.fstat(a.logf.fileno())
    script = ('mount -t tmpfs weibao-test /run && mkdir -p /run/systemd/journal && '
              'mount --bind "$1" /run/systemd/journal && exec "$2" --config "$3"')
    a.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                               str(jdir), os.path.join(BUILD, "weibao-agent"), a.conf],
                              stdout=a.logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                              env=dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)))
    try:
        entries = journal_entries(js, 1.5)
        started = [e for e in entries if e.get("MESSAGE", "").startswith("weibao-agent ")]
        assert started and started[0]["PRIORITY"] == "5", entries  # notice
        assert started[0]["SYSLOG_IDENTIFIER"] == "weibao-agent"
        subprocess.run(["snmptrap", "-v2c", "-c", "public", "127.0.0.1:%d" % a.port, "", LINK_DOWN]
                       + link_varbinds(81), check=True, env=SNMP_ENV, timeout=20)
        entries = journal_entries(js, 3)
        firing = [e for e in entries if "firing at P3" in e.get("MESSAGE", "")]
        assert firing, entries
        f = firing[0]
        assert f["FAULT_KEY"] == "snmp:link:127.0.0.1:81", f
        assert f["FAULT_LEVEL"] == "P3" and f["RULE"] == "snmp-link-down" and f["PRIORITY"] == "5", f
        opened = [e for e in entries if "opened" in e.get("MESSAGE", "") and e.get("FAULT_KEY") == f["FAULT_KEY"]]
        assert opened and opened[0].get("CASE_ID"), entries
        case = [c for c in stub.cases() if c["fault_key"] == f["FAULT_KEY"]][0]
        assert opened[0]["CASE_ID"] == str(case["id"])
        # what the journal took is not repeated on stderr
        assert "firing at P3" not in a.log(), a.log()
        # a P1 firing is a warning (weibao-agent(8)), the agent's own failure an error
        subprocess.run(["snmptrap", "-v2c", "-c", "public", "127.0.0.1:%d" % a.port, "", "1.3.6.1.6.3.1.1.5.1"],
                       check=True, env=SNMP_ENV, timeout=20)
        (rules / "broken.rules").write_text("rule broken {\n    level P9\n}\n")
        assert a.ctl("reload").returncode == 1
        entries = journal_entries(js, 3)
        p1 = [e for e in entries if "firing at P1" in e.get("MESSAGE", "")]
        assert p1 and p1[0]["PRIORITY"] == "4" and p1[0]["FAULT_LEVEL"] == "P1", entries  # warning
        assert p1[0]["FAULT_KEY"] == "journal:127.0.0.1", p1[0]
        failed = [e for e in entries if e.get("MESSAGE", "").startswith("reload failed")]
        assert failed and failed[0]["PRIORITY"] == "3", entries  # err
    finally:
        a.stop()
        js.close()
