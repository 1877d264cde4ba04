"""Transport security end to end: weibao-stub serving HTTPS (and mTLS) with
certificates made at test time by Debian's openssl command, and an agent
whose SNMP trap opens a case through it (or must not).

Everything is generated into tmp_path: a test CA, a server certificate
with SAN 127.0.0.1/localhost, one for another name only, an unrelated CA
and a client certificate. Only loopback traffic.
"""

import os
import subprocess

import pytest

from conftest import BUILD, StubProcess, require_tool, tls_context, http_request, wait_until
from test_snmptrap import LINK_DOWN, link_key, link_varbinds, make_agent, require_snmp_tools, v2c_args

TOKEN = "tls-secret-token-5f3a9c"


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "openssl %s: %s" % (" ".join(args), r.stderr)


class Pki:
    """The test certificates, as paths: ca, other_ca, server (cert, key),
    wrong_name (cert, key), client (cert, key)."""

    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.ca = self._ca("ca", "weibao test CA")
        self.other_ca = self._ca("other-ca", "unrelated CA")
        self.server = self._leaf("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth\n")
        self.wrong_name = self._leaf("wrong-name", "cases.example", "subjectAltName=DNS:cases.example\n"
                                     "extendedKeyUsage=serverAuth\n")
        self.client = self._leaf("client", "test-agent", "extendedKeyUsage=clientAuth\n")
        self.other_client = self._leaf("other-client", "stranger", "extendedKeyUsage=clientAuth\n",
                                       ca="other-ca")

    def path(self, name):
        return os.path.join(self.d, name)

    def _ca(self, name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.d)
        return self.path(name + ".pem")

    def _leaf(self, name, cn, ext, ca="ca"):
        with open(self.path(name + ".ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + ext)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=self.d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=self.d)
        os.chmod(self.path(name + ".key"), 0o600)
        return self.path(name + ".pem"), self.path(name + ".key")


@pytest.fixture
def pki(tmp_path):
    require_tool("openssl", "openssl")
    return Pki(str(tmp_path / "pki"))


def start_stub(tmp_path, pki, cert=None, client_ca=None, **kw):
    d = tmp_path / "stub"
    d.mkdir()
    s = StubProcess(d, token=TOKEN, tls=cert or pki.server, client_ca=client_ca, ca_file=pki.ca, **kw)
    if cert == pki.wrong_name:
        # Only the test's own look at the stub's cases skips the name check;
        # the agent's connection is what is under test.
        s.context.check_hostname = False
    s.start()
    return s


@pytest.fixture
def cleanup():
    things = []
    yield things
    codes = [(t, t.stop()) for t in reversed(things)]
    for t, code in codes:
        # a stub that does not stop cleanly (crash, sanitizer report) fails the test
        if isinstance(t, StubProcess) and code not in (0, None):
            pytest.fail("weibao-stub exited %s; stderr:\n%s" % (code, t.log[-3000:]))


def tls_agent(tmp_path, stub, central_extra, url=None):
    """A trap agent (test_snmptrap.TrapAgent) whose central block has
    central_extra, talking to url (default: the stub's)."""
    require_snmp_tools()
    a = make_agent(tmp_path / "agent", stub, snmp_settings='  community "public"\n')
    with open(a.conf) as f:
        text = f.read()
    text = text.replace('url "%s"' % stub.url, 'url "%s"' % (url or stub.url))
    text = text.replace("central {\n", "central {\n" + central_extra, 1)
    with open(a.conf, "w") as f:
        f.write(text)
    return a


def link_down(agent, ifindex):
    agent.trap(*v2c_args(), ["", LINK_DOWN] + link_varbinds(ifindex))


def assert_no_token_leak(agent):
    assert TOKEN not in agent.log()
    for cmd in (["status"], ["faults"], ["--json", "status"], ["--json", "faults"], ["snapshot"]):
        r = agent.ctl(*cmd)
        assert TOKEN not in r.stdout + r.stderr, cmd


def refused(agent, stub, ifindex, fragments):
    """A case the agent tried to open is refused and reported: the agent log
    and `weibaoctl faults` show the TLS error; nothing reached the stub."""
    link_down(agent, ifindex)
    assert wait_until(lambda: any(f in agent.log() for f in fragments), 15), agent.log()[-3000:]
    r = agent.ctl("faults")
    assert r.returncode == 0, r.stderr
    assert any(f in r.stdout for f in fragments), r.stdout
    assert stub.cases() == []
    assert "POST /api/v1/cases" not in stub.log, stub.log
    assert_no_token_leak(agent)


def test_stub_serves_https_and_checks_the_token(tmp_path, pki, cleanup):
    stub = start_stub(tmp_path, pki)
    cleanup.append(stub)
    assert stub.url.startswith("https://127.0.0.1:")
    assert stub.get("/api/v1/health").json == {"status": "ok"}
    assert stub.get("/api/v1/cases", auth=False).status == 401
    # A client trusting another CA refuses the stub's certificate.
    with pytest.raises(Exception) as e:
        http_request("GET", stub.url + "/api/v1/health", context=tls_context(pki.other_ca))
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
    # Plain HTTP to the TLS port gets no API answer.
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                        "http://127.0.0.1:%d/api/v1/health" % stub.port], capture_output=True, text=True)
    assert r.stdout != "200"


def test_case_delivered_over_https_with_ca_file(tmp_path, pki, cleanup):
    stub = start_stub(tmp_path, pki)
    cleanup.append(stub)
    a = tls_agent(tmp_path, stub, '  ca_file "%s"\n' % pki.ca)
    cleanup.append(a)
    a.start()
    link_down(a, 3)
    stub.wait_for(lambda: [c for c in stub.cases() if c["fault_key"] == link_key(3)], 15)
    assert len(stub.cases()) == 1
    assert_no_token_leak(a)


def test_wrong_ca_is_refused_and_reported(tmp_path, pki, cleanup):
    stub = start_stub(tmp_path, pki)
    cleanup.append(stub)
    a = tls_agent(tmp_path, stub, '  ca_file "%s"\n' % pki.other_ca)
    cleanup.append(a)
    a.start()
    refused(a, stub, 4, ["SSL certificate problem", "certificate verify failed"])


def test_wrong_host_name_is_refused_and_reported(tmp_path, pki, cleanup):
    # Signed by the trusted CA, but for cases.example only; the agent connects to 127.0.0.1.
    stub = start_stub(tmp_path, pki, cert=pki.wrong_name)
    cleanup.append(stub)
    a = tls_agent(tmp_path, stub, '  ca_file "%s"\n' % pki.ca)
    cleanup.append(a)
    a.start()
    refused(a, stub, 5, ["does not match target host name", "no alternative certificate subject name matches",
                         "certificate subject name"])


def test_mtls_refuses_agent_without_client_certificate(tmp_path, pki, cleanup):
    stub = start_stub(tmp_path, pki, client_ca=pki.ca, client_cert=pki.client[0], client_key=pki.client[1])
    cleanup.append(stub)
    # The test's own client with a certificate from another CA is refused too.
    r = http_request("GET", stub.url + "/api/v1/cases", headers={"Authorization": "Bearer " + TOKEN},
                     context=tls_context(pki.ca, *pki.other_client))
    assert r.status == 403 and "client certificate" in r.json["error"], r
    r = http_request("GET", stub.url + "/api/v1/cases", headers={"Authorization": "Bearer " + TOKEN},
                     context=tls_context(pki.ca))
    assert r.status == 403 and r.json["error"] == "client certificate required", r
    a = tls_agent(tmp_path, stub, '  ca_file "%s"\n' % pki.ca)
    cleanup.append(a)
    a.start()
    link_down(a, 6)
    assert wait_until(lambda: "client certificate required" in a.log(), 15), a.log()[-3000:]
    assert "client certificate required" in a.ctl("faults").stdout
    assert stub.cases() == []
    assert_no_token_leak(a)


def test_mtls_accepts_agent_with_client_certificate(tmp_path, pki, cleanup):
    stub = start_stub(tmp_path, pki, client_ca=pki.ca, client_cert=pki.client[0], client_key=pki.client[1])
    cleanup.append(stub)
    a = tls_agent(tmp_path, stub, '  ca_file "%s"\n  client_cert "%s"\n  client_key "%s"\n'
                  % (pki.ca, pki.client[0], pki.client[1]))
    cleanup.append(a)
    a.start()
    link_down(a, 7)
    stub.wait_for(lambda: [c for c in stub.cases() if c["fault_key"] == link_key(7)], 15)
    assert_no_token_leak(a)


def test_client_key_readable_by_others_refuses_to_start(tmp_path, pki, cleanup):
    stub = start_stub(tmp_path, pki)
    cleanup.append(stub)
    os.chmod(pki.client[1], 0o644)
    a = tls_agent(tmp_path, stub, '  ca_file "%s"\n  client_cert "%s"\n  client_key "%s"\n'
                  % (pki.ca, pki.client[0], pki.client[1]))
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--config", a.conf], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert "client key %s is accessible by group or others (mode 644)" % pki.client[1] in r.stderr, r.stderr


@pytest.mark.parametrize("url, ok", [
    ("http://192.0.2.1:8080", False),
    ("http://cases.example", False),
    ("http://127.0.0.2:8080", True),
    ("http://localhost:8080/", True),
    ("http://[::1]:8080", True),
    ("https://cases.example", True),
])
def test_plain_http_only_to_loopback(tmp_path, url, ok):
    token = tmp_path / "token"
    token.write_text("t\n")
    token.chmod(0o600)
    conf = tmp_path / "agent.conf"
    conf.write_text('agent {\n  rules "%s/*.rules"\n}\ncentral {\n  url "%s"\n  token_file "%s"\n}\n'
                    % (tmp_path, url, token))
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config", str(conf)],
                       capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
        assert "insecure_http no" in r.stdout
        return
    assert r.returncode == 2
    assert "%s:5:7: plain http:// to a host that is not loopback" % conf in r.stderr, r.stderr
    # insecure_http yes is the explicit way out.
    conf.write_text(conf.read_text().replace("central {\n", "central {\n  insecure_http yes\n"))
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--check", "--config", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "insecure_http yes" in r.stdout


def test_mtls_refusal_comes_before_injections(tmp_path, pki, cleanup):
    stub = start_stub(tmp_path, pki, client_ca=pki.ca, client_cert=pki.client[0], client_key=pki.client[1],
                      test_control=True)
    cleanup.append(stub)
    stub.inject(action="status", status=500)
    r = http_request("GET", stub.url + "/api/v1/cases", headers={"Authorization": "Bearer " + TOKEN},
                     context=tls_context(pki.ca))
    assert r.status == 403, r
    assert stub.injections()["injections"][0]["remaining"] == 1
    assert stub.get("/api/v1/cases").status == 500
    assert stub.injections()["applied"]["status"] == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_token_file_readable_by_others_refuses_to_start(tmp_path, pki, cleanup, mode):
    stub = start_stub(tmp_path, pki)
    cleanup.append(stub)
    token = tmp_path / "agent-token"
    token.write_text(TOKEN + "\n")
    token.chmod(mode)
    a = tls_agent(tmp_path, stub, '  ca_file "%s"\n' % pki.ca)
    with open(a.conf) as f:
        text = f.read()
    assert 'token_file "%s"' % stub.token_file in text
    with open(a.conf, "w") as f:
        f.write(text.replace('token_file "%s"' % stub.token_file, 'token_file "%s"' % token))
    r = subprocess.run([os.path.join(BUILD, "weibao-agent"), "--config", a.conf], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert "token file %s is accessible by group or others (mode %o); chmod 600 it" % (token, mode) in r.stderr, \
        r.stderr
    assert TOKEN not in r.stdout + r.stderr
    assert not os.path.exists(a.sock)  # it never came up
    # the same file at 0600 is accepted: the mode was the only thing wrong
    token.chmod(0o600)
    a.start()
    cleanup.append(a)
    link_down(a, 5)
    assert wait_until(lambda: stub.cases(), 15), a.log()[-3000:]
