"""The Debian package in a booted Debian 12: debootstrap a minimal root once
(cached under build/nspawn/), install weibao-agent_*.deb into a copy, boot
it with systemd-nspawn and check what an administrator relies on: the agent
runs as its own user behind its socket unit, a trap to port 162 becomes a
case on a stub outside, systemd restarts it after a kill and after a hung
loop (watchdog), `systemctl reload` applies new rules, the process
collector's unit watch sees a service systemd restarts after a SIGKILL (over
the real system bus), and `apt-get purge` leaves nothing behind.

The container shares the host's network (port 162 and the stub are on the
host's loopback). Root only; the root filesystem comes from Debian's mirror
through debootstrap, the package from `make deb`."""

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import BUILD, ROOT, StubProcess, _die_with_parent, require_root, require_tool, wait_until

CACHE = os.path.join(BUILD, "nspawn")
INCLUDE = ("systemd,systemd-sysv,dbus,adduser,procps,libcjson1,libcurl4,libsensors5,libsnmp40,libsqlite3-0,libnettle8,"
           "ca-certificates")
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
SNMP_ENV = dict(os.environ, MIBS="", SNMPCONFPATH="/nonexistent")


def require_tools():
    for tool, pkg in (("debootstrap", "debootstrap"), ("systemd-nspawn", "systemd-container"),
                      ("nsenter", "util-linux"), ("snmptrap", "snmp")):
        require_tool(tool, pkg)


def mirror():
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            m = re.search(r"^URIs:\s*(\S+)", f.read(), re.M)
            if m:
                return m.group(1)
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def base_root():
    """A minimal Debian 12 root, made once and kept under build/nspawn."""
    root = os.path.join(CACHE, "root-" + hashlib.sha256(INCLUDE.encode()).hexdigest()[:12])
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(CACHE, exist_ok=True)
    r = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + INCLUDE, "bookworm", root, mirror()],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, "debootstrap failed:\n" + (r.stdout + r.stderr)[-3000:]
    open(os.path.join(root, ".complete"), "w").close()
    return root


def agent_deb():
    debs = glob.glob(os.path.join(BUILD, "deb", "weibao-agent_*.deb"))
    if not debs:
        r = subprocess.run(["make", "--no-print-directory", "deb", "B=%s" % BUILD], cwd=ROOT, capture_output=True,
                           text=True, timeout=1800)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        debs = glob.glob(os.path.join(BUILD, "deb", "weibao-agent_*.deb"))
    assert debs
    return debs[0]


def nspawn(root, *cmd, binds=()):
    args = ["systemd-nspawn", "-q", "-D", root, "--register=no", "--keep-unit"]
    args += ["--bind-ro=%s:%s" % b for b in binds]
    return subprocess.run(args + list(cmd), capture_output=True, text=True, timeout=600)


def tree(root):
    """Every path in the root, except the places that change by themselves."""
    skip = ("/var/log", "/var/cache", "/var/lib/apt", "/var/lib/dpkg", "/var/lib/systemd", "/run", "/proc",
            "/sys", "/dev", "/tmp", "/var/tmp", "/etc/machine-id", "/etc/ld.so.cache")
    out = set()
    for d, dirs, files in os.walk(root):
        rel = "/" + os.path.relpath(d, root) if d != root else "/"
        if rel.startswith(skip):
            dirs[:] = []
            continue
        for n in dirs + files:
            out.add(os.path.join(rel, n))
    return out


class Container:
    def __init__(self, root, stub):
        self.root = root
        self.stub = stub
        self.proc = None
        self.log_path = root + ".boot.log"

    def boot(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["systemd-nspawn", "-q", "-D", self.root, "--register=no", "--keep-unit",
                                      "--boot"], stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        assert wait_until(lambda: self.leader() and self.sh("systemctl is-system-running").stdout.strip()
                          in ("running", "degraded"), 60), self.boot_log()

    def leader(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                kids = f.read().split()
            return int(kids[0]) if kids else None
        except (OSError, ValueError):
            return None

    def sh(self, command, timeout=60):
        return subprocess.run(["nsenter", "-t", str(self.leader()), "-a", "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout)

    def show(self, prop):
        return self.sh("systemctl show -p %s --value weibao-agent.service" % prop).stdout.strip()

    def control(self, line):
        path = "/proc/%d/root/run/weibao/control.sock" % self.leader()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(line.encode() + b"\n")
            try:
                return s.recv(65536).decode()
            except socket.timeout:
                return ""

    def boot_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def poweroff(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's init to power off
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    require_root("needs root for systemd-nspawn")
    require_tools()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("0.0.0.0", 162))
        except OSError as e:
            pytest.fail("UDP port 162 is taken on this host (%s); the container shares its network" % e)
    deb = agent_deb()
    base = base_root()
    work = str(tmp_path_factory.mktemp("nspawn"))
    root = os.path.join(work, "root")
    subprocess.run(["cp", "-a", base, root], check=True)
    before = tree(root)
    r = nspawn(root, "dpkg", "-i", "/debs/" + os.path.basename(deb), binds=[(os.path.dirname(deb), "/debs")])
    assert r.returncode == 0, r.stdout + r.stderr

    os.makedirs(os.path.join(work, "stub"))
    stub = StubProcess(os.path.join(work, "stub"))
    stub.start()
    with open(os.path.join(root, "etc/weibao/agent.conf"), "w") as f:
        f.write('agent {\n  rules "/etc/weibao/rules.d/*.rules"\n}\n'
                'central {\n  url "%s"\n  token_file "/etc/weibao/token"\n  retry 1s\n}\n'
                'collector sensors {\n  enabled no\n}\n'
                'collector snmptrap {\n  community "public"\n  users_file "/etc/weibao/snmp-users"\n}\n'
                'collector process {\n  watch "demo unit=demo-crash.service critical"\n  grace 30s\n}\n'
                % stub.url)
    # a service for the process collector's unit watch: systemd restarts it when it is killed
    units = os.path.join(root, "etc/systemd/system")
    with open(os.path.join(units, "demo-crash.service"), "w") as f:
        f.write("[Unit]\nDescription=weibao test: a service that is killed\n[Service]\n"
                "ExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=500ms\n"
                "[Install]\nWantedBy=multi-user.target\n")
    os.makedirs(os.path.join(units, "multi-user.target.wants"), exist_ok=True)
    os.symlink("/etc/systemd/system/demo-crash.service", os.path.join(units, "multi-user.target.wants",
                                                                       "demo-crash.service"))
    token = os.path.join(root, "etc/weibao/token")
    st = os.stat(token)
    with open(token, "w") as f:
        f.write(stub.token + "\n")
    os.chown(token, st.st_uid, st.st_gid)
    # test mode: a short watchdog and the "stall" command
    dropin = os.path.join(root, "etc/systemd/system/weibao-agent.service.d")
    os.makedirs(dropin, exist_ok=True)
    with open(os.path.join(dropin, "test.conf"), "w") as f:
        f.write("[Service]\nEnvironment=WEIBAO_TEST_STALL=1\nWatchdogSec=3s\n")
    c = Container(root, stub)
    c.before = before
    c.deb = deb
    c.boot()
    yield c
    c.poweroff()
    stub.stop()
    stub._kill()


def cases(stub, key):
    return [x for x in stub.cases() if x["fault_key"] == key]


def trap(ifindex):
    subprocess.run(["snmptrap", "-v2c", "-c", "public", "127.0.0.1:162", "", LINK_DOWN,
                    "1.3.6.1.2.1.2.2.1.1.%d" % ifindex, "i", str(ifindex)], check=True, env=SNMP_ENV, timeout=20)


def test_agent_is_active_as_its_own_user(system):
    assert system.sh("systemctl is-active weibao-agent.socket weibao-agent.service").stdout.split() == \
        ["active", "active"], system.sh("systemctl status weibao-agent --no-pager").stdout
    pid = system.show("MainPID")
    status = system.sh("cat /proc/%s/status" % pid).stdout
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
    passwd = system.sh("getent passwd weibao").stdout
    assert passwd and passwd.split(":")[2] == uid, (passwd, status)
    assert uid != "0"


def test_trap_to_port_162_reaches_the_agent_through_the_socket_unit(system):
    trap(5)
    assert system.stub.wait_for(lambda: cases(system.stub, "snmp:link:127.0.0.1:5"), 15), \
        system.sh("journalctl -u weibao-agent --no-pager | tail -20").stdout
    log = system.sh("journalctl -u weibao-agent --no-pager").stdout
    assert "using the sockets systemd passed" in log, log


def test_killed_agent_is_restarted(system):
    pid = system.show("MainPID")
    system.sh("systemctl kill -s KILL weibao-agent.service")
    assert wait_until(lambda: system.show("MainPID") not in ("0", pid) and
                      system.sh("systemctl is-active weibao-agent").stdout.strip() == "active", 20), \
        system.sh("systemctl status weibao-agent --no-pager").stdout
    trap(6)
    assert system.stub.wait_for(lambda: cases(system.stub, "snmp:link:127.0.0.1:6"), 15)


def test_hung_loop_is_restarted_by_the_watchdog(system):
    pid = system.show("MainPID")
    restarts = int(system.show("NRestarts"))
    system.control("stall 20")  # test mode: the loop stops; WatchdogSec=3s in the drop-in
    assert wait_until(lambda: int(system.show("NRestarts")) > restarts and system.show("MainPID") not in ("0", pid),
                      30), system.sh("journalctl -u weibao-agent --no-pager | tail -20").stdout
    log = system.sh("journalctl -u weibao-agent --no-pager").stdout
    assert "Watchdog timeout" in log or "watchdog" in log.lower(), log


def test_reload_applies_new_rules(system):
    with open(os.path.join(system.root, "etc/weibao/rules.d/90-test.rules"), "w") as f:
        f.write('rule nspawn-cold-start {\n    when source == "snmptrap" and trap == "SNMPv2-MIB::coldStart"\n'
                '    level P1\n    key "nspawn:{source_addr}"\n    title "reloaded rule"\n}\n')
    r = system.sh("systemctl reload weibao-agent")
    assert r.returncode == 0, r.stderr
    subprocess.run(["snmptrap", "-v2c", "-c", "public", "127.0.0.1:162", "", "1.3.6.1.6.3.1.1.5.1"], check=True,
                   env=SNMP_ENV, timeout=20)
    found = system.stub.wait_for(lambda: cases(system.stub, "nspawn:127.0.0.1"), 15)
    assert found and found[0]["level"] == "P1"


def test_killed_unit_is_a_p1_case_with_systemds_result(system):
    """The process collector's unit watch against the real systemd: sd-bus,
    Subscribe, PropertiesChanged. systemd restarts the killed service; the
    case carries its Result, the signal and NRestarts."""
    def watch():
        r = system.control("collector process")
        try:
            o = json.loads(r)
        except ValueError:
            return {}
        o = o.get("collector", o)
        return (o.get("watches") or [{}])[0]
    pid = system.sh("systemctl show -p MainPID --value demo-crash.service").stdout.strip()
    assert pid not in ("", "0"), system.sh("systemctl status demo-crash --no-pager").stdout
    assert wait_until(lambda: str(watch().get("pid")) == pid, 20), \
        (watch(), system.sh("journalctl -u weibao-agent --no-pager | tail -20").stdout)
    system.sh("systemctl kill -s KILL demo-crash.service")
    found = system.stub.wait_for(lambda: cases(system.stub, "process:demo:restart"), 20)
    case = found[0]
    assert case["level"] == "P1", case
    rd = case["readings"]
    assert rd["unit"] == "demo-crash.service" and rd["result"] == "success", rd  # after the restart
    assert rd["signal"] == 9 and rd["signal_name"] == "SIGKILL", rd
    assert rd["n_restarts"] >= 1 and str(rd["old_pid"]) == pid, rd
    assert rd["cmdline"] == "/bin/sleep infinity", rd
    log = system.sh("journalctl -u weibao-agent --no-pager").stdout
    assert "demo: pid %s killed by signal 9 (SIGKILL)" % pid in log, log


def test_purge_leaves_nothing_behind(system):
    system.poweroff()
    # what the tests themselves added is not the package's to remove
    os.remove(os.path.join(system.root, "etc/weibao/rules.d/90-test.rules"))
    shutil.rmtree(os.path.join(system.root, "etc/systemd/system/weibao-agent.service.d"))
    r = nspawn(system.root, "apt-get", "purge", "-y", "weibao-agent")
    assert r.returncode == 0, r.stdout + r.stderr
    left = sorted(p for p in tree(system.root) - system.before if "weibao" in p)
    assert not left, left
    assert not os.path.exists(os.path.join(system.root, "var/lib/weibao"))
    assert not os.path.exists(os.path.join(system.root, "etc/weibao"))
