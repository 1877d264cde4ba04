"""The snmptrap collector end to end: net-snmp's own snmptrap and snmpinform
send to an agent listening on a high loopback port, the default SNMP rules
turn what arrives into cases on a weibao-stub.

These tests need no root: the agent runs without the sensors collector and
listens on a free port of 127.0.0.1.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, ROOT, AgentProcess, _die_with_parent, require_root, require_tool, wait_until

ENGINE = "0x8000000001020304"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
LINK_UP = "1.3.6.1.6.3.1.1.5.4"
COLD_START = "1.3.6.1.6.3.1.1.5.1"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
SNMP_ENV = dict(os.environ, MIBS="", SNMPCONFPATH="/nonexistent")

# The agent finds weibao's MIB subset beside its build directory
# (BUILD/../collectors/mibs); a build elsewhere (make B=/tmp/x) is told.
if not os.path.isdir(os.path.join(BUILD, "..", "collectors", "mibs")):
    os.environ.setdefault("WEIBAO_MIBDIR", os.path.join(ROOT, "collectors", "mibs"))


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_snmp_tools():
    require_tool("snmptrap", "snmp")
    require_tool("snmpinform", "snmp")


class TrapAgent(AgentProcess):
    """One weibao-agent with only the snmptrap collector, on a free port."""

    def __init__(self, tmp, stub, snmp_settings="", users=None, rules_glob=None):
        self.tmp = tmp
        self.port = free_udp_port()
        self.sock = os.path.join(tmp, "agent.sock")
        self.conf = os.path.join(tmp, "agent.conf")
        self.log_path = os.path.join(tmp, "agent.log")
        users_line = ""
        if users is not None:
            path = os.path.join(tmp, "snmp-users")
            with open(path, "w") as f:
                f.write(users)
            os.chmod(path, 0o600)
            users_line = '  users_file "%s"\n' % path
        with open(self.conf, "w") as f:
            f.write(
                'agent {\n  id "trap-agent"\n  state_dir "%s"\n  control_socket "%s"\n  log_level debug\n'
                '%s}\n'
                'central {\n  url "%s"\n  token_file "%s"\n  timeout 2s\n  retry 1s\n  occurrence_interval 1s\n}\n'
                "collector sensors {\n  enabled no\n}\n"
                'collector snmptrap {\n  listen "udp:127.0.0.1:%d"\n%s%s}\n'
                % (os.path.join(tmp, "state"), self.sock,
                   "".join('  rules "%s"\n' % g for g in [os.path.join(ROOT, "rules", "default", "*.rules")]
                           + ([rules_glob] if rules_glob else [])),
                   stub.url, stub.token_file, self.port, users_line, snmp_settings))
        self.proc = None

    def start(self, env=None):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "weibao-agent"), "--config", self.conf],
                                     stdout=self.logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                     env=dict(os.environ, **(env or {})))
        wait_until(lambda: os.path.exists(self.sock) or self.proc.poll() is not None, 10)
        assert self.proc.poll() is None, "agent exited early:\n" + self.log()
        assert wait_until(lambda: self.traps().get("running"), 5), self.log()

    def traps(self):
        r = self.ctl("--json", "traps")
        if r.returncode != 0:
            return {}
        return json.loads(r.stdout)["collector"]

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # senders: net-snmp's own commands
    def trap(self, *args, check=True):
        r = subprocess.run(["snmptrap", *args[:-1], "127.0.0.1:%d" % self.port, *args[-1]],
                           capture_output=True, text=True, env=SNMP_ENV, timeout=20)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def inform(self, *args):
        return subprocess.run(["snmpinform", "-r", "1", "-t", "3", *args[:-1], "127.0.0.1:%d" % self.port,
                               *args[-1]], capture_output=True, text=True, env=SNMP_ENV, timeout=30)


def link_varbinds(ifindex, descr="eth%d", oper=2, admin=1):
    return ["%s.%d" % (IF_INDEX, ifindex), "i", str(ifindex),
            "%s.%d" % (IF_DESCR, ifindex), "s", descr % ifindex if "%d" in descr else descr,
            "%s.%d" % (IF_ADMIN, ifindex), "i", str(admin),
            "%s.%d" % (IF_OPER, ifindex), "i", str(oper)]


def v2c_args(community="public"):
    return ["-v2c", "-c", community]


def v3_trap_args(user="trapuser", auth="authpass-123", priv="privpass-123", engine=ENGINE):
    return ["-v3", "-e", engine, "-u", user, "-l", "authPriv", "-a", "SHA-256", "-A", auth, "-x", "AES", "-X", priv]


USERS = ("# v3 users for the tests\n"
         "createUser -e %s trapuser SHA-256 authpass-123 AES privpass-123\n"
         "informuser SHA authpass-456 AES privpass-456\n" % ENGINE)


def link_key(ifindex, source="127.0.0.1"):
    return "snmp:link:%s:%d" % (source, ifindex)


def wait_case(stub, key, timeout=10):
    cases = stub.wait_for(lambda: [c for c in stub.cases() if c["fault_key"] == key], timeout)
    assert cases, "no case for %s" % key
    return stub.case(cases[0]["id"])


def make_agent(tmp_path, stub, **kw):
    os.makedirs(str(tmp_path), exist_ok=True)
    return TrapAgent(str(tmp_path), stub, **kw)


@pytest.fixture
def agent(stub, tmp_path):
    require_snmp_tools()
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n', users=USERS)
    yield a
    a.stop()


def test_every_version_becomes_a_case_with_varbinds_by_name(agent, stub):
    agent.start()
    agent.trap(*v2c_args(), ["", LINK_DOWN] + link_varbinds(1))
    agent.trap("-v1", "-c", "public", ["1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "2", "0", ""] + link_varbinds(2))
    r = agent.inform(*v2c_args(), ["", LINK_DOWN] + link_varbinds(3))
    assert r.returncode == 0, "v2c inform not acknowledged: " + r.stderr
    agent.trap(*v3_trap_args(), ["", LINK_DOWN] + link_varbinds(4))
    r = agent.inform("-v3", "-u", "informuser", "-l", "authPriv", "-a", "SHA", "-A", "authpass-456", "-x", "AES",
                     "-X", "privpass-456", ["", LINK_DOWN] + link_varbinds(5))
    assert r.returncode == 0, "v3 inform not acknowledged: " + r.stderr

    expect = {1: "2c", 2: "1", 3: "2c", 4: "3", 5: "3"}
    for ifindex, version in expect.items():
        case = wait_case(stub, link_key(ifindex))
        assert case["level"] == "P3", case
        assert case["rule"] == "snmp-link-down"
        rd = case["readings"]
        assert rd["trap"] == "IF-MIB::linkDown", rd
        assert rd["trap_oid"] == LINK_DOWN
        assert rd["version"] == version
        assert rd["varbind[IF-MIB::ifIndex]"] == ifindex
        assert rd["varbind[IF-MIB::ifDescr]"] == "eth%d" % ifindex
        assert rd["varbind[IF-MIB::ifOperStatus]"] == "down"
        assert rd["varbind[%s.%d]" % (IF_OPER, ifindex)] == 2
        assert "eth%d" % ifindex in case["title"], case["title"]
        if version == "3":
            assert rd["user"] in ("trapuser", "informuser")
            assert rd["security_level"] == "authPriv"
        else:
            assert rd["community"] == "public"
    assert len([c for c in stub.cases() if c["fault_key"].startswith("snmp:link:")]) == 5
    t = agent.traps()
    assert t["accepted"] == 5, t
    assert t["rejected_total"] == 0, t
    assert t["discovery"] >= 1, t  # the v3 inform found the agent's engine ID first


def test_rejected_notifications_open_no_case_and_are_counted_by_reason(agent, stub):
    agent.start()
    agent.trap(*v2c_args("wrong"), ["", LINK_DOWN] + link_varbinds(11))
    agent.trap(*v3_trap_args(user="nobody"), ["", LINK_DOWN] + link_varbinds(12))
    agent.trap(*v3_trap_args(auth="wrong-auth-key"), ["", LINK_DOWN] + link_varbinds(13))
    agent.trap(*v3_trap_args(priv="wrong-priv-key"), ["", LINK_DOWN] + link_varbinds(14))
    agent.trap("-v3", "-e", ENGINE, "-u", "trapuser", "-l", "noAuthNoPriv", ["", LINK_DOWN] + link_varbinds(15))
    assert wait_until(lambda: agent.traps()["received"] == 5, 5), agent.traps()
    t = agent.traps()
    assert t["accepted"] == 0, t
    rej = t["rejected"]
    assert rej["community"] == 1, rej
    assert rej["unknown-user"] == 1, rej
    assert rej["auth"] == 1, rej
    assert rej["decrypt"] == 1, rej
    assert rej["security-level"] == 1, rej
    assert t["rejected_total"] == 5
    # the burst is reported once: one P5 case for the sender with one
    # report in it (the first failure at once; auth_report is 10 minutes),
    # no link case
    case = wait_case(stub, "snmp:rejected:127.0.0.1")
    assert case["level"] == "P5"
    assert "SNMP authentication failures from 127.0.0.1" in case["title"]
    assert case["readings"]["failures"] == 1 and case["readings"]["total"] == 1, case["readings"]
    time.sleep(6)  # past the collector's 5 s check and the 1 s occurrence interval
    assert not [c for c in stub.cases() if c["fault_key"].startswith("snmp:link:")], stub.cases()
    assert len([c for c in stub.cases() if c["fault_key"] == "snmp:rejected:127.0.0.1"]) == 1
    case = stub.case(case["id"])
    assert case["occurrences"] == 1, case
    faults = json.loads(agent.ctl("--json", "faults").stdout)["faults"]
    assert [f["occurrences"] for f in faults if f["key"] == "snmp:rejected:127.0.0.1"] == [1], faults
    # the rejected ones that decoded are visible with their reason
    r = agent.ctl("traps")
    assert r.returncode == 0, r.stderr
    assert "[community]" in r.stdout, r.stdout


def test_auth_failures_are_reported_once_per_period_with_the_count(stub, tmp_path):
    """A burst from one sender: one report at once (failures 1), the rest
    in one report after auth_report with their number and the total."""
    require_snmp_tools()
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n  auth_report 2s\n')
    a.start()
    try:
        bad = capture_v2c_trap(["", LINK_DOWN] + link_varbinds(16), community="wrong")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(5):
                s.sendto(bad, ("127.0.0.1", a.port))
        assert wait_until(lambda: a.traps()["rejected"]["community"] == 5, 5), a.traps()
        case = wait_case(stub, "snmp:rejected:127.0.0.1")
        assert case["readings"]["failures"] == 1, case["readings"]
        # the other four: one report when the period is over (checked every 5 s)
        stub.wait_for(lambda: stub.case(case["id"])["occurrences"] == 2, 15)
        case = stub.case(case["id"])
        last = [u for u in case["updates"] if u.get("readings")][-1]["readings"]
        assert last["failures"] == 4, case["updates"]
        assert last["total"] == 5, case["updates"]
        time.sleep(3)  # another period without failures: no report
        assert stub.case(case["id"])["occurrences"] == 2
        assert len([c for c in stub.cases() if c["fault_key"].startswith("snmp:rejected:")]) == 1
    finally:
        a.stop()


def test_many_failing_sources_are_folded_into_one_report(stub, tmp_path):
    """Spoofed source addresses must not defeat "reported once": ten sources
    are reported one by one per period, the rest in one "many" report."""
    require_snmp_tools()
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n')
    a.start()
    try:
        bad = capture_v2c_trap(["", LINK_DOWN] + link_varbinds(17), community="wrong")
        n = 300
        for i in range(n):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.10.%d.%d" % (i // 250, i % 250 + 1), 0))
                s.sendto(bad, ("127.0.0.1", a.port))
        assert wait_until(lambda: a.traps()["rejected"]["community"] == n, 10), a.traps()
        many = wait_case(stub, "snmp:rejected:many", timeout=15)
        assert many["level"] == "P5"
        assert many["readings"]["sources"] == n - 10, many["readings"]
        assert many["readings"]["failures"] == n - 10, many["readings"]
        assert "290 more source(s)" in many["title"], many["title"]
        time.sleep(1.5)
        single = [c for c in stub.cases() if c["fault_key"].startswith("snmp:rejected:127.")]
        assert len(single) == 10, [c["fault_key"] for c in single]
        assert len([c for c in stub.cases() if c["fault_key"] == "snmp:rejected:many"]) == 1
        assert a.traps()["auth_sources_overflow"] == 0
    finally:
        a.stop()


def test_disallowed_source_is_rejected_before_parsing(stub, tmp_path):
    require_snmp_tools()
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n  allow "127.0.0.2/32"\n  allow "10.0.0.0/8"\n')
    try:
        a.start()
        a.trap(*v2c_args(), ["", LINK_DOWN] + link_varbinds(21))
        assert wait_until(lambda: a.traps()["received"] == 1, 5)
        t = a.traps()
        assert t["rejected"]["source"] == 1, t
        assert t["accepted"] == 0
        # from 127.0.0.2, the allowed address, the same community passes
        pkt = capture_v2c_trap(["", LINK_DOWN] + link_varbinds(22))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            s.sendto(pkt, ("127.0.0.1", a.port))
        case = wait_case(stub, link_key(22, "127.0.0.2"))
        assert case["readings"]["source_addr"] == "127.0.0.2"
        assert not [c for c in stub.cases() if c["fault_key"] == link_key(21)]
    finally:
        a.stop()


def capture_v2c_trap(varbinds, community="public"):
    """The bytes snmptrap sends for one v2c trap."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        subprocess.run(["snmptrap", "-v2c", "-c", community, "127.0.0.1:%d" % s.getsockname()[1], *varbinds],
                       check=True, env=SNMP_ENV, timeout=20)
        return s.recv(65535)


def test_link_down_then_up_is_one_case_then_cleared(agent, stub):
    agent.start()
    for _ in range(3):
        agent.trap(*v2c_args(), ["", LINK_DOWN] + link_varbinds(7))
    case = wait_case(stub, link_key(7))
    agent.trap(*v2c_args(), ["", LINK_UP] + link_varbinds(7, oper=1))
    stub.wait_for(lambda: stub.case(case["id"])["fault_active"] is False, 10)
    case = stub.case(case["id"])
    assert case["cleared_at"], case
    assert case["occurrences"] == 3, case
    assert [u for u in case["updates"] if u["type"] == "cleared"], case["updates"]
    assert len([c for c in stub.cases() if c["fault_key"] == link_key(7)]) == 1
    # linkUp for another interface that was never down is kept and counted, not dropped
    agent.trap(*v2c_args(), ["", LINK_UP] + link_varbinds(8, oper=1))
    assert wait_until(lambda: agent.traps()["unmatched"] >= 1, 5), agent.traps()
    r = agent.ctl("--json", "events")
    assert r.returncode == 0
    kept = json.loads(r.stdout)["unmatched"]
    assert any(e["attributes"].get("varbind[IF-MIB::ifIndex]") == 8 for e in kept), kept


def test_device_restart_is_p2_and_its_auth_failure_p5(agent, stub):
    agent.start()
    agent.trap(*v2c_args(), ["", COLD_START])
    agent.trap(*v2c_args(), ["", "1.3.6.1.6.3.1.1.5.2"])  # warmStart: the same fault
    case = wait_case(stub, "snmp:restart:127.0.0.1")
    assert case["level"] == "P2"
    assert "SNMPv2-MIB::coldStart" in case["title"]
    agent.trap("-v1", "-c", "public", ["1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "4", "0", ""])  # v1 authenticationFailure
    case = wait_case(stub, "snmp:device-auth:127.0.0.1")
    assert case["level"] == "P5"
    assert case["readings"]["trap"] == "SNMPv2-MIB::authenticationFailure"
    assert len([c for c in stub.cases() if c["fault_key"] == "snmp:restart:127.0.0.1"]) == 1


def test_malformed_datagrams_are_counted_and_harmless(agent, stub):
    agent.start()
    good = capture_v2c_trap(["", LINK_DOWN] + link_varbinds(31))
    bad = [
        b"",
        os.urandom(300),
        good[:len(good) // 2],                      # truncated
        b"\x30\x84\xff\xff\xff\xff" + good[2:],     # absurd length
        b"\x30\x82\x00\x05" + good[2:],             # length shorter than the content
        good[:1] + b"\x82\x01\x00" + good[2:],      # longer than the datagram
        b"\x30" + b"\x81" * 100,                    # endless length bytes
        b"\x30\x03\x02\x01\x63",                    # a message with an absurd version
        b"\x30" + b"\x82\x7f\xff" + b"\x02" * 2000,  # over-long and nonsense
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in bad:
            s.sendto(p, ("127.0.0.1", agent.port))
        s.sendto(good, ("127.0.0.1", agent.port))
    wait_case(stub, link_key(31))
    t = agent.traps()
    # the empty datagram is received too; every bad one ends as malformed
    assert t["received"] == len(bad) + 1, t
    assert t["rejected"]["malformed"] == len(bad), t
    assert t["accepted"] == 1
    assert agent.proc.poll() is None
    assert len([c for c in stub.cases() if c["fault_key"].startswith("snmp:link")]) == 1


def test_large_notification_becomes_a_case(agent, stub):
    """A trap over 8 KiB (a long OCTET STRING varbind) is received whole:
    UDP datagrams reach 65507 bytes."""
    agent.start()
    alias = "".join(chr(ord("a") + i % 26) for i in range(8900))
    pkt = capture_v2c_trap(["", LINK_DOWN] + link_varbinds(81) + ["1.3.6.1.2.1.31.1.1.1.18.81", "s", alias])
    assert 9000 < len(pkt) < 9200, len(pkt)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(pkt, ("127.0.0.1", agent.port))
    case = wait_case(stub, link_key(81))
    rd = case["readings"]
    assert rd["varbind[IF-MIB::ifDescr]"] == "eth81", rd
    assert alias.startswith(rd["varbind[IF-MIB::ifAlias]"]) and len(rd["varbind[IF-MIB::ifAlias]"]) >= 256, rd
    t = agent.traps()
    assert t["accepted"] == 1 and t["truncated"] == 0 and t["rejected_total"] == 0, t


def test_storm_of_one_fault_is_one_case_with_the_exact_count(stub, tmp_path):
    require_snmp_tools()
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n')
    a.start()
    try:
        pkt = capture_v2c_trap(["", LINK_DOWN] + link_varbinds(9))
        total, rate = 100000, 25000
        rss_before = a.rss_kib()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            t0 = time.monotonic()
            for i in range(total):
                s.sendto(pkt, ("127.0.0.1", a.port))
                if i % 500 == 499:
                    ahead = (i + 1) / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        assert wait_until(lambda: a.traps()["received"] + a.traps()["kernel_drops"] >= total, 30), a.traps()
        t = a.traps()
        assert t["kernel_drops"] == 0, t
        assert t["accepted"] == total, t
        cases = [c for c in stub.cases() if c["fault_key"] == link_key(9)]
        assert len(cases) == 1, cases
        stub.wait_for(lambda: stub.case(cases[0]["id"])["occurrences"] == total, 10)
        assert stub.case(cases[0]["id"])["occurrences"] == total
        rss_after = a.rss_kib()
        # the storm itself holds no memory: one fault, one state, bounded rings
        # (measured: about 9 MiB after the storm, net-snmp and its MIBs included)
        assert rss_after < 16 * 1024, (rss_before, rss_after)
        assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)
    finally:
        a.stop()


def test_reload_keeps_the_socket_and_applies_new_communities(agent, stub):
    agent.start()
    agent.trap(*v2c_args("second"), ["", LINK_DOWN] + link_varbinds(41))
    assert wait_until(lambda: agent.traps()["rejected"]["community"] == 1, 5)
    with open(agent.conf) as f:
        text = f.read()
    with open(agent.conf, "w") as f:
        f.write(text.replace('community "public"\n', 'community "public"\n  community "second"\n'))
    r = agent.ctl("reload")
    assert r.returncode == 0, r.stderr + agent.log()
    agent.trap(*v2c_args("second"), ["", LINK_DOWN] + link_varbinds(42))
    wait_case(stub, link_key(42))


def test_users_file_readable_by_others_is_refused(stub, tmp_path):
    a = make_agent(tmp_path, stub, users=USERS)
    os.chmod(os.path.join(str(tmp_path), "snmp-users"), 0o644)
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config", a.conf],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "group or others may read it" in r.stderr, r.stderr


def test_bad_settings_are_reported_with_positions(stub, tmp_path):
    a = make_agent(tmp_path, stub, snmp_settings='  allow "10.0.0.0/33"\n  min_security superSecret\n'
                   '  listen "tcp:162"\n  recent 0\n')
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config", a.conf],
                       capture_output=True, text=True)
    assert r.returncode == 2
    err = r.stderr
    assert "'10.0.0.0/33' is not a network" in err, err
    assert "expected noAuthNoPriv, authNoPriv or authPriv" in err, err
    assert "'tcp:162': expected udp:" in err, err
    assert "recent" in err and "1 .. 1000" in err, err
    assert "agent.conf:" in err


def vendor_example_rules():
    with open(os.path.join(ROOT, "docs", "snmp.md")) as f:
        text = f.read()
    start = text.index("<!-- vendor-severity-example")
    block = text[start:text.index("<!-- end vendor-severity-example")]
    return block[block.index("```\n") + 4:block.rindex("```")]


def test_documented_vendor_severity_pattern(stub, tmp_path):
    require_snmp_tools()
    rules = os.path.join(str(tmp_path), "vendor.rules")
    os.makedirs(str(tmp_path), exist_ok=True)
    with open(rules, "w") as f:
        f.write(vendor_example_rules())
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n', rules_glob=rules)
    a.start()
    try:
        def alarm(alarm_id, severity, text):
            a.trap(*v2c_args(), ["", "1.3.6.1.4.1.32473.2.0.1",
                                 "1.3.6.1.4.1.32473.2.1.1.0", "i", str(alarm_id),
                                 "1.3.6.1.4.1.32473.2.1.2.0", "i", str(severity),
                                 "1.3.6.1.4.1.32473.2.1.3.0", "s", text])
        alarm(7, 2, "fan tray 2 degraded")
        case = wait_case(stub, "acme:127.0.0.1:7")
        assert case["level"] == "P3", case
        assert case["title"] == "ACME alarm 7 on 127.0.0.1: fan tray 2 degraded", case["title"]
        alarm(7, 1, "fan tray 2 failed")
        stub.wait_for(lambda: stub.case(case["id"])["level"] == "P2", 10)
        alarm(8, 3, "disk 4 predictive failure")
        other = wait_case(stub, "acme:127.0.0.1:8")
        assert other["level"] == "P4"
        alarm(7, 5, "fan tray 2 replaced")
        stub.wait_for(lambda: stub.case(case["id"])["fault_active"] is False, 10)
        assert stub.case(other["id"])["fault_active"] is True
        assert len([c for c in stub.cases() if c["fault_key"].startswith("acme:")]) == 2
    finally:
        a.stop()


def test_socket_passed_by_systemd_is_used(stub, tmp_path):
    """Under systemd, weibao-agent.socket passes the trap socket (here
    systemd-socket-activate stands in for systemd): the agent uses it and
    ignores its listen setting, so it needs no privilege for port 162."""
    require_snmp_tools()
    require_tool("systemd-socket-activate", "systemd")
    activate = shutil.which("systemd-socket-activate")
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n')
    passed_port = free_udp_port()
    logf = open(a.log_path, "ab")
    # systemd-socket-activate passes on only the environment it is told to
    keep = ["-E", "WEIBAO_MIBDIR=" + os.environ["WEIBAO_MIBDIR"]] if os.environ.get("WEIBAO_MIBDIR") else []
    proc = subprocess.Popen([activate, "--datagram", "--listen", "127.0.0.1:%d" % passed_port, *keep,
                             os.path.join(BUILD, "weibao-agent"), "--config", a.conf],
                            stdout=logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        # a datagram socket unit starts its service on the first datagram,
        # which then waits in the passed socket
        time.sleep(0.3)
        subprocess.run(["snmptrap", "-v2c", "-c", "public", "127.0.0.1:%d" % passed_port, "", LINK_DOWN]
                       + link_varbinds(51), check=True, env=SNMP_ENV, timeout=20)
        case = wait_case(stub, link_key(51))
        assert case["level"] == "P3"
        t = a.traps()
        assert [l["from_systemd"] for l in t["listen"]] == [True], t["listen"]
        assert t["listen"][0]["address"].startswith("systemd:"), t["listen"]
        # the configured port was never opened
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", a.port))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()


def test_notifications_lost_in_the_kernel_are_reported(stub, tmp_path):
    """A stalled agent with a small receive buffer loses datagrams in the
    kernel: the count shows in status and opens a case."""
    require_snmp_tools()
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n  receive_buffer 65536\n')
    a.start()
    try:
        pkt = capture_v2c_trap(["", LINK_DOWN] + link_varbinds(61))
        a.proc.send_signal(signal.SIGSTOP)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(3000):
                    s.sendto(pkt, ("127.0.0.1", a.port))
        finally:
            a.proc.send_signal(signal.SIGCONT)
        case = wait_case(stub, "snmp:lost:udp:127.0.0.1:%d" % a.port, timeout=15)
        assert case["level"] == "P4"
        t = a.traps()
        assert t["kernel_drops"] > 0, t
        assert t["shed"] == t["kernel_drops"]
        assert t["received"] + t["kernel_drops"] == 3000, t
        assert case["readings"]["lost"] > 0
        assert "lost" in case["title"], case["title"]
    finally:
        a.stop()


def test_missing_snmp_module_is_counted_not_fatal(stub, tmp_path):
    require_snmp_tools()
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n')
    a.start(env={"WEIBAO_SNMP_MODULE": os.path.join(str(tmp_path), "no-such-module.so")})
    try:
        a.trap(*v2c_args(), ["", LINK_DOWN] + link_varbinds(71))
        a.trap(*v2c_args(), ["", LINK_DOWN] + link_varbinds(72))
        assert wait_until(lambda: a.traps()["unprocessed"] == 2, 5), a.traps()
        t = a.traps()
        assert t["received"] == 2 and t["accepted"] == 0, t
        assert t["decoder"].startswith("not set up"), t
        assert a.proc.poll() is None
        log = a.log()
        assert "cannot load the SNMP module" in log, log
        assert log.count("cannot load the SNMP module") == 1, log  # once a minute, not per datagram
        # shed, so counted as shed and reported in a case
        assert t["shed"] == 2, t
        case = wait_case(stub, "snmp:shed", timeout=15)
        assert case["level"] == "P4", case
        assert case["readings"]["unprocessed"] == 2, case["readings"]
        assert "2 not decoded" in case["title"], case["title"]
    finally:
        a.stop()


def start_with_passed_socket(a, sock, setpriv=()):
    """Starts a's agent as systemd would with one passed datagram socket
    (fd 3, LISTEN_PID/LISTEN_FDS), optionally under setpriv arguments."""
    fd = sock.fileno()
    script = ('exec 3<&%d %d<&-; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"' % (fd, fd))
    a.logf = open(a.log_path, "ab")
    a.proc = subprocess.Popen(["bash", "-c", script, "bash", *setpriv, os.path.join(BUILD, "weibao-agent"),
                               "--config", a.conf], pass_fds=(fd,), stdout=a.logf, stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent)
    wait_until(lambda: os.path.exists(a.sock) or a.proc.poll() is not None, 10)
    assert a.proc.poll() is None, "agent exited early:\n" + a.log()
    assert wait_until(lambda: a.traps().get("running"), 5), a.log()


def rcvbuf(sock):
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


@pytest.mark.parametrize("explicit", [None, 65536, 64 << 20], ids=["default", "smaller", "larger"])
def test_passed_socket_buffer_is_never_shrunk(stub, tmp_path, explicit):
    """A unit's ReceiveBuffer= (here set with SO_RCVBUFFORCE, as systemd does)
    survives the agent, which runs without CAP_NET_ADMIN as under the shipped
    unit: without it SO_RCVBUF caps at net.core.rmem_max, below the unit's
    buffer. Only an explicit, larger receive_buffer raises it (root may)."""
    require_root("sets a socket buffer above rmem_max with SO_RCVBUFFORCE")
    require_snmp_tools()
    require_tool("setpriv", "util-linux")
    with open("/proc/sys/net/core/rmem_max") as f:
        cap = int(f.read())
    big = max(16 << 20, 2 * cap)  # above what SO_RCVBUF may set and above the 8 MiB default
    settings = '  community "public"\n'
    if explicit:
        settings += "  receive_buffer %d\n" % explicit
    a = make_agent(tmp_path, stub, snmp_settings=settings)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, big)
        before = rcvbuf(s)
        assert before == 2 * big
        # no CAP_NET_ADMIN for the agent (nor after exec: not in the bounding set), as under the unit
        drop = () if explicit == 64 << 20 else ("setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin")
        start_with_passed_socket(a, s, drop)
        try:
            if drop:
                with open("/proc/%d/status" % a.proc.pid) as f:
                    eff = [int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:")][0]
                assert not eff & (1 << 12), "the agent still has CAP_NET_ADMIN"  # CAP_NET_ADMIN is 12
            t = a.traps()
            assert [l["from_systemd"] for l in t["listen"]] == [True], t
            want = 2 * explicit if explicit and explicit > big else before
            assert t["listen"][0]["receive_buffer"] == want, (t["listen"], before)
            assert rcvbuf(s) == want  # the socket itself, not only what the agent says
            subprocess.run(["snmptrap", "-v2c", "-c", "public", "127.0.0.1:%d" % s.getsockname()[1], "", LINK_DOWN]
                           + link_varbinds(52), check=True, env=SNMP_ENV, timeout=20)
            wait_case(stub, link_key(52))
        finally:
            a.stop()


def test_without_cap_net_admin_the_agent_takes_what_rmem_max_allows(stub, tmp_path):
    """Its own socket, no CAP_NET_ADMIN: the 8 MiB default is capped by
    net.core.rmem_max, never below the socket's starting size."""
    require_root("drops CAP_NET_ADMIN with setpriv")
    require_snmp_tools()
    require_tool("setpriv", "util-linux")
    with open("/proc/sys/net/core/rmem_max") as f:
        cap = int(f.read())
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n')
    a.logf = open(a.log_path, "ab")
    a.proc = subprocess.Popen(["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
                               os.path.join(BUILD, "weibao-agent"), "--config", a.conf],
                              stdout=a.logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        wait_until(lambda: os.path.exists(a.sock) or a.proc.poll() is not None, 10)
        assert a.proc.poll() is None, a.log()
        assert wait_until(lambda: a.traps().get("running"), 5), a.log()
        got = a.traps()["listen"][0]["receive_buffer"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            start = rcvbuf(s)
        assert got == max(start, 2 * min(cap, 8 << 20)), (got, cap, start)
    finally:
        a.stop()


ACME_MIB = """ACME-MIB DEFINITIONS ::= BEGIN
-- a tiny vendor MIB written by the test (enterprise 32473: documentation, RFC 5612)
IMPORTS OBJECT-TYPE, NOTIFICATION-TYPE, Integer32, enterprises FROM SNMPv2-SMI;
acme OBJECT IDENTIFIER ::= { enterprises 32473 }
acmeAlarms OBJECT IDENTIFIER ::= { acme 2 }
acmeNotifications OBJECT IDENTIFIER ::= { acmeAlarms 0 }
acmeObjects OBJECT IDENTIFIER ::= { acmeAlarms 1 }
acmeAlarmId OBJECT-TYPE
    SYNTAX Integer32
    MAX-ACCESS accessible-for-notify
    STATUS current
    DESCRIPTION "The alarm's identity."
    ::= { acmeObjects 1 }
acmeAlarmSeverity OBJECT-TYPE
    SYNTAX INTEGER { critical(1), major(2), minor(3), cleared(5) }
    MAX-ACCESS accessible-for-notify
    STATUS current
    DESCRIPTION "How bad it is."
    ::= { acmeObjects 2 }
acmeAlarmText OBJECT-TYPE
    SYNTAX OCTET STRING (SIZE(0..255))
    MAX-ACCESS accessible-for-notify
    STATUS current
    DESCRIPTION "What happened."
    ::= { acmeObjects 3 }
acmeAlarm NOTIFICATION-TYPE
    OBJECTS { acmeAlarmId, acmeAlarmSeverity, acmeAlarmText }
    STATUS current
    DESCRIPTION "An alarm was raised or cleared."
    ::= { acmeNotifications 1 }
END
"""

ACME_RULES = """rule acme-mib-major {
    when source == "snmptrap" and trap == "ACME-MIB::acmeAlarm" and varbind["ACME-MIB::acmeAlarmSeverity"] == "major"
    level P3
    key "acme-mib:{source_addr}:{varbind[ACME-MIB::acmeAlarmId]}"
    title "ACME {varbind[ACME-MIB::acmeAlarmSeverity]} alarm {varbind[ACME-MIB::acmeAlarmId]}: {varbind[ACME-MIB::acmeAlarmText]}"
}
"""


def test_vendor_mib_from_mib_dirs_names_trap_and_varbinds(stub, tmp_path):
    require_snmp_tools()
    os.makedirs(str(tmp_path), exist_ok=True)
    mibs = os.path.join(str(tmp_path), "vendor-mibs")
    os.makedirs(mibs)
    with open(os.path.join(mibs, "ACME-MIB.txt"), "w") as f:
        f.write(ACME_MIB)
    rules = os.path.join(str(tmp_path), "acme.rules")
    with open(rules, "w") as f:
        f.write(ACME_RULES)
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n  mib_dirs "%s"\n' % mibs, rules_glob=rules)
    a.start()
    try:
        a.trap(*v2c_args(), ["", "1.3.6.1.4.1.32473.2.0.1",
                             "1.3.6.1.4.1.32473.2.1.1.0", "i", "7",
                             "1.3.6.1.4.1.32473.2.1.2.0", "i", "2",
                             "1.3.6.1.4.1.32473.2.1.3.0", "s", "fan tray 2 degraded"])
        case = wait_case(stub, "acme-mib:127.0.0.1:7")
        rd = case["readings"]
        assert rd["trap"] == "ACME-MIB::acmeAlarm", rd
        assert rd["trap_oid"] == "1.3.6.1.4.1.32473.2.0.1", rd
        assert rd["varbind[ACME-MIB::acmeAlarmSeverity]"] == "major", rd  # an enum by its label
        assert rd["varbind[ACME-MIB::acmeAlarmId]"] == 7, rd
        assert rd["varbind[ACME-MIB::acmeAlarmText]"] == "fan tray 2 degraded", rd
        assert rd["varbind[1.3.6.1.4.1.32473.2.1.2.0]"] == 2, rd
        assert case["title"] == "ACME major alarm 7: fan tray 2 degraded", case["title"]
        assert case["level"] == "P3"
    finally:
        a.stop()


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_listen_on_ipv6_loopback(stub, tmp_path):
    require_snmp_tools()
    if not has_ipv6_loopback():
        msg = "no IPv6 on lo (::1 cannot be bound)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI=true: a skip is a failure)")
        pytest.skip(msg)
    a = make_agent(tmp_path, stub, snmp_settings='  community "public"\n')
    with open(a.conf) as f:
        text = f.read()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        port6 = s.getsockname()[1]
    with open(a.conf, "w") as f:
        f.write(text.replace('listen "udp:127.0.0.1:%d"' % a.port, 'listen "udp6:[::1]:%d"' % port6))
    a.start()
    try:
        t = a.traps()
        assert [l["address"] for l in t["listen"]] == ["udp6:[::1]:%d" % port6], t["listen"]
        r = subprocess.run(["snmptrap", "-v2c", "-c", "public", "udp6:[::1]:%d" % port6, "", LINK_DOWN]
                           + link_varbinds(91), capture_output=True, text=True, env=SNMP_ENV, timeout=20)
        assert r.returncode == 0, r.stderr
        case = wait_case(stub, link_key(91, "::1"))
        assert case["readings"]["source_addr"] == "::1", case["readings"]
        assert case["readings"]["trap"] == "IF-MIB::linkDown"
        t = a.traps()
        assert t["received"] == 1 and t["accepted"] == 1, t
    finally:
        a.stop()
