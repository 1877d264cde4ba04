"""collectors/mibs: weibao's subset MIB modules, loaded by net-snmp's parser.

Each test runs the real ``snmptranslate`` (Debian package snmp) with
``-M <repo>/collectors/mibs:/usr/share/snmp/mibs -m ALL`` and asserts what it
prints: trap OIDs turned into names, names turned into OIDs, enumerations,
and an empty stderr (net-snmp reports every missing module, missing import
and unlinked OID there). The environment is cleaned so that no snmp.conf,
MIBS or MIBDIRS of the machine changes what gets loaded.
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

OURS = os.path.join(ROOT, "collectors", "mibs")
DEBIAN = "/usr/share/snmp/mibs"
MIBDIRS = f"{OURS}:{DEBIAN}"

OUR_MODULES = sorted(f[:-4] for f in os.listdir(OURS) if f.endswith(".txt"))
DEBIAN_MODULES = sorted(f[:-4] for f in os.listdir(DEBIAN) if f.endswith(".txt")) \
    if os.path.isdir(DEBIAN) else []


@pytest.fixture(scope="module")
def snmptranslate():
    path = shutil.which("snmptranslate")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("snmptranslate not installed (CI=true: a skip is a failure)")
        pytest.skip("snmptranslate not installed (apt-get install snmp)")
    return path


@pytest.fixture(scope="module")
def run(snmptranslate, tmp_path_factory):
    """run(*args, mibdirs=MIBDIRS, mibs="ALL") -> CompletedProcess (text)."""
    conf = tmp_path_factory.mktemp("snmpconf")  # no snmp.conf in it
    env = {k: v for k, v in os.environ.items() if k not in ("MIBS", "MIBDIRS", "MIBFILES")}
    env["SNMPCONFPATH"] = str(conf)
    env["SNMP_PERSISTENT_DIR"] = str(conf)

    def _run(*args, mibdirs=MIBDIRS, mibs="ALL"):
        return subprocess.run([snmptranslate, "-M", mibdirs, "-m", mibs, *args],
                              capture_output=True, text=True, env=env, timeout=30)

    # The first run creates the persistent directory's cert_indexes and says
    # so on stderr; get that out of the way.
    _run(".1", mibdirs=str(conf), mibs="")
    return _run


def ok(proc):
    """stdout of a run that must have succeeded silently."""
    assert proc.returncode == 0, proc
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def syntax_line(detail):
    lines = [ln for ln in detail.splitlines() if ln.strip().startswith("SYNTAX")]
    assert len(lines) == 1, detail
    return lines[0].split(None, 1)[1].strip()


# ---- names of traps and varbinds -------------------------------------------


@pytest.mark.parametrize("oid,name", [
    (".1.3.6.1.6.3.1.1.5.1", "SNMPv2-MIB::coldStart"),
    (".1.3.6.1.6.3.1.1.5.2", "SNMPv2-MIB::warmStart"),
    (".1.3.6.1.6.3.1.1.5.3", "IF-MIB::linkDown"),
    (".1.3.6.1.6.3.1.1.5.4", "IF-MIB::linkUp"),
    (".1.3.6.1.6.3.1.1.5.5", "SNMPv2-MIB::authenticationFailure"),
    (".1.3.6.1.6.3.1.1.5", "SNMPv2-MIB::snmpTraps"),
    (".1.3.6.1.6.3.1.1.4", "SNMPv2-MIB::snmpTrap"),
    (".1.3.6.1.6.3.1.1.4.1.0", "SNMPv2-MIB::snmpTrapOID.0"),
    (".1.3.6.1.6.3.1.1.4.3.0", "SNMPv2-MIB::snmpTrapEnterprise.0"),
    (".1.3.6.1.6.3.18.1.3.0", "SNMP-COMMUNITY-MIB::snmpTrapAddress.0"),
    (".1.3.6.1.6.3.18.1.4.0", "SNMP-COMMUNITY-MIB::snmpTrapCommunity.0"),
    (".1.3.6.1.2.1.1.3.0", "SNMPv2-MIB::sysUpTime.0"),
    (".1.3.6.1.2.1.2.2.1.1.3", "IF-MIB::ifIndex.3"),
    (".1.3.6.1.2.1.31.1.1.1.1.3", "IF-MIB::ifName.3"),
    (".1.3.6.1.4.1.2021.251.1", "UCD-SNMP-MIB::ucdStart"),
    (".1.3.6.1.4.1.8072.4.0.1", "NET-SNMP-AGENT-MIB::nsNotifyStart"),
])
def test_oid_to_name(run, oid, name):
    assert ok(run(oid)).strip() == name


@pytest.mark.parametrize("name,oid", [
    ("SNMPv2-MIB::sysDescr", ".1.3.6.1.2.1.1.1"),
    ("SNMPv2-MIB::sysObjectID", ".1.3.6.1.2.1.1.2"),
    ("SNMPv2-MIB::sysUpTime", ".1.3.6.1.2.1.1.3"),
    ("SNMPv2-MIB::sysContact", ".1.3.6.1.2.1.1.4"),
    ("SNMPv2-MIB::sysName", ".1.3.6.1.2.1.1.5"),
    ("SNMPv2-MIB::sysLocation", ".1.3.6.1.2.1.1.6"),
    ("SNMPv2-MIB::snmpTrapOID", ".1.3.6.1.6.3.1.1.4.1"),
    ("SNMPv2-MIB::snmpTrapEnterprise", ".1.3.6.1.6.3.1.1.4.3"),
    ("SNMPv2-MIB::coldStart", ".1.3.6.1.6.3.1.1.5.1"),
    ("SNMPv2-MIB::warmStart", ".1.3.6.1.6.3.1.1.5.2"),
    ("SNMPv2-MIB::authenticationFailure", ".1.3.6.1.6.3.1.1.5.5"),
    ("IF-MIB::ifNumber", ".1.3.6.1.2.1.2.1"),
    ("IF-MIB::ifIndex", ".1.3.6.1.2.1.2.2.1.1"),
    ("IF-MIB::ifDescr", ".1.3.6.1.2.1.2.2.1.2"),
    ("IF-MIB::ifType", ".1.3.6.1.2.1.2.2.1.3"),
    ("IF-MIB::ifMtu", ".1.3.6.1.2.1.2.2.1.4"),
    ("IF-MIB::ifSpeed", ".1.3.6.1.2.1.2.2.1.5"),
    ("IF-MIB::ifPhysAddress", ".1.3.6.1.2.1.2.2.1.6"),
    ("IF-MIB::ifAdminStatus", ".1.3.6.1.2.1.2.2.1.7"),
    ("IF-MIB::ifOperStatus", ".1.3.6.1.2.1.2.2.1.8"),
    ("IF-MIB::ifLastChange", ".1.3.6.1.2.1.2.2.1.9"),
    ("IF-MIB::ifName", ".1.3.6.1.2.1.31.1.1.1.1"),
    ("IF-MIB::ifHighSpeed", ".1.3.6.1.2.1.31.1.1.1.15"),
    ("IF-MIB::ifAlias", ".1.3.6.1.2.1.31.1.1.1.18"),
    ("IF-MIB::linkDown", ".1.3.6.1.6.3.1.1.5.3"),
    ("IF-MIB::linkUp", ".1.3.6.1.6.3.1.1.5.4"),
    ("SNMP-COMMUNITY-MIB::snmpTrapAddress", ".1.3.6.1.6.3.18.1.3"),
    ("SNMP-COMMUNITY-MIB::snmpTrapCommunity", ".1.3.6.1.6.3.18.1.4"),
    ("SNMP-VIEW-BASED-ACM-MIB::vacmGroupName", ".1.3.6.1.6.3.16.1.2.1.3"),
    ("SNMP-VIEW-BASED-ACM-MIB::vacmAccessSecurityLevel", ".1.3.6.1.6.3.16.1.4.1.3"),
    ("NET-SNMP-MIB::netSnmp", ".1.3.6.1.4.1.8072"),
])
def test_name_to_oid(run, name, oid):
    assert ok(run("-On", name)).strip() == oid


# ---- syntaxes --------------------------------------------------------------


@pytest.mark.parametrize("name,syntax", [
    ("IF-MIB::ifOperStatus", "INTEGER {up(1), down(2), testing(3), unknown(4), dormant(5), "
                             "notPresent(6), lowerLayerDown(7)}"),
    ("IF-MIB::ifAdminStatus", "INTEGER {up(1), down(2), testing(3)}"),
    ("IF-MIB::ifIndex", "Integer32 (1..2147483647)"),
    ("IF-MIB::ifSpeed", "Gauge32"),
    ("SNMPv2-MIB::sysUpTime", "TimeTicks"),
    ("SNMP-COMMUNITY-MIB::snmpTrapAddress", "IpAddress"),
    # textual conventions of our base modules, used by Debian's modules
    ("NET-SNMP-EXAMPLES-MIB::netSnmpHostAddressType",
     "INTEGER {unknown(0), ipv4(1), ipv6(2), ipv4z(3), ipv6z(4), dns(16)}"),
    ("NET-SNMP-EXAMPLES-MIB::netSnmpHostStorage",
     "INTEGER {other(1), volatile(2), nonVolatile(3), permanent(4), readOnly(5)}"),
    ("NET-SNMP-EXAMPLES-MIB::netSnmpHostRowStatus",
     "INTEGER {active(1), notInService(2), notReady(3), createAndGo(4), createAndWait(5), "
     "destroy(6)}"),
    ("NET-SNMP-AGENT-MIB::nsCacheEnabled", "INTEGER {true(1), false(2)}"),
    ("UCD-SNMP-MIB::memTotalSwapX", "Counter64"),
])
def test_syntax(run, name, syntax):
    assert syntax_line(ok(run("-Td", name))) == syntax


@pytest.mark.parametrize("name,hint", [
    ("IF-MIB::ifDescr", "255a"),
    ("IF-MIB::ifPhysAddress", "1x:"),
    ("IF-MIB::ifIndex", "d"),
    ("NET-SNMP-AGENT-MIB::nsmContextName", "255t"),
])
def test_display_hint(run, name, hint):
    assert f'DISPLAY-HINT\t"{hint}"' in ok(run("-Td", name))


@pytest.mark.parametrize("name", ["IF-MIB::linkDown", "IF-MIB::linkUp"])
def test_link_notifications_carry_interface_objects(run, name):
    detail = ok(run("-Td", name))
    assert "NOTIFICATION-TYPE" in detail
    assert "OBJECTS\t{ ifIndex, ifAdminStatus, ifOperStatus }" in detail


def test_if_x_entry_augments_if_entry(run):
    assert "AUGMENTS\t{ ifEntry }" in ok(run("-Td", "IF-MIB::ifXEntry"))


# ---- a clean load ----------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["-Pw"], ["-Pe"], ["-Pc"], ["-Pu"], ["-PR"]],
                         ids=lambda f: " ".join(f) or "default")
def test_all_modules_load_without_a_message(run, flags):
    tree = ok(run(*flags, "-Tp"))
    assert "+--linkDown(3)" in tree and "+--ucdTraps(251)" in tree


def test_detailed_warnings_are_only_about_table_entries(run):
    # At -PW net-snmp warns about the SYNTAX of every conceptual row (its
    # SEQUENCE type is not a textual convention): Debian's own tables and
    # ours alike. Nothing else may appear.
    proc = run("-PW", "-Tp")
    assert proc.returncode == 0
    entry = re.compile(r"^Warning: No known translation for type \((\w+Entry)\): "
                       r"At line \d+ in (\S+)$")
    lines = proc.stderr.splitlines()
    assert lines, "net-snmp stopped warning at -PW; update this test"
    bad = [ln for ln in lines if not entry.match(ln)]
    assert bad == []
    ours = {m.group(1) for m in map(entry.match, lines) if m.group(2).startswith(OURS)}
    assert ours == {"IfEntry", "IfXEntry", "VacmSecurityToGroupEntry", "VacmAccessEntry"}


@pytest.mark.parametrize("module", DEBIAN_MODULES)
@pytest.mark.parametrize("flags", [[], ["-Pw"]], ids=lambda f: " ".join(f) or "default")
def test_each_debian_module_loads_alone(run, module, flags):
    out = ok(run(*flags, "-Tp", mibs=module))
    assert "+--enterprises(1)" in out


@pytest.mark.parametrize("module", OUR_MODULES)
def test_each_of_our_modules_loads_alone(run, module):
    ok(run("-Pw", "-Tp", mibdirs=OURS, mibs=module))
    with open(os.path.join(OURS, module + ".txt")) as f:
        text = f.read()
    assert re.search(rf"^{re.escape(module)} DEFINITIONS ::= BEGIN$", text, re.M), \
        f"{module}.txt must define module {module}"
    assert text.startswith(f"-- {module}: a ") and "written for weibao" in text.split("\n")[0]


def test_our_modules_cover_debian_imports():
    wanted = set()
    for module in DEBIAN_MODULES:
        with open(os.path.join(DEBIAN, module + ".txt"), errors="replace") as f:
            text = f.read()
        m = re.search(r"\bIMPORTS\b(.*?);", text, re.S)
        if m:
            body = re.sub(r"--[^\n]*", "", m.group(1))
            wanted.update(re.findall(r"\bFROM\s+([A-Za-z][\w-]*)", body))
    missing = wanted - set(DEBIAN_MODULES) - set(OUR_MODULES)
    assert not missing


# ---- directory order -------------------------------------------------------


def test_loads_last_after_an_empty_directory(run, tmp_path):
    # The agent's order: a (possibly empty) local directory, Debian's, ours.
    empty = tmp_path / "empty"
    empty.mkdir()
    dirs = f"{empty}:{DEBIAN}:{OURS}"
    out = ok(run(".1.3.6.1.6.3.1.1.5.3", ".1.3.6.1.4.1.2021.251.1", mibdirs=dirs))
    assert out.split() == ["IF-MIB::linkDown", "UCD-SNMP-MIB::ucdStart"]
    assert ok(run("-On", "IF-MIB::ifOperStatus", mibdirs=dirs)).strip() == ".1.3.6.1.2.1.2.2.1.8"
    out = ok(run(".1.3.6.1.6.3.1.1.5.4", mibdirs=f"{empty}:{OURS}"))
    assert out.strip() == "IF-MIB::linkUp"


@pytest.mark.parametrize("full_last", [True, False], ids=["full-after-ours", "full-before-ours"])
def test_the_copy_in_the_last_directory_wins(run, tmp_path, full_last):
    # What the headers of collectors/mibs promise: a full module replaces
    # our subset when its directory comes after ours (net-snmp keeps the
    # copy it found last).
    full = tmp_path / "full"
    full.mkdir()
    with open(os.path.join(OURS, "IF-MIB.txt")) as f:
        text = f.read()
    marker = "Stand-in for the complete module"
    old = '"The state the interface is actually in; up means it can pass\n        packets."'
    assert old in text
    (full / "IF-MIB.txt").write_text(text.replace(old, f'"{marker}."'))
    dirs = f"{OURS}:{full}:{DEBIAN}" if full_last else f"{full}:{OURS}:{DEBIAN}"
    detail = ok(run("-Td", "IF-MIB::ifOperStatus", mibdirs=dirs))
    assert (marker in detail) == full_last


def test_without_our_directory_traps_stay_numeric(run):
    if os.path.exists(os.path.join(DEBIAN, "SNMPv2-SMI.txt")):
        pytest.skip(f"{DEBIAN} has the IETF modules itself")
    proc = run(".1.3.6.1.6.3.1.1.5.3", mibdirs=DEBIAN)
    assert "Cannot find module (SNMPv2-SMI)" in proc.stderr
    assert "linkDown" not in proc.stdout
