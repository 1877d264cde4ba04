"""The Debian package in a booted Debian 12: debootstrap a minimal root once
(cached under build/nspawn/), install weibao-agent_*.deb into a copy, boot
it with systemd-nspawn and check what an administrator relies on: the stock
package starts with its shipped configuration, the agent runs as its own
user behind its socket unit, a trap to the container's port 162 becomes a
case on a stub, systemd restarts it after a kill and after a hung loop
(watchdog), `systemctl reload` applies new rules and fails on broken ones,
fault lines reach the journal with their fields, the process collector's
unit watch sees a service systemd restarts after a SIGKILL (over the real
system bus), weibao-stub runs as a service, and `apt-get purge` leaves
nothing behind.

The container has a network namespace of its own (--private-network: only
its loopback), so port 162 is its own whatever the host runs (a host with
snmptrapd.socket enabled holds UDP 162). Traps are sent from inside that
namespace; the agent reaches the stub, which runs on the host's loopback,
through a relay whose listening socket the test makes inside it. Root only;
the root filesystem comes from Debian's mirror through debootstrap, the
packages from `make deb` (test_debian.built_debs: rebuilt when the tree is
newer)."""

import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import BUILD, StubProcess, _die_with_parent, require_root, require_tool, wait_until
from test_debian import built_debs

CACHE = os.path.join(BUILD, "nspawn")
INCLUDE = ("systemd,systemd-sysv,dbus,adduser,procps,libcjson1,libcurl4,libsensors5,libsnmp40,libsqlite3-0,libnettle8,"
           "libmicrohttpd12,ca-certificates")
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
SNMP_ENV = dict(os.environ, MIBS="", SNMPCONFPATH="/nonexistent")


def require_tools():
    for tool, pkg in (("debootstrap", "debootstrap"), ("systemd-nspawn", "systemd-container"),
                      ("nsenter", "util-linux"), ("snmptrap", "snmp"), ("ss", "iproute2")):
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
    """A minimal Debian 12 root, made once and kept under build/nspawn.

    An flock on the cache directory serialises runs that share it; the root
    is debootstrapped into a temporary directory and renamed into place only
    when complete, so a crashed or concurrent run never leaves a half-made
    root where the next one would take it."""
    root = os.path.join(CACHE, "root-" + hashlib.sha256(INCLUDE.encode()).hexdigest()[:12])
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(root, ".complete")):
            return root
        shutil.rmtree(root, ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=".debootstrap-", dir=CACHE)
        try:
            r = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + INCLUDE, "bookworm", tmp,
                                mirror()], capture_output=True, text=True, timeout=1200)
            assert r.returncode == 0, "debootstrap failed:\n" + (r.stdout + r.stderr)[-3000:]
            open(os.path.join(tmp, ".complete"), "w").close()
            os.chmod(tmp, 0o755)
            os.rename(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def nspawn(root, *cmd, binds=()):
    args = ["systemd-nspawn", "-q", "-D", root, "--register=no", "--keep-unit", "--private-network"]
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


CLONE_NEWNET = 0x40000000


def socket_in_netns(pid, kind=socket.SOCK_STREAM):
    """A new IPv4 socket in the network namespace of process pid. A socket
    stays in the namespace it was made in; only a short-lived thread of the
    test moves there to make it (setns changes the calling thread alone)."""
    out = {}

    def make():
        fd = os.open("/proc/%d/ns/net" % pid, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                out["error"] = os.strerror(ctypes.get_errno())
                return
            out["sock"] = socket.socket(socket.AF_INET, kind)
        finally:
            os.close(fd)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    assert "sock" in out, "setns into the container's network: %s" % out.get("error")
    return out["sock"]


class Relay:
    """TCP from 127.0.0.1:port inside the container's network namespace to
    127.0.0.1:target on the host: how the agent reaches the test's stub."""

    def __init__(self, pid, target):
        self.target = target
        self.listener = socket_in_netns(pid)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                inner, _ = self.listener.accept()
            except OSError:
                return
            try:
                outer = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                inner.close()
                continue
            outer.settimeout(None)
            self.socks += [inner, outer]
            for a, b in ((inner, outer), (outer, inner)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.listener.close()
        for x in self.socks:
            x.close()


def http_in_netns(pid, port, path, token=None):
    """(status, body) of a GET to 127.0.0.1:port in the namespace of pid."""
    with socket_in_netns(pid) as s:
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        auth = "Authorization: Bearer %s\r\n" % token if token else ""
        s.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, auth)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


class Container:
    def __init__(self, root):
        self.root = root
        self.stub = None
        self.proc = None
        self.logf = None
        self.log_path = root + ".boot.log"

    def boot(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["systemd-nspawn", "-q", "-D", self.root, "--register=no", "--keep-unit",
                                      "--private-network", "--boot"], stdin=subprocess.DEVNULL, stdout=self.logf,
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

    def show(self, prop, unit="weibao-agent.service"):
        return self.sh("systemctl show -p %s --value %s" % (prop, unit)).stdout.strip()

    def journal(self, unit="weibao-agent"):
        return self.sh("journalctl -u %s --no-pager" % unit).stdout

    def trap(self, *args):
        """snmptrap (the host's) from inside the container's network, to its
        port 162."""
        subprocess.run(["nsenter", "-t", str(self.leader()), "-n", "snmptrap", "-v2c", "-c", "public",
                        "127.0.0.1:162", *args], check=True, env=SNMP_ENV, timeout=20)

    def control(self, line):
        path = "/proc/%d/root/run/weibao/control.sock" % self.leader()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(line.encode() + b"\n")
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                pass
            return data.decode()

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
        if self.logf:
            self.logf.close()
            self.logf = None


TEST_CONF = ('agent {\n  rules "/etc/weibao/rules.d/*.rules"\n}\n'
             'central {\n  url "%s"\n  token_file "/etc/weibao/token"\n  retry 1s\n}\n'
             'collector sensors {\n  enabled no\n}\n'
             'collector snmptrap {\n  community "public"\n  users_file "/etc/weibao/snmp-users"\n}\n'
             'collector process {\n  watch "demo unit=demo-crash.service critical"\n  grace 30s\n}\n')


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    require_root("needs root for systemd-nspawn")
    require_tools()
    debs = built_debs()
    base = base_root()
    work = str(tmp_path_factory.mktemp("nspawn"))
    root = os.path.join(work, "root")
    subprocess.run(["cp", "-a", base, root], check=True)
    before = tree(root)
    deb_dir = os.path.dirname(debs["weibao-agent"])
    r = nspawn(root, "dpkg", "-i", "/debs/" + os.path.basename(debs["weibao-agent"]), binds=[(deb_dir, "/debs")])
    assert r.returncode == 0, r.stdout + r.stderr

    # a service for the process collector's unit watch: systemd restarts it when it is killed
    units = os.path.join(root, "etc/systemd/system")
    with open(os.path.join(units, "demo-crash.service"), "w") as f:
        f.write("[Unit]\nDescription=weibao test: a service that is killed\n[Service]\n"
                "ExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=500ms\n"
                "[Install]\nWantedBy=multi-user.target\n")
    os.makedirs(os.path.join(units, "multi-user.target.wants"), exist_ok=True)
    os.symlink("/etc/systemd/system/demo-crash.service", os.path.join(units, "multi-user.target.wants",
                                                                       "demo-crash.service"))
    # test mode: a short watchdog and the "stall" command
    dropin = os.path.join(root, "etc/systemd/system/weibao-agent.service.d")
    os.makedirs(dropin, exist_ok=True)
    with open(os.path.join(dropin, "test.conf"), "w") as f:
        f.write("[Service]\nEnvironment=WEIBAO_TEST_STALL=1\nWatchdogSec=3s\n")

    c = Container(root)
    c.before = before
    c.debs = debs
    stub = relay = None
    try:
        c.boot()
        # the stock package, with the configuration it ships, before the test changes it
        c.stock_active = wait_until(lambda: c.sh("systemctl is-active weibao-agent.service").stdout.strip()
                                    == "active", 20)
        c.stock_status = c.sh("systemctl status weibao-agent --no-pager").stdout + c.journal()
        c.stock_check = c.sh("weibao-agent --check --config /etc/weibao/agent.conf")

        os.makedirs(os.path.join(work, "stub"))
        stub = StubProcess(os.path.join(work, "stub"))
        stub.start()
        relay = Relay(c.leader(), stub.port)
        c.stub = stub
        with open(os.path.join(root, "etc/weibao/agent.conf"), "w") as f:
            f.write(TEST_CONF % ("http://127.0.0.1:%d" % relay.port))
        token = os.path.join(root, "etc/weibao/token")
        st = os.stat(token)
        with open(token, "w") as f:
            f.write(stub.token + "\n")
        os.chown(token, st.st_uid, st.st_gid)
        r = c.sh("systemctl restart weibao-agent.service")
        assert r.returncode == 0, r.stderr + c.journal()
        yield c
    finally:
        c.poweroff()
        if relay:
            relay.close()
        if stub:
            stub.stop()
            stub._kill()


def cases(stub, key):
    return [x for x in stub.cases() if x["fault_key"] == key]


def link_down(ifindex):
    return ["", LINK_DOWN, "1.3.6.1.2.1.2.2.1.1.%d" % ifindex, "i", str(ifindex)]


def test_stock_package_starts_with_its_shipped_configuration(system):
    assert system.stock_active, system.stock_status
    assert system.stock_check.returncode == 0, system.stock_check.stdout + system.stock_check.stderr
    assert 'token_file "/etc/weibao/token"' in system.stock_check.stdout, system.stock_check.stdout


def test_agent_is_active_as_its_own_user(system):
    assert system.sh("systemctl is-active weibao-agent.socket weibao-agent.service").stdout.split() == \
        ["active", "active"], system.sh("systemctl status weibao-agent --no-pager").stdout
    pid = system.show("MainPID")
    status = system.sh("cat /proc/%s/status" % pid).stdout
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
    passwd = system.sh("getent passwd weibao").stdout
    assert passwd and passwd.split(":")[2] == uid, (passwd, status)
    assert uid != "0"


def test_container_has_its_own_network(system):
    """Port 162 and the loopback the trap goes to are the container's own."""
    assert os.readlink("/proc/%d/ns/net" % system.leader()) != os.readlink("/proc/self/ns/net")
    links = system.sh("ls /sys/class/net").stdout.split()
    assert links == ["lo"], links
    # the container's port 162 is systemd's socket unit: its PID 1 holds it
    held = subprocess.run(["nsenter", "-t", str(system.leader()), "-n", "ss", "-Hulnp", "sport", "=", "162"],
                          capture_output=True, text=True, timeout=10).stdout
    assert '"systemd",pid=%d,' % system.leader() in held, held


def test_trap_to_port_162_reaches_the_agent_through_the_socket_unit(system):
    system.trap(*link_down(5))
    assert system.stub.wait_for(lambda: cases(system.stub, "snmp:link:127.0.0.1:5"), 15), \
        system.journal()[-3000:]
    log = system.journal()
    assert "using the sockets systemd passed" in log, log


def journal_json(system, match):
    out = system.sh("journalctl -o json --no-pager %s" % match).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_fault_lines_reach_the_journal_with_their_fields(system):
    key = "snmp:link:127.0.0.1:5"
    case = system.stub.wait_for(lambda: cases(system.stub, key), 15)[0]

    def entries():
        e = journal_json(system, "FAULT_KEY=" + key)
        return e if any(x.get("CASE_ID") for x in e) else None
    found = wait_until(entries, 15)
    assert found, system.journal()[-3000:]
    firing = [e for e in found if "firing at P3" in e["MESSAGE"]]
    assert firing, found
    assert firing[0]["FAULT_LEVEL"] == "P3" and firing[0]["RULE"] == "snmp-link-down", firing[0]
    assert firing[0]["PRIORITY"] == "5", firing[0]  # notice: a P3 is no trouble of the agent's
    assert firing[0]["_SYSTEMD_UNIT"] == "weibao-agent.service", firing[0]
    opened = [e for e in found if e.get("CASE_ID")]
    assert opened[0]["CASE_ID"] == str(case["id"]) and opened[0]["PRIORITY"] in ("5", "6"), opened[0]


def test_killed_agent_is_restarted(system):
    pid = system.show("MainPID")
    system.sh("systemctl kill -s KILL weibao-agent.service")
    assert wait_until(lambda: system.show("MainPID") not in ("0", pid) and
                      system.sh("systemctl is-active weibao-agent").stdout.strip() == "active", 20), \
        system.sh("systemctl status weibao-agent --no-pager").stdout
    system.trap(*link_down(6))
    assert system.stub.wait_for(lambda: cases(system.stub, "snmp:link:127.0.0.1:6"), 15)


def test_hung_loop_is_restarted_by_the_watchdog(system):
    pid = system.show("MainPID")
    restarts = int(system.show("NRestarts"))
    system.control("stall 20")  # test mode: the loop stops; WatchdogSec=3s in the drop-in
    assert wait_until(lambda: int(system.show("NRestarts")) > restarts and system.show("MainPID") not in ("0", pid),
                      30), system.journal()[-3000:]
    # systemd's own word for it, not merely some line that mentions a watchdog
    log = system.journal()
    assert re.search(r"weibao-agent\.service: Watchdog timeout \(limit 3s\)", log), log
    assert wait_until(lambda: system.sh("systemctl is-active weibao-agent").stdout.strip() == "active", 20)


COLD_START_RULE = ('rule nspawn-cold-start {\n    when source == "snmptrap" and trap == "SNMPv2-MIB::coldStart"\n'
                   '    level P1\n    key "nspawn:{source_addr}"\n    title "reloaded rule"\n}\n')


def rules_loaded(system):
    o = json.loads(system.control("status") or "{}")
    return (o.get("rules") or {}).get("loaded")


def test_reload_applies_new_rules(system):
    before = rules_loaded(system)
    with open(os.path.join(system.root, "etc/weibao/rules.d/90-test.rules"), "w") as f:
        f.write(COLD_START_RULE)
    r = system.sh("systemctl reload weibao-agent")
    assert r.returncode == 0, r.stderr + system.journal()[-2000:]
    # systemctl reload returned after the agent had the new rules: the trap
    # right after it meets them
    assert rules_loaded(system) == before + 1
    system.trap("", "1.3.6.1.6.3.1.1.5.1")
    found = system.stub.wait_for(lambda: cases(system.stub, "nspawn:127.0.0.1"), 15)
    assert found and found[0]["level"] == "P1"


def test_broken_rules_fail_the_reload_and_the_running_ones_stay(system):
    pid = system.show("MainPID")
    loaded = rules_loaded(system)
    broken = os.path.join(system.root, "etc/weibao/rules.d/91-broken.rules")
    with open(broken, "w") as f:
        f.write('rule nspawn-broken {\n    when source == \n    level P9\n}\n')
    try:
        r = system.sh("systemctl reload weibao-agent")
        assert r.returncode != 0, (r.stdout, r.stderr)
        assert system.sh("systemctl is-active weibao-agent").stdout.strip() == "active"
        assert system.show("MainPID") == pid
        assert rules_loaded(system) == loaded
        log = system.journal()
        assert "91-broken.rules:3:11: expected level P1" in log and "reload failed" in log, log[-3000:]
        # the rules in force before the reload still open cases
        system.trap(*link_down(7))
        assert system.stub.wait_for(lambda: cases(system.stub, "snmp:link:127.0.0.1:7"), 15)
    finally:
        os.remove(broken)
    r = system.sh("systemctl reload weibao-agent")
    assert r.returncode == 0, r.stderr


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
    pid = system.show("MainPID", "demo-crash.service")
    assert pid not in ("", "0"), system.sh("systemctl status demo-crash --no-pager").stdout
    assert wait_until(lambda: str(watch().get("pid")) == pid, 20), (watch(), system.journal()[-2000:])
    system.sh("systemctl kill -s KILL demo-crash.service")
    found = system.stub.wait_for(lambda: cases(system.stub, "process:demo:restart"), 20)
    case = found[0]
    assert case["level"] == "P1", case
    rd = case["readings"]
    assert rd["unit"] == "demo-crash.service" and rd["result"] == "success", rd  # after the restart
    assert rd["signal"] == 9 and rd["signal_name"] == "SIGKILL", rd
    assert rd["n_restarts"] >= 1 and str(rd["old_pid"]) == pid, rd
    assert rd["cmdline"] == "/bin/sleep infinity", rd
    log = system.journal()
    assert "demo: pid %s killed by signal 9 (SIGKILL)" % pid in log, log


def test_stub_package_runs_as_a_service_and_purges_clean(system):
    """weibao-stub from its package: the postinst makes the token, the
    service (DynamicUser=, the token as a credential) starts and answers on
    the container's loopback, and purge removes its state and token."""
    before = tree(system.root)
    deb = system.debs["weibao-stub"]
    shutil.copy(deb, os.path.join(system.root, "var/tmp"))
    r = system.sh("dpkg -i /var/tmp/%s" % os.path.basename(deb), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    token_path = os.path.join(system.root, "etc/weibao/stub-token")
    st = os.stat(token_path)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600, oct(st.st_mode)
    with open(token_path) as f:
        token = f.read().strip()
    assert len(token) >= 32, token
    r = system.sh("systemctl start weibao-stub")
    assert r.returncode == 0, r.stderr + system.journal("weibao-stub")
    assert system.sh("systemctl is-active weibao-stub").stdout.strip() == "active", system.journal("weibao-stub")
    status = wait_until(lambda: _try_http(system.leader(), token), 10)
    assert status and status[0] == 200 and json.loads(status[1])["cases"] == [], (status, system.journal("weibao-stub"))
    assert _try_http(system.leader(), "wrong-token")[0] == 401
    assert os.path.isdir(os.path.join(system.root, "var/lib/private/weibao-stub"))
    r = system.sh("apt-get purge -y weibao-stub", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    left = sorted(p for p in tree(system.root) - before if "stub" in p)
    assert not left, left
    assert not os.path.exists(token_path)
    assert not os.path.exists(os.path.join(system.root, "var/lib/private/weibao-stub"))


def _try_http(pid, token):
    try:
        return http_in_netns(pid, 8080, "/api/v1/cases", token)
    except OSError:
        return None


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
