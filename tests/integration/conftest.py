"""Shared fixtures for weibao's integration tests.

Standard library only (plus Debian's python3-pytest); run with
``/usr/bin/python3 -m pytest tests/integration``.

Layout of this file, so more fixtures slot in easily:
  1. paths and small helpers (``ROOT``, ``BUILD``, ``binary()``,
     ``require_root()``, ``wait_until()``, ``http_request()``)
  2. ``StubProcess``: one running ``build/weibao-stub`` with helpers
  3. fixtures: ``stub`` (a fresh stub per test)
  (agent fixtures go after the stub ones and can take ``stub`` as argument:
   ``stub.url`` and ``stub.token`` are what an agent config needs.)

Every process a fixture starts is killed on every exit path: the fixture's
finaliser stops it, ``StubProcess`` also registers with ``atexit``, and the
child is started with PR_SET_PDEATHSIG so even a killed pytest takes it along.
Use ``_die_with_parent`` as preexec_fn for other long-running children too.
"""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

# ---- 1. paths and helpers --------------------------------------------------

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("WEIBAO_BUILD", os.path.join(ROOT, "build"))

LISTEN_RE = re.compile(r"^weibao-stub: listening on (https?://\S+:(\d+))$")


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL if pytest dies without cleaning up."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def binary(name):
    """Path of a built program; skips the test with a reason if missing,
    and under CI=true fails instead (CI builds everything first, so a missing
    program there means the build is broken, not that the test may skip)."""
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        msg = f"{path} not built (run: make {os.path.relpath(path, ROOT)})"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI=true: a skip is a failure)")
        pytest.skip(msg)
    return path


def require_root(reason="needs root for namespaces"):
    """Skips the test when not root; under CI=true that is a failure instead
    (CI runs as root, so a skip there means the test silently stopped running)."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a skip is a failure)")
    pytest.skip(reason)


def require_tool(name, package):
    """Skips the test when program name is not installed; under CI=true that
    is a failure instead (`make deps` installs package)."""
    if shutil.which(name):
        return
    msg = f"{name} missing (Debian package {package}; make deps installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " (CI=true: a skip is a failure)")
    pytest.skip(msg)


def wait_until(predicate, timeout=10, interval=0.05):
    """Polls predicate() until it returns something truthy or timeout seconds
    pass; returns its last value (falsy on timeout: the caller asserts, with
    its own message). ``StubProcess.wait_for`` is the failing variant."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Response:
    """An HTTP answer: ``.status``, ``.headers`` (dict, lower-case keys),
    ``.body`` (bytes) and ``.json`` (parsed body, or None if not JSON)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"Response({self.status}, {self.body[:200]!r})"


# Talks to local processes only: never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tls_context(ca_file, client_cert=None, client_key=None):
    """An ssl.SSLContext trusting ca_file only (certificate and host name
    verified), presenting client_cert/client_key when given."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


def http_request(method, url, body=None, headers=None, timeout=10, context=None):
    """One HTTP request; never raises on an HTTP error status.

    ``body`` may be bytes/str (sent as is) or anything else (sent as JSON).
    ``context`` is the ssl.SSLContext for https:// (see ``tls_context``).
    Returns a ``Response``.
    """
    headers = dict(headers or {})
    data = None
    if body is not None:
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = _OPENER
    if context is not None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as r:
            return Response(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read())


# ---- 2. the stub -----------------------------------------------------------


class StubProcess:
    """A ``weibao-stub`` on 127.0.0.1 with its own database and token file.

    Attributes: ``url`` ("http://127.0.0.1:PORT"), ``token``, ``db`` (path of
    the SQLite file), ``token_file``, ``port`` (None before the first start),
    ``proc`` (the Popen, None while stopped), ``stderr_lines`` (everything
    the stub logged so far, across restarts).

    ``start()`` uses port 0 the first time and the same port afterwards, so a
    restart keeps ``url`` valid (persistence tests). ``stop()`` sends SIGTERM
    and returns the exit code.

    TLS: ``tls=(cert, key)`` serves HTTPS (``url`` is then https://), with
    ``client_ca`` also requiring client certificates; ``ca_file`` (and
    ``client_cert``/``client_key``) are what the helpers below use to talk
    to it. ``test_control=True`` starts it with --test-control, for
    ``inject()``.
    """

    START_TIMEOUT = 10

    def __init__(self, tmpdir, token="test-token-0123456789", tls=None, client_ca=None, ca_file=None,
                 client_cert=None, client_key=None, test_control=False, host="127.0.0.1"):
        self.dir = str(tmpdir)
        self.db = os.path.join(self.dir, "stub.db")
        self.token = token
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(token + "\n")
        os.chmod(self.token_file, 0o600)
        self.port = None
        self.url = None
        self.proc = None
        self.stderr_lines = []
        self.tls = tls
        self.client_ca = client_ca
        self.test_control = test_control
        self.host = host
        self.context = tls_context(ca_file, client_cert, client_key) if ca_file else None
        self._stderr_thread = None
        atexit.register(self._kill)

    # -- lifetime --

    def start(self, extra_args=()):
        """Starts the stub and waits for its "listening" line."""
        assert self.proc is None, "stub already running"
        port = self.port if self.port is not None else 0
        args = [binary("weibao-stub"), "--listen", f"{self.host}:{port}",
                "--db", self.db, "--token-file", self.token_file, *extra_args]
        if self.tls:
            args += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        if self.client_ca:
            args += ["--tls-client-ca", self.client_ca]
        if self.test_control:
            args.append("--test-control")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, args=(self.proc,),
                                               daemon=True)
        self._stderr_thread.start()
        line = self._read_listening_line()
        m = LISTEN_RE.match(line.rstrip("\n"))
        if not m:
            self._kill()
            raise AssertionError(f"stub did not start: stdout {line!r}, "
                                 f"stderr {''.join(self.stderr_lines)!r}")
        self.url, self.port = m.group(1), int(m.group(2))
        return self

    def _read_listening_line(self):
        result = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(self.START_TIMEOUT)
        return result[0] if result else ""

    def _drain_stderr(self, proc):
        for line in proc.stderr:
            self.stderr_lines.append(line)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stops the stub with sig; returns its exit code (None if not running)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if self._stderr_thread:
            self._stderr_thread.join(2)
        proc.stdout.close()
        proc.stderr.close()
        return code

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def log(self):
        """Everything the stub wrote to stderr, as one string."""
        return "".join(self.stderr_lines)

    # -- HTTP helpers --

    def auth_headers(self, headers=None):
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(headers or {})
        return h

    def get(self, path, headers=None, auth=True):
        """GET path (e.g. "/api/v1/cases"), with the bearer token unless auth=False."""
        return http_request("GET", self.url + path,
                            headers=self.auth_headers(headers) if auth else headers, context=self.context)

    def post(self, path, json=None, headers=None, auth=True, data=None):
        """POST json (or raw data bytes/str) to path. Pass the Idempotency-Key in headers."""
        body = data if data is not None else json
        return http_request("POST", self.url + path, body=body,
                            headers=self.auth_headers(headers) if auth else headers, context=self.context)

    def request(self, method, path, body=None, headers=None, auth=True, timeout=10):
        return http_request(method, self.url + path, body=body,
                            headers=self.auth_headers(headers) if auth else headers, timeout=timeout,
                            context=self.context)

    # -- fault injection (needs test_control=True) --

    def inject(self, **kw):
        """Queues one injection (POST /api/v1/_test/inject, docs/api.md "Test
        control"), e.g. ``inject(action="status", status=503, count=3,
        retry_after=2)``; returns the queued entry, asserting 201."""
        r = self.request("POST", "/api/v1/_test/inject", body=kw)
        assert r.status == 201, r
        return r.json

    def injections(self):
        """``{"injections": [...still queued...], "applied": {action: n}}``."""
        r = self.get("/api/v1/_test/inject")
        assert r.status == 200, r
        return r.json

    def clear_injections(self):
        r = self.request("DELETE", "/api/v1/_test/inject")
        assert r.status == 200, r
        return r.json["cleared"]

    def cases(self, **filters):
        """The list of case objects (GET /api/v1/cases?filters); asserts 200."""
        query = urllib.parse.urlencode(filters)
        r = self.get("/api/v1/cases" + (f"?{query}" if query else ""))
        assert r.status == 200, r
        return r.json["cases"]

    def case(self, case_id):
        """One case object with its updates; asserts 200."""
        r = self.get(f"/api/v1/cases/{case_id}")
        assert r.status == 200, r
        return r.json

    def wait_for(self, predicate, timeout=10, interval=0.05):
        """Polls predicate() until it returns something truthy; returns that
        value, or fails the test after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {predicate}")
            time.sleep(interval)


class AgentProcess:
    """What every test's weibao-agent shares: its log, weibaoctl, and a stop
    that waits for it. Subclasses write the config and start it."""

    sock = None
    log_path = None
    proc = None
    logf = None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ctl(self, *args):
        return subprocess.run([os.path.join(BUILD, "weibaoctl"), "-s", self.sock, *args],
                              capture_output=True, text=True, timeout=10)

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s; returns the exit code (None if never started)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.logf:
            self.logf.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc


# ---- 3. fixtures -----------------------------------------------------------


@pytest.fixture
def stub(tmp_path):
    """A running stub with a fresh database and token file in tmp_path/stub.

    Stopped with SIGTERM at the end of the test; a non-zero exit fails it."""
    d = tmp_path / "stub"
    d.mkdir()
    s = StubProcess(d)
    code = None
    try:
        s.start()
        yield s
    finally:
        code = s.stop()
        s._kill()
    # A stub that does not stop cleanly (crash, sanitizer report) fails the test.
    if code not in (0, None):
        pytest.fail(f"weibao-stub exited {code} on SIGTERM; stderr:\n{s.log[-3000:]}")
    # Every request must give back the database statements it used.
    if "left in use" in s.log:
        pytest.fail(f"weibao-stub kept database statements in use; stderr:\n{s.log[-3000:]}")
