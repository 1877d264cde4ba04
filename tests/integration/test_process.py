"""The process collector end to end with real processes: a shell supervisor
restarts a watched critical process that the test kills with SIGKILL, a
python program that exits 3 again and again under a supervisor, a pidfile
that names no process, a process over a thread limit, and bad watch
settings. The default rules turn what the collector sees into cases on a
weibao-stub.

The exit status comes from the proc connector, which needs CAP_NET_ADMIN:
those tests run as root (require_root). The others need no privilege.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import BUILD, ROOT, AgentProcess, _die_with_parent, require_root, require_tool, wait_until


class ProcAgent(AgentProcess):
    """One weibao-agent with only the process collector."""

    def __init__(self, tmp, stub, watches, settings=""):
        self.tmp = str(tmp)
        self.sock = os.path.join(self.tmp, "agent.sock")
        self.conf = os.path.join(self.tmp, "agent.conf")
        self.log_path = os.path.join(self.tmp, "agent.log")
        url = stub.url if stub else "http://127.0.0.1:9"
        token = stub.token_file if stub else os.path.join(self.tmp, "token")
        if not stub:
            with open(token, "w") as f:
                f.write("x\n")
            os.chmod(token, 0o600)
        with open(self.conf, "w") as f:
            f.write(
                'agent {\n  id "proc-agent"\n  state_dir "%s"\n  control_socket "%s"\n  log_level debug\n'
                '  rules "%s"\n}\n'
                'central {\n  url "%s"\n  token_file "%s"\n  timeout 2s\n  retry 1s\n  occurrence_interval 1s\n}\n'
                "collector sensors {\n  enabled no\n}\n"
                "collector snmptrap {\n  enabled no\n}\n"
                "collector process {\n%s%s}\n"
                % (os.path.join(self.tmp, "state"), self.sock, os.path.join(ROOT, "rules", "default", "*.rules"),
                   url, token, "".join("  watch %s\n" % json.dumps(w) for w in watches), settings))

    env = {}

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "weibao-agent"), "--config", self.conf],
                                     stdout=self.logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                     env=dict(os.environ, **self.env))
        wait_until(lambda: os.path.exists(self.sock) or self.proc.poll() is not None, 10)
        assert self.proc.poll() is None, "agent exited early:\n" + self.log()
        assert wait_until(lambda: self.status().get("started"), 5), self.log()
        return self

    def status(self):
        r = self.ctl("--json", "collector", "process")
        if r.returncode != 0:
            return {}
        o = json.loads(r.stdout)
        return o.get("collector", o)

    def watch(self, name):
        for w in self.status().get("watches", []):
            if w["name"] == name:
                return w
        return {}


@pytest.fixture
def procs():
    """Processes a test starts; each is killed with its process group at the end."""
    started = []
    yield started
    for p in started:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def spawn(procs, args):
    p = subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def cases_for(stub, key):
    return [c for c in stub.cases() if c["fault_key"] == key]


def test_kill9_critical_restarted_is_p1_with_signal(tmp_path, stub, procs):
    require_root("the exit signal comes from the proc connector, which needs CAP_NET_ADMIN")
    pidfile = tmp_path / "worker.pid"
    worker = tmp_path / "worker.py"
    # A daemon that writes its own pidfile, as daemons do.
    worker.write_text("import os, sys, time\nwith open(sys.argv[1] + '.tmp', 'w') as f:\n"
                      "    f.write('%d\\n' % os.getpid())\nos.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
                      "time.sleep(1000)\n")
    # The supervisor: restarts the worker whenever it ends.
    spawn(procs, ["/bin/sh", "-c",
                  'while true; do %s %s %s; sleep 0.2; done' % (sys.executable, worker, pidfile)])
    assert wait_until(lambda: read_pid(pidfile), 5)
    a = ProcAgent(tmp_path, stub, ["worker pidfile=%s critical" % pidfile], "  grace 3s\n").start()
    try:
        first = read_pid(pidfile)
        assert wait_until(lambda: a.watch("worker").get("pid") == first, 5), a.status()
        assert a.status()["proc_connector"] == "listening", a.status()
        os.kill(first, signal.SIGKILL)
        key = "process:worker:restart"
        cases = stub.wait_for(lambda: cases_for(stub, key), 10)
        case = cases[0]
        assert case["level"] == "P1", case
        rd = case["readings"]
        assert rd["signal"] == 9 and rd["signal_name"] == "SIGKILL", rd
        assert rd["old_pid"] == first and rd["pid"] == read_pid(pidfile) != first, rd
        assert rd["cmdline"] == "%s %s %s" % (sys.executable, worker, pidfile), rd
        assert "killed by signal 9 (SIGKILL)" in case["title"], case["title"]
        assert "pid %d -> %d after killed by signal 9 (SIGKILL)" % (first, rd["pid"]) in rd["history"], rd
        # The gap was shorter than grace: no "not running" case.
        time.sleep(3.5)
        assert not cases_for(stub, "process:worker:down"), stub.cases()
        assert len(cases_for(stub, key)) == 1
    finally:
        assert a.stop() == 0, a.log()


def test_crash_loop_is_one_p2_case(tmp_path, stub, procs):
    require_root("the exit code comes from the proc connector, which needs CAP_NET_ADMIN")
    script = tmp_path / "crasher.py"
    script.write_text("import time\ntime.sleep(0.3)\nraise SystemExit(3)\n")
    sup = tmp_path / "supervise.py"
    sup.write_text("import subprocess, sys, time\nwhile True:\n"
                   "    subprocess.call([sys.executable, %r])\n    time.sleep(0.1)\n" % str(script))
    a = ProcAgent(tmp_path, stub, ["crasher cmdline='*python3 %s'" % script],
                  "  crash_loop_restarts 3\n  crash_loop_window 1m\n  grace 5s\n").start()
    try:
        spawn(procs, [sys.executable, str(sup)])
        key = "process:crasher:restart"
        case = stub.wait_for(lambda: cases_for(stub, key), 15)[0]
        assert case["level"] == "P2", case
        rd = case["readings"]
        assert rd["exit_code"] == 3 and rd["restarts"] >= 3, rd
        assert "exited with status 3" in rd["history"], rd
        # More crashes: occurrences on the same case, never a second case.
        restarts = a.watch("crasher")["restarts_in_window"]
        assert wait_until(lambda: a.watch("crasher").get("restarts_in_window", 0) >= restarts + 3, 10), a.status()
        assert len(cases_for(stub, key)) == 1, stub.cases()
        assert a.watch("crasher")["crash_loop"] is True
        # Not critical: a restart alone is no case.
        assert all(c["level"] != "P1" for c in stub.cases()), stub.cases()
    finally:
        assert a.stop() == 0, a.log()


def test_pidfile_pointing_nowhere_is_not_running(tmp_path, stub):
    pidfile = tmp_path / "gone.pid"
    # A pid that is free: a child that has been reaped.
    p = subprocess.Popen(["true"])
    p.wait()
    pidfile.write_text("%d\n" % p.pid)
    a = ProcAgent(tmp_path, stub, ["gone pidfile=%s" % pidfile, "db pidfile=%s critical" % (tmp_path / "no.pid")],
                  "  grace 1s\n").start()
    try:
        case = stub.wait_for(lambda: cases_for(stub, "process:gone:down"), 10)[0]
        assert case["level"] == "P3", case
        assert "not running" in case["title"] and "pidfile names no running process" in case["title"], case
        crit = stub.wait_for(lambda: cases_for(stub, "process:db:down"), 10)[0]
        assert crit["level"] == "P2", crit
        assert a.watch("gone")["state"] == "not running"
        # Running again clears it: a process appears behind the pidfile.
        p = subprocess.Popen(["sleep", "30"], preexec_fn=_die_with_parent)
        try:
            pidfile.write_text("%d\n" % p.pid)
            assert wait_until(lambda: a.watch("gone").get("pid") == p.pid, 5), a.status()

            def cleared():
                c = stub.case(case["id"])
                return any(u.get("type") == "cleared" for u in c.get("updates", []))
            assert stub.wait_for(cleared, 10)
        finally:
            p.kill()
            p.wait()
    finally:
        assert a.stop() == 0, a.log()


def test_exit_without_proc_connector_says_status_unknown(tmp_path, stub, procs):
    pidfile = tmp_path / "w.pid"
    spawn(procs, ["/bin/sh", "-c", 'sleep 1000 & echo $! > "%s"; wait $!; sleep 1000' % pidfile])
    assert wait_until(lambda: read_pid(pidfile), 5)
    a = ProcAgent(tmp_path, stub, ["w pidfile=%s critical" % pidfile], "  proc_connector no\n  grace 500ms\n").start()
    try:
        pid = read_pid(pidfile)
        assert wait_until(lambda: a.watch("w").get("pid") == pid, 5), a.status()
        assert "exit status unknown" in a.status()["proc_connector"], a.status()
        os.kill(pid, signal.SIGTERM)
        case = stub.wait_for(lambda: cases_for(stub, "process:w:down"), 10)[0]
        assert case["level"] == "P2", case
        assert case["readings"]["exit"] == "exit status unknown", case
        assert case["readings"]["exit_status_known"] == 0
    finally:
        assert a.stop() == 0, a.log()


def test_resource_limits_are_p4(tmp_path, stub, procs):
    """One process over each limit: threads, RSS, open files, CPU."""
    script = tmp_path / "hog.py"
    script.write_text(
        "import os, sys, threading, time\n"
        "kind = sys.argv[1]\n"
        "if kind == 'threads':\n"
        "    for _ in range(8):\n"
        "        threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n"
        "elif kind == 'rss':\n"
        "    hog = bytearray(64 << 20)\n"
        "    for i in range(0, len(hog), 4096):\n"
        "        hog[i] = 1\n"
        "elif kind == 'fds':\n"
        "    files = [open('/dev/null') for _ in range(40)]\n"
        "elif kind == 'cpu':\n"
        "    while True:\n"
        "        pass\n"
        "time.sleep(1000)\n")
    for kind in ("threads", "rss", "fds", "cpu"):
        spawn(procs, [sys.executable, str(script), kind])
    a = ProcAgent(tmp_path, stub, [
        "threads cmdline='* %s threads' threads=5" % script,
        "rss cmdline='* %s rss' rss=32M" % script,
        "fds cmdline='* %s fds' fds=30" % script,
        "cpu cmdline='* %s cpu' cpu=30" % script,
    ], "  interval 300ms\n").start()
    try:
        case = stub.wait_for(lambda: cases_for(stub, "process:threads:threads"), 10)[0]
        assert case["level"] == "P4", case
        assert case["readings"]["threads"] == 9 and case["readings"]["threads_max"] == 5, case
        case = stub.wait_for(lambda: cases_for(stub, "process:rss:rss"), 10)[0]
        assert case["level"] == "P4" and case["readings"]["rss_bytes"] >= 64 << 20, case
        assert case["readings"]["rss_max"] == 32 << 20, case
        case = stub.wait_for(lambda: cases_for(stub, "process:fds:fds"), 10)[0]
        assert case["level"] == "P4" and case["readings"]["fds"] >= 43, case
        case = stub.wait_for(lambda: cases_for(stub, "process:cpu:cpu"), 10)[0]
        assert case["level"] == "P4" and case["readings"]["cpu_percent"] >= 30, case
        # each only over its own limit
        keys = {c["fault_key"] for c in stub.cases()}
        assert keys == {"process:threads:threads", "process:rss:rss", "process:fds:fds", "process:cpu:cpu"}, keys
    finally:
        assert a.stop() == 0, a.log()


def test_zombie_leader_is_stuck_p3(tmp_path, stub, procs):
    """A process whose main thread has ended while another thread runs: its
    leader is a zombie (state Z) but the process has not exited, so no pidfd
    wakes; the sampler finds it Z for longer than stuck= and reports it."""
    script = tmp_path / "zleader.py"
    go = tmp_path / "go"
    # the main thread ends once the agent follows the process (a zombie
    # leader is never picked up as a new process)
    script.write_text("import ctypes, os, sys, threading, time\n"
                      "threading.Thread(target=time.sleep, args=(1000,)).start()\n"
                      "while not os.path.exists(sys.argv[1]):\n"
                      "    time.sleep(0.05)\n"
                      "ctypes.CDLL(None).pthread_exit(None)\n")
    p = spawn(procs, [sys.executable, str(script), str(go)])
    a = ProcAgent(tmp_path, stub, ["zl cmdline='* %s *' stuck=1s" % script], "  interval 200ms\n").start()
    try:
        assert wait_until(lambda: a.watch("zl").get("pid") == p.pid, 5), a.status()
        go.write_text("")
        case = stub.wait_for(lambda: cases_for(stub, "process:zl:stuck"), 10)[0]
        assert case["level"] == "P3", case
        rd = case["readings"]
        assert rd["state"] == "Z" and rd["state_name"] == "zombie (Z)" and rd["stuck_seconds"] >= 1, rd
        assert a.watch("zl")["state"] == "running", a.status()  # it has not exited
    finally:
        assert a.stop() == 0, a.log()


def test_uninterruptible_sleep_is_stuck_p3(tmp_path, stub, procs):
    """A process in state D (a vfork parent waiting for its child) for longer
    than stuck= is reported with its state, and clears when it leaves D."""
    helper = os.path.join(BUILD, "tests", "helpers", "dstate")
    assert os.access(helper, os.X_OK), "missing %s (make builds it with the integration tests)" % helper
    p = spawn(procs, [helper, "4"])
    a = ProcAgent(tmp_path, stub, ["ds cmdline='*/dstate 4' stuck=1s"], "  interval 200ms\n").start()
    try:
        assert wait_until(lambda: a.watch("ds").get("pid") == p.pid, 5), a.status()
        case = stub.wait_for(lambda: cases_for(stub, "process:ds:stuck"), 10)[0]
        assert case["level"] == "P3", case
        rd = case["readings"]
        assert rd["state"] == "D" and "(D)" in rd["state_name"] and rd["stuck_seconds"] >= 1, rd

        def cleared():
            c = stub.case(case["id"])
            return any(u.get("type") == "cleared" for u in c.get("updates", []))
        # The child ends after 4 s, the parent leaves D and exits.
        assert stub.wait_for(cleared, 15)
    finally:
        assert a.stop() == 0, a.log()


def test_bad_watch_settings_are_reported_with_position(tmp_path):
    conf = tmp_path / "agent.conf"
    token = tmp_path / "token"
    token.write_text("x\n")
    os.chmod(token, 0o600)
    conf.write_text(
        'agent {\n  rules "%s"\n}\n'
        'central {\n  url "http://127.0.0.1:9"\n  token_file "%s"\n}\n'
        "collector process {\n"
        '  watch "web pidfile=/run/web.pid critical"\n'
        '  watch "db pidfile=relative.pid"\n'
        '  watch "app name=app cpu=lots"\n'
        '  watch "web name=nginx"\n'
        '  watch "x name=\'unclosed"\n'
        '  watch "nothing critical"\n'
        '  crash_loop_restarts 1\n'
        '  grace ten\n'
        '  colour blue\n'
        "}\n" % (os.path.join(ROOT, "rules", "default", "*.rules"), token))
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config", str(conf)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    err = r.stdout + r.stderr
    c = str(conf)
    expected = [
        c + ":10:13: collector process: watch: pidfile= needs an absolute path",
        c + ":11:23: collector process: watch: cpu= needs a percentage",
        c + ":12:10: collector process: watch name 'web' used twice",
        c + ":13:12: collector process: watch: unclosed quote",
        c + ":14:10: collector process: watch: watch nothing selects nothing",
        c + ":15:23: collector process: crash_loop_restarts must be a whole number 2 .. 32",
        c + ":16:9: expected duration",
        c + ":17:10: unknown setting 'colour' in collector process",
    ]
    for e in expected:
        assert e in err, "%r not in:\n%s" % (e, err)
    assert "agent.conf:9:" not in err, err  # the good watch


def test_systemd_unit_killed_and_restarted_over_sd_bus(tmp_path, stub, procs):
    """The unit watch's sd-bus path against a fake org.freedesktop.systemd1 on a
    private dbus-daemon (tests/integration/fake_systemd.py): PropertiesChanged
    signals as systemd sends them when a service's main process is killed and
    Restart= brings it back. This checks the collector's bus handling and
    decoding of systemd's properties, not systemd itself."""
    require_tool("dbus-daemon", "dbus-daemon")
    try:
        import dbus  # noqa: F401  (python3-dbus, for the fake)
        import gi  # noqa: F401  (python3-gi)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("python3-dbus/python3-gi missing (make deps installs them; CI=true: a skip is a failure)")
        pytest.skip("python3-dbus/python3-gi missing (make deps installs them)")
    sock = tmp_path / "bus"
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1",
                               "--address=unix:path=%s" % sock], stdout=subprocess.PIPE, text=True,
                              start_new_session=True, preexec_fn=_die_with_parent)
    procs.append(daemon)
    address = daemon.stdout.readline().strip()
    assert address.startswith("unix:"), address
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address)
    # a real process as the unit's main process, so its command line is read
    main1 = spawn(procs, ["sleep", "1001"])
    fake = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "integration", "fake_systemd.py"),
                             "demo-web.service", str(main1.pid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    procs.append(fake)
    assert fake.stdout.readline().strip() == "ready"

    def tell(line):
        fake.stdin.write(line + "\n")
        fake.stdin.flush()
        assert fake.stdout.readline().strip() == "done"

    a = ProcAgent(tmp_path, stub, ["web unit=demo-web.service critical"], "  grace 2s\n")
    a.env = {"DBUS_SYSTEM_BUS_ADDRESS": address}
    a.start()
    try:
        assert wait_until(lambda: a.watch("web").get("pid") == main1.pid, 5), a.status()
        assert a.status()["systemd_bus"] == "connected"
        # the command line is systemd's ExecStart (the new main process may not have exec'd yet)
        assert a.watch("web")["cmdline"] == "/usr/bin/demo-web --port 8080", a.status()
        main1.kill()
        tell("kill 9")
        main2 = spawn(procs, ["sleep", "1002"])
        tell("start %d" % main2.pid)
        case = stub.wait_for(lambda: cases_for(stub, "process:web:restart"), 10)[0]
        assert case["level"] == "P1", case
        rd = case["readings"]
        assert rd["signal"] == 9 and rd["signal_name"] == "SIGKILL", rd
        assert rd["unit"] == "demo-web.service" and rd["n_restarts"] == 1, rd
        assert rd["old_pid"] == main1.pid and rd["pid"] == main2.pid, rd
        assert rd["cmdline"] == "/usr/bin/demo-web --port 8080", rd
        # an exit code, and the unit left failed: not running (critical: P2) with Result and status
        tell("exit 3")
        tell("stop")
        down = stub.wait_for(lambda: cases_for(stub, "process:web:down"), 10)[0]
        assert down["level"] == "P2", down
        assert down["readings"]["exit_code"] == 3 and down["readings"]["result"] == "exit-code", down
        assert "unit demo-web.service is failed (failed), result exit-code" in down["title"], down["title"]
    finally:
        fake.stdin.close()
        assert a.stop() == 0, a.log()


def spawn_with_pid(pid, args, tries=50):
    """Starts args as process pid (the kernel's ns_last_pid, root only), or
    returns None when other processes keep taking that pid first."""
    for _ in range(tries):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write("%d" % (pid - 1))
        p = subprocess.Popen(args, preexec_fn=_die_with_parent)
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    return None


def test_pidfile_left_behind_with_its_pid_reused_is_not_running(tmp_path, stub):
    require_root("reusing a given pid needs /proc/sys/kernel/ns_last_pid (CAP_SYS_ADMIN)")
    pidfile = tmp_path / "daemon.pid"
    daemon = subprocess.Popen(["sleep", "1000"], preexec_fn=_die_with_parent)
    pidfile.write_text("%d\n" % daemon.pid)
    a = ProcAgent(tmp_path, stub, ["daemon pidfile=%s" % pidfile], "  grace 1s\n").start()
    other = None
    try:
        assert wait_until(lambda: a.watch("daemon").get("pid") == daemon.pid, 5), a.status()
        # The daemon dies without removing its pidfile; another program
        # gets its pid.
        daemon.kill()
        daemon.wait()
        other = spawn_with_pid(daemon.pid, ["sleep", "1000"])
        assert other is not None, "could not start a process as pid %d" % daemon.pid
        case = stub.wait_for(lambda: cases_for(stub, "process:daemon:down"), 10)[0]
        assert "the pidfile is stale: it still names pid %d" % daemon.pid in case["title"], case
        assert a.watch("daemon")["state"] == "not running", a.status()
        # Not taken for a restart of the daemon.
        assert not cases_for(stub, "process:daemon:restart"), stub.cases()
        assert a.watch("daemon").get("pid") != other.pid, a.status()
    finally:
        if other:
            other.kill()
            other.wait()
        assert a.stop() == 0, a.log()
