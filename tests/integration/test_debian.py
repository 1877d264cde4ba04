"""The Debian packages: `make deb` builds weibao-agent and weibao-stub with
dpkg-buildpackage; lintian finds no errors; the files, conffiles, units and
maintainer scripts are where an administrator expects them; `make install`
puts files under PREFIX and the units name them; the shipped agent.conf
passes --check. Installing into a booted Debian root is test_nspawn.py's."""

import fcntl
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT, binary, require_tool


DEB_DIR = os.path.join(BUILD, "deb")
_built = {}


def sources():
    """The files `make deb` copies into the package's tree."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return [os.path.join(ROOT, p) for p in out.split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]


def built_debs():
    """{package: path of its .deb} built from the tree as it is now: `make
    deb` runs again when a package is missing or any source is newer than
    the oldest .deb, so a test never installs the code of an earlier run.
    Built at most once per session (test_nspawn shares it) and under an
    flock, so two runs on one build directory do not clobber each other.
    Also returns, under "newest_source", the mtime that decided it."""
    if _built:
        return _built
    os.makedirs(BUILD, exist_ok=True)
    with open(os.path.join(BUILD, ".deb.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        newest = max(os.stat(p).st_mtime for p in sources())
        debs = glob.glob(os.path.join(DEB_DIR, "weibao-*_*.deb"))
        found = {os.path.basename(p).split("_")[0]: p for p in debs}
        if not {"weibao-agent", "weibao-stub"} <= set(found) or min(os.stat(p).st_mtime for p in debs) < newest:
            r = subprocess.run(["make", "--no-print-directory", "deb", "B=%s" % BUILD], cwd=ROOT,
                               capture_output=True, text=True, timeout=1800)
            assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
            found = {os.path.basename(p).split("_")[0]: p for p in glob.glob(os.path.join(DEB_DIR, "*.deb"))}
    assert set(found) >= {"weibao-agent", "weibao-stub"}, found
    _built.update(found, newest_source=newest)
    return _built


@pytest.fixture(scope="module")
def debs():
    require_tool("dpkg-buildpackage", "dpkg-dev")
    require_tool("dh", "debhelper")
    return built_debs()


def test_packages_are_not_older_than_the_tree(debs):
    """What the tests install is the code of this tree, not of an earlier run."""
    for name in ("weibao-agent", "weibao-stub"):
        assert os.stat(debs[name]).st_mtime >= debs["newest_source"], (name, debs)


def contents(deb):
    out = subprocess.run(["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].lstrip(".") for line in out.splitlines() if line.split()}


def control_file(deb, name):
    r = subprocess.run(["dpkg-deb", "--info", deb, name], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def test_agent_package_files(debs):
    files = contents(debs["weibao-agent"])
    for path in ("/usr/sbin/weibao-agent", "/usr/sbin/weibaoctl", "/usr/libexec/weibao/weibao-sender",
                 "/usr/libexec/weibao/weibao-snmp.so", "/etc/weibao/agent.conf",
                 "/etc/weibao/rules.d/10-temperature.rules", "/etc/weibao/rules.d/20-snmp.rules",
                 "/lib/systemd/system/weibao-agent.service", "/lib/systemd/system/weibao-agent.socket",
                 "/usr/share/weibao/mibs/IF-MIB.txt", "/usr/share/man/man8/weibao-agent.8.gz",
                 "/usr/share/man/man8/weibaoctl.8.gz", "/usr/share/man/man5/weibao.conf.5.gz",
                 "/usr/share/man/man5/weibao.rules.5.gz"):
        assert path in files, (path, sorted(files))
    assert not any(p.startswith("/usr/sbin/weibao-stub") for p in files)


def test_stub_package_files(debs):
    files = contents(debs["weibao-stub"])
    for path in ("/usr/sbin/weibao-stub", "/lib/systemd/system/weibao-stub.service",
                 "/usr/share/man/man8/weibao-stub.8.gz"):
        assert path in files, (path, sorted(files))


def test_config_files_are_conffiles(debs):
    conffiles = control_file(debs["weibao-agent"], "conffiles").split()
    assert "/etc/weibao/agent.conf" in conffiles, conffiles
    assert "/etc/weibao/rules.d/20-snmp.rules" in conffiles, conffiles


def test_maintainer_scripts(debs):
    postinst = control_file(debs["weibao-agent"], "postinst")
    assert "adduser --system" in postinst and "weibao" in postinst, postinst
    assert "deb-systemd-helper" in postinst and "weibao-agent.socket" in postinst, postinst
    postrm = control_file(debs["weibao-agent"], "postrm")
    assert "purge" in postrm and "rm -rf /var/lib/weibao" in postrm, postrm


def test_installed_agent_finds_its_module_and_mibs(debs, tmp_path):
    """The packaged binary was built for Debian's paths, not the build tree's."""
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", debs["weibao-agent"], str(root)], check=True)
    strings = subprocess.run(["strings", str(root / "usr/sbin/weibao-agent")], capture_output=True, text=True).stdout
    assert "/usr/libexec/weibao" in strings
    assert "/usr/share/weibao/mibs" in strings


def test_lintian_finds_no_errors(debs):
    require_tool("lintian", "lintian")
    r = subprocess.run(["lintian", "--no-tag-display-limit", debs["weibao-agent"], debs["weibao-stub"]],
                       capture_output=True, text=True, timeout=600)
    errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
    assert not errors, r.stdout
    # lintian also exits non-zero when it could not check at all
    assert r.returncode == 0, r.stdout + r.stderr


def test_stub_package_makes_its_token_and_purge_removes_its_state(debs):
    postinst = control_file(debs["weibao-stub"], "postinst")
    assert "/etc/weibao/stub-token" in postinst and "umask 077" in postinst, postinst
    postrm = control_file(debs["weibao-stub"], "postrm")
    assert "purge" in postrm and "rm -rf /var/lib/private/weibao-stub" in postrm, postrm
    root = subprocess.run(["dpkg-deb", "--fsys-tarfile", debs["weibao-stub"]], capture_output=True, check=True)
    unit = subprocess.run(["tar", "-xO", "./lib/systemd/system/weibao-stub.service"], input=root.stdout,
                          capture_output=True, check=True).stdout.decode()
    assert "LoadCredential=token:/etc/weibao/stub-token" in unit, unit
    assert "--token-file ${CREDENTIALS_DIRECTORY}/token" in unit, unit


def units_of(root):
    out = {}
    for path in glob.glob(os.path.join(root, "lib/systemd/system/weibao-*")):
        with open(path) as f:
            out[os.path.basename(path)] = f.read()
    return out


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local"])
def test_make_install_layout_and_units_name_installed_files(prefix, tmp_path):
    """make install DESTDIR=... PREFIX=...: programs under PREFIX, the
    configuration under /etc, and units whose ExecStart=/ExecReload= name
    the programs this install put there."""
    binary("weibao-agent")
    dest = str(tmp_path / "dest")
    r = subprocess.run(["make", "--no-print-directory", "install", "B=%s" % BUILD, "DESTDIR=" + dest,
                        "PREFIX=" + prefix], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for rel in ("sbin/weibao-agent", "sbin/weibaoctl", "sbin/weibao-stub", "libexec/weibao/weibao-sender"):
        assert os.access(dest + prefix + "/" + rel, os.X_OK), rel
    # the installed agent looks for its worker and MIBs where this install
    # put them, even when the build tree was built for another PREFIX before
    with open(dest + prefix + "/sbin/weibao-agent", "rb") as f:
        agent = f.read()
    for path in (prefix + "/libexec/weibao/weibao-sender", prefix + "/share/weibao/mibs"):
        assert path.encode() + b"\0" in agent, path
    for rel in (prefix + "/libexec/weibao/weibao-snmp.so", prefix + "/share/weibao/mibs/IF-MIB.txt",
                prefix + "/share/man/man8/weibao-agent.8", prefix + "/share/man/man8/weibaoctl.8",
                prefix + "/share/man/man8/weibao-stub.8", prefix + "/share/man/man5/weibao.conf.5",
                prefix + "/share/man/man5/weibao.rules.5", "/etc/weibao/agent.conf",
                "/etc/weibao/rules.d/20-snmp.rules"):
        assert os.path.isfile(dest + rel), rel
    units = units_of(dest)
    assert set(units) == {"weibao-agent.service", "weibao-agent.socket", "weibao-stub.service"}, units
    commands = []
    for name, text in units.items():
        for m in re.finditer(r"^(ExecStart|ExecReload)=(\S+)", text, re.M):
            commands.append((name, m.group(1), m.group(2)))
        for m in re.finditer(r"--config (\S+)|LoadCredential=\w+:(\S+)", text):
            conf = m.group(1) or m.group(2)
            assert conf.startswith("/etc/weibao/"), (name, conf)
    assert {(n, k) for n, k, _ in commands} == {("weibao-agent.service", "ExecStart"),
                                                ("weibao-agent.service", "ExecReload"),
                                                ("weibao-stub.service", "ExecStart")}, commands
    for name, key, path in commands:
        assert path.startswith(prefix + "/sbin/") and os.access(dest + path, os.X_OK), (name, key, path)
    assert "ExecReload=%s/sbin/weibaoctl reload" % prefix in units["weibao-agent.service"]


def test_make_install_fails_when_a_man_page_cannot_be_installed(tmp_path):
    binary("weibao-agent")
    dest = str(tmp_path / "dest")
    # the default PREFIX, so the shared build tree is not rebuilt for another
    os.makedirs(dest + "/usr/local/share/man/man8/weibaoctl.8")  # a directory where the page should go
    r = subprocess.run(["make", "--no-print-directory", "install", "B=%s" % BUILD, "DESTDIR=" + dest],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "weibaoctl.8" in r.stderr, r.stderr


def test_shipped_agent_conf_passes_check(tmp_path):
    """packaging/agent.conf, as the package installs it, is a valid
    configuration: --check with its /etc/weibao paths moved into tmp_path and
    the files the postinst makes there."""
    agent = binary("weibao-agent")
    etc = tmp_path / "etc"
    (etc / "rules.d").mkdir(parents=True)
    for f in glob.glob(os.path.join(ROOT, "rules", "default", "*.rules")):
        shutil.copy(f, etc / "rules.d")
    (etc / "snmp-users").write_text("# SNMPv3 users, one createUser line each (weibao.conf(5))\n")
    (etc / "token").write_text("replace-me-with-the-central-api-token\n")
    for secret in ("snmp-users", "token"):
        os.chmod(etc / secret, 0o600)  # as the postinst leaves them
    with open(os.path.join(ROOT, "packaging", "agent.conf")) as f:
        text = f.read()
    assert text.count("/etc/weibao/") >= 3, text
    conf = etc / "agent.conf"
    conf.write_text(text.replace("/etc/weibao/", str(etc) + "/"))
    r = subprocess.run([agent, "--check", "--config", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cases.example.invalid" in r.stdout and "snmp-users" in r.stdout, r.stdout


def test_missing_binary_fails_under_ci(tmp_path):
    """conftest.binary(): a program that is not built skips the test, except
    under CI=true, where a skip would hide that the test stopped running."""
    (tmp_path / "test_probe.py").write_text("from conftest import binary\n\n\n"
                                            "def test_probe():\n    binary('weibao-no-such-program')\n")
    shutil.copy(os.path.join(ROOT, "tests", "integration", "conftest.py"), tmp_path)
    outcome = {}
    for ci in ("true", ""):
        env = dict(os.environ, CI=ci, WEIBAO_BUILD=str(tmp_path))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=120, env=env)
        outcome[ci] = (r.returncode, r.stdout)
    assert outcome["true"][0] == 1 and "1 failed" in outcome["true"][1], outcome
    assert "CI=true: a skip is a failure" in outcome["true"][1], outcome
    assert outcome[""][0] == 0 and "1 skipped" in outcome[""][1], outcome
