"""weibao-sender, the agent's HTTP worker, spoken to directly over its
newline-delimited JSON protocol (agent/sender_worker.c) against a stub with
fault injection: what the agent's outbox gets to see of an answer.
"""

import json
import os
import subprocess

import pytest

from conftest import BUILD, StubProcess, _die_with_parent


@pytest.fixture
def tstub(tmp_path):
    s = StubProcess(tmp_path, test_control=True)
    s.start()
    yield s
    s.stop()
    s._kill()


def exchange(url, token, requests, timeout=20, **config):
    """Starts weibao-sender, configures it, sends the requests and returns
    its answers by id."""
    lines = [json.dumps({"type": "config", "base_url": url, "token": token, "timeout_ms": 5000, **config})]
    for i, (method, path, body) in enumerate(requests, 1):
        lines.append(json.dumps({"type": "request", "id": i, "method": method, "path": path,
                                 "body": json.dumps(body), "idempotency_key": "worker-%d" % i}))
    p = subprocess.Popen([os.path.join(BUILD, "weibao-sender")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
    try:
        p.stdin.write("\n".join(lines) + "\n")
        p.stdin.flush()
        answers = {}
        while len(answers) < len(requests):
            line = p.stdout.readline()
            assert line, "weibao-sender exited: %s" % p.stderr.read()
            a = json.loads(line)
            answers[a["id"]] = a
        return answers
    finally:
        p.stdin.close()
        p.wait(timeout)


def test_retry_after_reaches_the_agent_as_usec(tstub):
    tstub.inject(action="status", status=503, retry_after=2)
    tstub.inject(action="status", status=429, retry_after=86400)
    tstub.inject(action="status", status=500)
    a = exchange(tstub.url, tstub.token, [("POST", "/api/v1/cases", {})] * 3)
    got = sorted((x["status"], x.get("retry_after_usec", 0)) for x in a.values())
    assert got == [(429, 3600 * 1000000), (500, 0), (503, 2000000)], a
    assert tstub.injections()["applied"]["status"] == 3


def test_dropped_connection_is_a_transport_error(tstub):
    tstub.inject(action="drop", when="after")
    a = exchange(tstub.url, tstub.token, [("GET", "/api/v1/cases", {})])
    assert a[1]["status"] == 0 and "Empty reply" in a[1]["error"], a
