"""The Debian packages: `make deb` builds weibao-agent and weibao-stub with
dpkg-buildpackage; lintian finds no errors; the files, conffiles, units and
maintainer scripts are where an administrator expects them.

(Installing into a booted Debian root under systemd-nspawn is the next step
of this test.)"""

import glob
import os
import subprocess

import pytest

from conftest import BUILD, ROOT, require_tool


@pytest.fixture(scope="module")
def debs():
    require_tool("dpkg-buildpackage", "dpkg-dev")
    require_tool("dh", "debhelper")
    r = subprocess.run(["make", "--no-print-directory", "deb", "B=%s" % BUILD], cwd=ROOT, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    found = {os.path.basename(p).split("_")[0]: p for p in glob.glob(os.path.join(BUILD, "deb", "*.deb"))}
    assert set(found) >= {"weibao-agent", "weibao-stub"}, found
    return found


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
