"""weibao-sender, the agent's HTTP worker, spoken to directly over its
newline-delimited JSON protocol (agent/sender_worker.c) against a stub with
fault injection: what the agent's outbox gets to see of an answer.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from conftest import BUILD, StubProcess, _die_with_parent, wait_until


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


def test_answers_queued_while_the_agent_does_not_read_are_all_delivered(tstub):
    """The agent talks to the worker over one socketpair dup'ed to its fd 0
    and fd 1 (agent/sender.c), so both share the file status flags: stdin's
    O_NONBLOCK makes stdout non-blocking too. An agent busy elsewhere (an
    fsync) lets answers pile up beyond the socket buffer; the worker must
    wait for room, not take EAGAIN for the agent having gone."""
    big = "x" * 16000
    for i in range(14):  # GET /api/v1/cases then answers about 230 KB
        body = {"agent": {"id": "a", "hostname": "h"}, "fault_key": "k%d" % i, "level": "P4", "rule": "r",
                "title": "t", "description": big, "first_seen": "2026-11-25T10:00:00Z", "occurrences": 1}
        assert tstub.post("/api/v1/cases", json=body, headers={"Idempotency-Key": "big-%d" % i}).status == 201
    n = 12
    ours, theirs = socket.socketpair()
    p = subprocess.Popen([os.path.join(BUILD, "weibao-sender")], stdin=theirs.fileno(), stdout=theirs.fileno(),
                         stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
    theirs.close()
    try:
        lines = [json.dumps({"type": "config", "base_url": tstub.url, "token": tstub.token, "timeout_ms": 5000})]
        lines += [json.dumps({"type": "request", "id": i, "method": "GET", "path": "/api/v1/cases", "body": ""})
                  for i in range(1, n + 1)]
        ours.sendall(("\n".join(lines) + "\n").encode())
        # not reading: every answer is done and waiting (or the worker gave up) before we look
        assert wait_until(lambda: tstub.log.count("GET /api/v1/cases 200") >= n, 20), tstub.log[-2000:]
        time.sleep(1)
        assert p.poll() is None, "weibao-sender exited with answers pending: %s" % p.stderr.read()
        got, buf = {}, b""
        ours.settimeout(20)
        while len(got) < n:
            chunk = ours.recv(1 << 20)
            assert chunk, "weibao-sender closed the socket after %d answers: %s" % (len(got), p.stderr.read())
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                a = json.loads(line)
                got[a["id"]] = a
        assert sorted(got) == list(range(1, n + 1))
        for a in got.values():
            assert a["status"] == 200, a.get("error")
            assert len(json.loads(a["body"])["cases"]) == 14
        assert len(line) > 200000  # the answers were really larger than one socket buffer
        assert p.poll() is None
    finally:
        ours.close()
        p.wait(20)
