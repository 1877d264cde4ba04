"""weibao-stub: the central ticket API contract (docs/api.md), end to end.

Each test talks HTTP to a real build/weibao-stub and asserts what a client
sees: status codes, JSON bodies, the case list, exit codes and log lines.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import StubProcess, binary, http_request

CASES = "/api/v1/cases"


def case_body(**over):
    body = {
        "agent": {"id": "agent-1", "hostname": "db01", "machine_id": "0123abcd", "os": "Debian 12",
                  "kernel": "6.1.0-18-amd64", "version": "0.1.0"},
        "fault_key": "coretemp-isa-0000/Package id 0",
        "level": "P3",
        "rule": "temperature-critical",
        "title": "Temperature alarm: Package id 0 at 97°C (critical 95°C)",
        "description": "sensor over its critical threshold for 10 s",
        "first_seen": "2026-11-25T10:00:00.123Z",
        "last_seen": "2026-11-25T10:00:10Z",
        "occurrences": 3,
        "readings": {"value": 97.0, "crit": 95.0, "unit": "C"},
        "evidence": [{"source": "sensor", "name": "temperature", "value": 97.0}],
    }
    body.update(over)
    return body


def create(stub, key, body=None):
    return stub.post(CASES, body if body is not None else case_body(), {"Idempotency-Key": key})


def update(stub, case_id, key, body):
    return stub.post(f"{CASES}/{case_id}/updates", body, {"Idempotency-Key": key})


def assert_error(r, status, *fragments):
    assert r.status == status, r
    assert r.headers.get("content-type") == "application/json"
    assert isinstance(r.json, dict) and isinstance(r.json.get("error"), str), r
    for f in fragments:
        assert f in r.json["error"], (f, r.json["error"])


# ---- health and auth -------------------------------------------------------


def test_health_needs_no_auth(stub):
    r = stub.get("/api/v1/health", auth=False)
    assert r.status == 200
    assert r.json == {"status": "ok"}
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("headers", [
    None,
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": "Bearer test-token-012345678"},  # a prefix of the real one
    {"Authorization": "Bearer test-token-0123456789x"},  # the real one plus a byte
    {"Authorization": "Basic dGVzdDp0ZXN0"},
    {"Authorization": "test-token-0123456789"},
])
def test_bad_or_missing_token_is_401(stub, headers):
    for r in (http_request("GET", stub.url + CASES, headers=headers),
              http_request("POST", stub.url + CASES, body=case_body(),
                           headers={**(headers or {}), "Idempotency-Key": "k"}),
              http_request("GET", stub.url + CASES + "/1", headers=headers)):
        assert_error(r, 401, "missing or invalid bearer token")
        assert r.headers.get("www-authenticate") == "Bearer"
    assert stub.cases() == []


def test_token_scheme_is_case_insensitive(stub):
    r = http_request("GET", stub.url + CASES, headers={"Authorization": f"bearer {stub.token}"})
    assert r.status == 200 and r.json == {"cases": []}


# ---- creating cases --------------------------------------------------------


def test_create_case_and_list_it(stub):
    body = case_body(error_codes=["EIO"])
    r = create(stub, "case-1", body)
    assert r.status == 201, r
    c = r.json
    assert isinstance(c["id"], int) and c["id"] >= 1
    assert c["agent_id"] == "agent-1" and c["hostname"] == "db01"
    assert c["fault_key"] == body["fault_key"]
    assert c["level"] == "P3" and c["rule"] == "temperature-critical"
    assert c["title"] == body["title"] and c["description"] == body["description"]
    assert c["status"] == "open" and c["fault_active"] is True
    assert c["occurrences"] == 3
    assert c["first_seen"] == "2026-11-25T10:00:00.123Z" and c["last_seen"] == "2026-11-25T10:00:10Z"
    assert c["cleared_at"] is None
    assert c["created_at"].endswith("Z")
    assert c["readings"] == body["readings"] and c["evidence"] == body["evidence"]
    assert c["agent"] == body["agent"]
    assert c["extra"] == {"error_codes": ["EIO"]}  # unknown fields are kept
    assert "updates" not in c

    listed = stub.cases()
    assert [x["id"] for x in listed] == [c["id"]]
    assert listed[0] == c

    one = stub.case(c["id"])
    assert one["updates"] == []
    assert {k: v for k, v in one.items() if k != "updates"} == c
    stub.wait_for(lambda: "POST /api/v1/cases 201" in stub.log, 5)


def test_minimal_case_gets_defaults(stub):
    body = case_body()
    for k in ("description", "last_seen", "readings", "evidence"):
        del body[k]
    for k in ("machine_id", "os", "kernel", "version"):
        del body["agent"][k]
    r = create(stub, "minimal", body)
    assert r.status == 201, r
    assert r.json["description"] == ""
    assert r.json["last_seen"] == body["first_seen"]
    assert r.json["readings"] == {} and r.json["evidence"] == []


def test_same_idempotency_key_returns_same_case(stub):
    first = create(stub, "same-key")
    assert first.status == 201
    again = create(stub, "same-key")
    assert again.status == 200
    assert again.json["id"] == first.json["id"]
    # A different body under the same key still answers with the first case.
    other = create(stub, "same-key", case_body(title="something else", level="P1"))
    assert other.status == 200
    assert other.json["id"] == first.json["id"] and other.json["title"] == first.json["title"]
    assert len(stub.cases()) == 1

    second = create(stub, "other-key")
    assert second.status == 201 and second.json["id"] != first.json["id"]
    assert [c["id"] for c in stub.cases()] == [first.json["id"], second.json["id"]]


@pytest.mark.parametrize("prefer", ["return=minimal", "RETURN = \"minimal\"", "handling=lenient, return=minimal",
                                    "return=minimal; foo=bar", "respond-async,return=minimal"])
def test_prefer_return_minimal_answers_only_the_id(stub, prefer):
    """RFC 7240: a client that needs only the id (the agent) gets {"id": N}
    and Preference-Applied; the case is stored whole all the same, a replay
    answers the same id, and an update answers its id and case_id."""
    body = case_body(error_codes=["EIO"])
    r = stub.post(CASES, body, {"Idempotency-Key": "min-1", "Prefer": prefer})
    assert r.status == 201, r
    assert r.json == {"id": r.json["id"]} and isinstance(r.json["id"], int)
    assert r.headers.get("preference-applied") == "return=minimal"
    cid = r.json["id"]
    stored = stub.case(cid)
    assert stored["title"] == body["title"] and stored["readings"] == body["readings"]
    assert stored["extra"] == {"error_codes": ["EIO"]}

    again = stub.post(CASES, body, {"Idempotency-Key": "min-1", "Prefer": prefer})
    assert again.status == 200 and again.json == {"id": cid}
    assert len(stub.cases()) == 1

    u = stub.post(f"{CASES}/{cid}/updates", {"type": "cleared"}, {"Idempotency-Key": "u-1", "Prefer": prefer})
    assert u.status == 201, u
    assert set(u.json) == {"id", "case_id"} and u.json["case_id"] == cid
    assert u.headers.get("preference-applied") == "return=minimal"
    assert stub.case(cid)["fault_active"] is False
    u2 = stub.post(f"{CASES}/{cid}/updates", {"type": "cleared"}, {"Idempotency-Key": "u-1", "Prefer": prefer})
    assert u2.status == 200 and u2.json == u.json


@pytest.mark.parametrize("prefer", ["return=representation", "return=minimalist", "minimal", "xreturn=minimal",
                                    "return"])
def test_other_preferences_get_the_whole_case(stub, prefer):
    r = stub.post(CASES, case_body(), {"Idempotency-Key": "full-1", "Prefer": prefer})
    assert r.status == 201, r
    assert r.json["title"] == case_body()["title"] and r.json["status"] == "open"
    assert "preference-applied" not in r.headers
    # errors stay errors whatever the preference
    bad = stub.post(CASES, {"fault_key": "x"}, {"Idempotency-Key": "bad-1", "Prefer": "return=minimal"})
    assert bad.status == 400 and "error" in bad.json


def test_idempotency_key_required_and_capped(stub):
    r = stub.post(CASES, case_body())
    assert_error(r, 400, "Idempotency-Key")
    r = create(stub, "k" * 201)
    assert_error(r, 400, "Idempotency-Key", "200")
    assert create(stub, "k" * 200).status == 201
    assert len(stub.cases()) == 1


def _without(path):
    body = case_body()
    obj = body
    for p in path[:-1]:
        obj = obj[p]
    del obj[path[-1]]
    return body


def _with(path, value):
    body = case_body()
    obj = body
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value
    return body


@pytest.mark.parametrize("body,fragment", [
    ("{not json", "invalid JSON"),
    ("", "empty body"),
    ('{"agent": {}} trailing', "unexpected data"),
    ("[1, 2, 3]", "expected a JSON object"),
    ('"just a string"', "expected a JSON object"),
    (_without(["agent"]), "agent: required"),
    (_with(["agent"], "agent-1"), "agent: expected an object"),
    (_without(["agent", "id"]), "agent.id: required"),
    (_with(["agent", "id"], 42), "agent.id: expected a string"),
    (_with(["agent", "id"], ""), "agent.id: must not be empty"),
    (_without(["agent", "hostname"]), "agent.hostname: required"),
    (_with(["agent", "kernel"], ["6.1"]), "agent.kernel: expected a string"),
    (_without(["fault_key"]), "fault_key: required"),
    (_without(["level"]), "level: required"),
    (_with(["level"], "P9"), "level: expected one of P1..P5"),
    (_with(["level"], "p1"), "level: expected one of P1..P5"),
    (_with(["level"], 1), "level: expected one of P1..P5"),
    (_without(["rule"]), "rule: required"),
    (_without(["title"]), "title: required"),
    (_with(["title"], "t" * 513), "title: longer than 512 bytes"),
    (_with(["description"], 5), "description: expected a string"),
    (_with(["description"], "d" * 16385), "description: longer than 16384 bytes"),
    (_with(["fault_key"], "k" * 257), "fault_key: longer than 256 bytes"),
    (_without(["first_seen"]), "first_seen: required"),
    (_with(["first_seen"], "yesterday"), "first_seen: expected an RFC 3339"),
    (_with(["first_seen"], "2026-02-30T10:00:00Z"), "first_seen: expected an RFC 3339"),
    (_with(["last_seen"], "2026-11-25 10:00:00"), "last_seen: expected an RFC 3339"),
    (_without(["occurrences"]), "occurrences: required"),
    (_with(["occurrences"], "3"), "occurrences: expected an integer >= 1"),
    (_with(["occurrences"], 0), "occurrences: expected an integer >= 1"),
    (_with(["occurrences"], 1.5), "occurrences: expected an integer >= 1"),
    (_with(["readings"], [1, 2]), "readings: expected an object"),
    (_with(["evidence"], {"a": 1}), "evidence: expected an array of objects"),
    (_with(["evidence"], [{"a": 1}, "x"]), "evidence[1]: expected an object"),
    (_with(["evidence"], [{"n": i} for i in range(101)]), "evidence: more than 100 entries"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_malformed_case_is_400_naming_the_field(stub, body, fragment):
    r = create(stub, "bad", body)
    assert_error(r, 400, fragment)
    assert stub.cases() == []


def test_evidence_at_the_cap_is_accepted(stub):
    r = create(stub, "hundred", case_body(evidence=[{"n": i} for i in range(100)]))
    assert r.status == 201, r
    assert len(r.json["evidence"]) == 100


def test_body_over_one_mib_is_413(stub):
    big = case_body(readings={"blob": "x" * (1024 * 1024)})
    r = create(stub, "big", big)
    assert_error(r, 413, "body", "1048576")
    assert stub.cases() == []
    # Just under the cap is fine, and the connection handling is unharmed.
    fits = case_body(readings={"blob": "x" * (1024 * 1024 - 2000)})
    r = create(stub, "fits", fits)
    assert r.status == 201, r
    assert len(r.json["readings"]["blob"]) == 1024 * 1024 - 2000


def test_chunked_body_over_one_mib_is_413(stub):
    # No Content-Length: the cap must hold while the body streams in.
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=10)
    chunks = (b"x" * 65536 for _ in range(20))
    conn.request("POST", CASES, body=chunks, encode_chunked=True,
                 headers={"Authorization": f"Bearer {stub.token}", "Idempotency-Key": "chunked",
                          "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 413
    assert "larger than" in resp.read().decode()
    conn.close()
    assert stub.cases() == []


# ---- updates ---------------------------------------------------------------


def test_occurrence_update(stub):
    cid = create(stub, "c").json["id"]
    r = update(stub, cid, "u1", {"type": "occurrence", "occurrences": 7,
                                 "last_seen": "2026-11-25T10:05:00Z",
                                 "evidence": [{"value": 98.0}]})
    assert r.status == 201, r
    u = r.json
    assert u["case_id"] == cid and u["type"] == "occurrence" and isinstance(u["id"], int)
    assert u["occurrences"] == 7 and u["evidence"] == [{"value": 98.0}]
    assert u["created_at"].endswith("Z")
    c = stub.case(cid)
    assert c["occurrences"] == 7 and c["last_seen"] == "2026-11-25T10:05:00Z"
    assert c["level"] == "P3" and c["fault_active"] is True
    assert [x["id"] for x in c["updates"]] == [u["id"]]
    assert c["updates"][0] == u


def test_level_update(stub):
    cid = create(stub, "c").json["id"]
    r = update(stub, cid, "u1", {"type": "level", "level": "P1", "reason": "disk I/O errors now"})
    assert r.status == 201, r
    assert r.json["level"] == "P1" and r.json["previous_level"] == "P3"
    assert r.json["reason"] == "disk I/O errors now"
    c = stub.case(cid)
    assert c["level"] == "P1"
    assert c["updates"][0]["reason"] == "disk I/O errors now"


def test_cleared_and_reopened_update(stub):
    cid = create(stub, "c").json["id"]
    r = update(stub, cid, "clear-1", {"type": "cleared", "message": "below crit - 5 for 60 s"})
    assert r.status == 201, r
    c = stub.case(cid)
    assert c["fault_active"] is False
    assert c["status"] == "open"  # closing belongs to people
    assert c["cleared_at"] and c["cleared_at"].endswith("Z")
    assert [x["id"] for x in stub.cases(fault_active="false")] == [cid]
    assert stub.cases(fault_active="true") == []
    assert [x["id"] for x in stub.cases(status="open")] == [cid]

    r = update(stub, cid, "reopen-1", {"type": "reopened"})
    assert r.status == 201
    c = stub.case(cid)
    assert c["fault_active"] is True and c["cleared_at"] is None
    assert [u["type"] for u in c["updates"]] == ["cleared", "reopened"]


def test_note_update_changes_nothing_else(stub):
    before = create(stub, "c").json
    r = update(stub, before["id"], "n1", {"type": "note", "message": "customer called"})
    assert r.status == 201 and r.json["message"] == "customer called"
    after = stub.case(before["id"])
    for k in ("level", "occurrences", "last_seen", "fault_active", "cleared_at", "status"):
        assert after[k] == before[k], k


def test_repeated_update_key_is_not_applied_twice(stub):
    cid = create(stub, "c").json["id"]
    first = update(stub, cid, "occ-1", {"type": "occurrence", "occurrences": 5})
    assert first.status == 201
    again = update(stub, cid, "occ-1", {"type": "occurrence", "occurrences": 9})
    assert again.status == 200
    assert again.json == first.json
    c = stub.case(cid)
    assert c["occurrences"] == 5
    assert len(c["updates"]) == 1

    # Update keys are per case: the same key on another case is a new update.
    cid2 = create(stub, "c2").json["id"]
    other = update(stub, cid2, "occ-1", {"type": "occurrence", "occurrences": 2})
    assert other.status == 201 and other.json["case_id"] == cid2
    assert stub.case(cid)["occurrences"] == 5 and stub.case(cid2)["occurrences"] == 2


@pytest.mark.parametrize("body,fragment", [
    ({}, "type: required"),
    ({"type": "closed"}, "type: expected one of"),
    ({"type": "occurrence"}, "occurrences: required"),
    ({"type": "occurrence", "occurrences": -1}, "occurrences: expected an integer >= 1"),
    ({"type": "level"}, "level: required"),
    ({"type": "level", "level": "P0"}, "level: expected one of P1..P5"),
    ({"type": "note"}, "message: required"),
    ({"type": "cleared", "last_seen": "soon"}, "last_seen: expected an RFC 3339"),
    ({"type": "note", "message": "m", "evidence": [1]}, "evidence[0]: expected an object"),
    ({"type": "note", "message": "m", "readings": "hot"}, "readings: expected an object"),
    ("[]", "expected a JSON object"),
])
def test_malformed_update_is_400(stub, body, fragment):
    cid = create(stub, "c").json["id"]
    r = update(stub, cid, "u", body)
    assert_error(r, 400, fragment)
    assert stub.case(cid)["updates"] == []


def test_update_needs_idempotency_key(stub):
    cid = create(stub, "c").json["id"]
    r = stub.post(f"{CASES}/{cid}/updates", {"type": "note", "message": "m"})
    assert_error(r, 400, "Idempotency-Key")


def test_update_of_unknown_case_is_404(stub):
    r = update(stub, 999, "u", {"type": "note", "message": "m"})
    assert_error(r, 404, "no case with id 999")
    r = update(stub, "abc", "u", {"type": "note", "message": "m"})
    assert_error(r, 404, "no case")


# ---- reading ---------------------------------------------------------------


def test_unknown_case_path_and_method(stub):
    assert_error(stub.get(f"{CASES}/12345"), 404, "no case with id 12345")
    assert_error(stub.get(f"{CASES}/0"), 404, "no case")
    assert_error(stub.get(f"{CASES}/abc"), 404, "no case")
    assert_error(stub.get("/api/v1/nothing"), 404, "no such endpoint")
    assert_error(stub.get("/", auth=False), 404)
    assert_error(stub.get(f"{CASES}/"), 404)
    r = stub.request("DELETE", f"{CASES}/1")
    assert_error(r, 405, "DELETE")
    assert r.headers.get("allow") == "GET"
    r = stub.request("PUT", CASES, body={})
    assert_error(r, 405)
    assert r.headers.get("allow") == "GET, POST"
    assert_error(stub.request("POST", "/api/v1/health", body={}, auth=False), 405)


def test_list_filters(stub):
    a = create(stub, "a", case_body(fault_key="k-a")).json["id"]
    b = create(stub, "b", case_body(fault_key="k-b", agent={"id": "agent-2", "hostname": "db02"})).json["id"]
    c = create(stub, "c", case_body(fault_key="k-a", agent={"id": "agent-2", "hostname": "db02"})).json["id"]
    update(stub, b, "clr", {"type": "cleared"})
    assert [x["id"] for x in stub.cases()] == [a, b, c]
    assert [x["id"] for x in stub.cases(agent_id="agent-2")] == [b, c]
    assert [x["id"] for x in stub.cases(fault_key="k-a")] == [a, c]
    assert [x["id"] for x in stub.cases(agent_id="agent-2", fault_key="k-a")] == [c]
    assert [x["id"] for x in stub.cases(fault_active="false")] == [b]
    assert [x["id"] for x in stub.cases(fault_active="true")] == [a, c]
    assert stub.cases(status="closed") == []
    assert stub.cases(agent_id="nobody") == []
    assert all("updates" not in x for x in stub.cases())
    assert_error(stub.get(CASES + "?fault_active=maybe"), 400, "fault_active")
    assert_error(stub.get(CASES + "?status=gone"), 400, "status")
    assert_error(stub.get(CASES + "?colour=red"), 400, "unknown query parameter colour")


# ---- persistence -----------------------------------------------------------


def test_cases_and_idempotency_survive_restart(stub):
    first = create(stub, "persist-1").json
    u = update(stub, first["id"], "upd-1", {"type": "occurrence", "occurrences": 4}).json
    assert stub.stop() == 0
    port = stub.port

    stub.start()
    assert stub.port == port
    listed = stub.cases()
    assert [c["id"] for c in listed] == [first["id"]]
    assert listed[0]["occurrences"] == 4
    again = create(stub, "persist-1")
    assert again.status == 200 and again.json["id"] == first["id"]
    u_again = update(stub, first["id"], "upd-1", {"type": "occurrence", "occurrences": 99})
    assert u_again.status == 200 and u_again.json["id"] == u["id"]
    assert stub.case(first["id"])["occurrences"] == 4
    second = create(stub, "persist-2")
    assert second.status == 201 and second.json["id"] == first["id"] + 1
    assert len(stub.cases()) == 2

    # What is on disk is a plain SQLite file the tests can read too.
    with sqlite3.connect(stub.db) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM cases").fetchone()[0] == 2


def test_sigint_stops_cleanly(stub):
    create(stub, "x")
    assert stub.stop(signal.SIGINT) == 0
    stub.wait_for(lambda: "SIGINT received" in stub.log, 5)


# ---- command line ----------------------------------------------------------


def run_stub(*args, timeout=10):
    return subprocess.run([binary("weibao-stub"), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args,fragment", [
    ([], "--listen"),
    (["--listen", "127.0.0.1:0", "--token", "t"], "--db"),
    (["--listen", "127.0.0.1:0", "--db", "DB"], "--token"),
    (["--listen", "127.0.0.1:0", "--db", "DB", "--token", "t", "--token-file", "TOK"], "exactly one"),
    (["--listen", "127.0.0.1:0", "--db", "DB", "--token", "t", "--bogus"], "unknown option --bogus"),
    (["--listen", "127.0.0.1:0", "--db", "DB", "--token", "t", "extra"], "unexpected argument extra"),
    (["--listen"], "needs an argument"),
    (["--listen", "127.0.0.1", "--db", "DB", "--token", "t"], "--listen 127.0.0.1: expected HOST:PORT"),
    (["--listen", "127.0.0.1:70000", "--db", "DB", "--token", "t"], "port: expected 0..65535"),
    (["--listen", "::1:80", "--db", "DB", "--token", "t"], "expected HOST:PORT"),
    (["--listen", "127.0.0.1:0", "--db", "DB", "--token-file", "/nonexistent/token"],
     "reading token file /nonexistent/token"),
    (["--listen", "127.0.0.1:0", "--db", "DB", "--token", "has space"], "visible ASCII"),
    (["--listen", "127.0.0.1:0", "--db", "/nonexistent/dir/stub.db", "--token", "t"],
     "opening database /nonexistent/dir/stub.db"),
])
def test_bad_usage_exits_2(tmp_path, args, fragment):
    args = [str(tmp_path / "stub.db") if a == "DB" else a for a in args]
    args = [str(tmp_path / "token") if a == "TOK" else a for a in args]
    (tmp_path / "token").write_text("t\n")
    p = run_stub(*args)
    assert p.returncode == 2, p
    assert fragment.replace("DB", str(tmp_path / "stub.db")) in p.stderr, p.stderr
    assert p.stdout == ""


def test_empty_token_file_and_non_database_exit_2(tmp_path):
    (tmp_path / "empty").write_text("\n")
    p = run_stub("--listen", "127.0.0.1:0", "--db", str(tmp_path / "db"), "--token-file",
                 str(tmp_path / "empty"))
    assert p.returncode == 2 and "visible ASCII" in p.stderr, p
    (tmp_path / "garbage.db").write_bytes(b"this is not an sqlite database at all" * 100)
    p = run_stub("--listen", "127.0.0.1:0", "--db", str(tmp_path / "garbage.db"), "--token", "t")
    assert p.returncode == 2 and "opening database" in p.stderr and "not a database" in p.stderr, p


def test_help_exits_0():
    p = run_stub("--help")
    assert p.returncode == 0 and "Usage: weibao-stub" in p.stdout


def test_port_in_use_exits_1(tmp_path, stub):
    p = run_stub("--listen", f"127.0.0.1:{stub.port}", "--db", str(tmp_path / "other.db"),
                 "--token", "t")
    assert p.returncode == 1, p
    assert "Address already in use" in p.stderr


def test_listen_ipv6_and_token_option(tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    proc = subprocess.Popen([binary("weibao-stub"), "--listen", "[::1]:0", "--db",
                             str(tmp_path / "v6.db"), "--token", "v6-token"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("weibao-stub: listening on http://[::1]:"), line
        url = line.split(" on ", 1)[1]
        r = http_request("GET", url + CASES, headers={"Authorization": "Bearer v6-token"})
        assert r.status == 200 and r.json == {"cases": []}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_stub_process_restart_helpers(tmp_path):
    # The fixture object itself: stop() is idempotent, start() reuses the port.
    s = StubProcess(tmp_path)
    try:
        s.start()
        url = s.url
        assert s.stop() == 0 and s.stop() is None
        s.start()
        assert s.url == url
        assert s.wait_for(lambda: s.get("/api/v1/health", auth=False).status == 200)
    finally:
        s.stop()
    assert os.path.exists(s.db)


def test_filter_value_with_spaces_and_slash(stub):
    cid = create(stub, "c").json["id"]
    assert [x["id"] for x in stub.cases(fault_key="coretemp-isa-0000/Package id 0")] == [cid]


def test_request_log_lines_are_one_line_each(stub):
    assert_error(stub.get("/api/v1/evil%0Aweibao-stub[err]:%20forged"), 404)
    stub.wait_for(lambda: "GET /api/v1/evil?weibao-stub[err]: forged 404" in stub.log)
    assert not any(line.startswith("weibao-stub[err]: forged") for line in stub.stderr_lines)


def test_storage_failure_is_500_and_rolled_back(stub):
    # Another writer holds the database past the stub's 5 s busy timeout.
    db = sqlite3.connect(stub.db, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        r = create(stub, "locked")
        assert_error(r, 500, "storage failure")
        # The stub's stderr is read by a thread: wait for the line, not just the answer.
        stub.wait_for(lambda: "creating case: database is locked" in stub.log, 5)
    finally:
        db.execute("ROLLBACK")
        db.close()
    # Nothing half-written: the retry with the same key creates the case.
    r = create(stub, "locked")
    assert r.status == 201, r
    assert len(stub.cases()) == 1


def test_refused_request_with_huge_announced_body_is_answered(stub):
    """401/404 come back at once even when the client announces 100 MB."""
    import socket as _socket
    for path, token, want in (("/api/v1/cases", "wrong", 401), ("/api/v1/nowhere", stub.token, 404)):
        s = _socket.create_connection(("127.0.0.1", stub.port), timeout=5)
        try:
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                       "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
                       % (path, token)).encode() + b"{" * 65536)
            head = s.recv(4096).decode(errors="replace")
        finally:
            s.close()
        assert head.startswith("HTTP/1.1 %d" % want), head


# ---- fault injection (--test-control) -------------------------------------

INJECT = "/api/v1/_test/inject"


@pytest.fixture
def tstub(tmp_path):
    """A stub started with --test-control."""
    d = tmp_path / "tstub"
    d.mkdir()
    s = StubProcess(d, test_control=True)
    s.start()
    yield s
    code = s.stop()
    s._kill()
    assert code in (0, None), s.log[-3000:]


def raw_request(port, request, timeout=10):
    """Sends request bytes on a fresh connection; returns everything the stub
    answered until it closed the connection (b"" when it closed without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def raw_post_case(stub, key):
    body = json.dumps(case_body()).encode()
    return raw_request(stub.port, b"POST /api/v1/cases HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Authorization: Bearer %s\r\nIdempotency-Key: %s\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (stub.token.encode(), key.encode(), len(body), body))


def test_test_control_paths_are_404_without_the_option(stub):
    for method in ("GET", "POST", "DELETE"):
        r = stub.request(method, INJECT, body={"action": "drop"} if method == "POST" else None)
        assert_error(r, 404, "no such endpoint")


def test_inject_needs_the_token(tstub):
    r = tstub.request("POST", INJECT, body={"action": "drop"}, auth=False)
    assert_error(r, 401, "bearer token")
    assert tstub.injections()["injections"] == []


@pytest.mark.parametrize("body, fragment", [
    ({}, "action: expected one of status, delay, drop, garbage"),
    ({"action": "explode"}, "action: expected one of"),
    ({"action": "status"}, "status: required for action status"),
    ({"action": "status", "status": 99}, "status: expected an integer 100..599"),
    ({"action": "status", "status": 503.5}, "status: expected an integer"),
    ({"action": "status", "status": 503, "retry_after": -1}, "retry_after: expected an integer 0..86400"),
    ({"action": "delay"}, "seconds: required for action delay"),
    ({"action": "delay", "seconds": 301}, "seconds: required for action delay (a number 0.001..300)"),
    ({"action": "delay", "seconds": 1, "status": 500}, "status: only for action status"),
    ({"action": "drop", "when": "later"}, "when: expected before or after"),
    ({"action": "status", "status": 500, "when": "after"}, "when: only for actions drop and garbage"),
    ({"action": "drop", "seconds": 1}, "seconds: only for action delay"),
    ({"action": "drop", "count": 0}, "count: expected an integer 1..10000"),
    ({"action": "drop", "match": "api"}, "match: expected a path prefix starting with /"),
    ({"action": "drop", "retry_afer": 1}, "retry_afer: unknown field"),
    ("[1]", "body: expected a JSON object"),
    ("{", "body: invalid JSON"),
])
def test_inject_body_errors_name_the_field(tstub, body, fragment):
    r = tstub.request("POST", INJECT, body=body)
    assert_error(r, 400, fragment)
    assert tstub.injections()["injections"] == []


def test_injected_status_with_retry_after_for_count_requests(tstub):
    q = tstub.inject(action="status", status=503, count=3, retry_after=2)
    assert q == {"action": "status", "status": 503, "retry_after": 2, "match": "/api/v1/", "remaining": 3}
    for i in range(3):
        r = create(tstub, "k-%d" % i)
        assert_error(r, 503, "injected")
        assert r.json == {"error": "injected"}
        assert r.headers.get("retry-after") == "2"
    # not processed: nothing stored; and the fourth request is normal again
    assert tstub.cases() == []
    r = create(tstub, "k-3")
    assert r.status == 201 and "retry-after" not in r.headers
    st = tstub.injections()
    assert st["injections"] == []
    assert st["applied"] == {"status": 3, "delay": 0, "drop": 0, "garbage": 0}


def test_injection_without_retry_after_and_match_prefix(tstub):
    tstub.inject(action="status", status=500, match="/api/v1/cases/")
    # /api/v1/cases does not start with /api/v1/cases/: unaffected
    assert create(tstub, "a").status == 201
    r = tstub.get(CASES + "/1")
    assert_error(r, 500, "injected")
    assert "retry-after" not in r.headers
    # the _test endpoints are never affected, even by a matching prefix
    tstub.inject(action="status", status=500, match="/api/v1/_test/")
    tstub.inject(action="drop", match="/")
    assert tstub.injections()["injections"][0]["match"] == "/api/v1/_test/"
    assert [i["action"] for i in tstub.injections()["injections"]] == ["status", "drop"]


def test_injections_apply_in_fifo_order_and_delete_clears(tstub):
    tstub.inject(action="status", status=502)
    tstub.inject(action="status", status=429, retry_after=7, count=2)
    tstub.inject(action="garbage")
    listed = tstub.injections()["injections"]
    assert [(i["action"], i.get("status"), i["remaining"]) for i in listed] == \
        [("status", 502, 1), ("status", 429, 2), ("garbage", None, 1)]
    assert tstub.get(CASES).status == 502
    r = tstub.get(CASES)
    assert r.status == 429 and r.headers["retry-after"] == "7"
    assert tstub.injections()["injections"][0]["remaining"] == 1
    assert tstub.clear_injections() == 2
    assert tstub.injections() == {"injections": [], "applied": {"status": 0, "delay": 0, "drop": 0, "garbage": 0}}
    assert tstub.get(CASES).status == 200


def test_drop_before_loses_the_request(tstub):
    tstub.inject(action="drop", when="before")
    assert raw_post_case(tstub, "drop-before") == b""
    assert tstub.cases() == []
    # the retry with the same key creates the case
    r = create(tstub, "drop-before")
    assert r.status == 201
    assert tstub.injections()["applied"]["drop"] == 1


def test_drop_after_stores_but_loses_the_answer(tstub):
    tstub.inject(action="drop", when="after")
    assert raw_post_case(tstub, "drop-after") == b""
    stored = tstub.cases()
    assert len(stored) == 1
    # the client's retry with the same Idempotency-Key finds the same case: no duplicate
    r = create(tstub, "drop-after")
    assert r.status == 200 and r.json["id"] == stored[0]["id"]
    assert len(tstub.cases()) == 1


def test_drop_is_an_empty_reply_for_curl(tstub):
    tstub.inject(action="drop", when="after")
    r = subprocess.run(["curl", "-sS", "-H", "Authorization: Bearer " + tstub.token, tstub.url + CASES],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 52, (r.returncode, r.stderr)  # CURLE_GOT_NOTHING
    assert "Empty reply from server" in r.stderr


@pytest.mark.parametrize("when, stored", [("before", 0), ("after", 1)])
def test_garbage_answer(tstub, when, stored):
    tstub.inject(action="garbage", when=when)
    r = create(tstub, "garbage-" + when)
    assert r.status == 200
    assert r.json is None and r.body  # a body, and not JSON
    with pytest.raises(ValueError):
        json.loads(r.body)
    assert len(tstub.cases()) == stored
    assert tstub.injections()["applied"]["garbage"] == 1


def test_delay_answers_late_without_stalling_others(tstub):
    tstub.inject(action="delay", seconds=2, match=CASES)
    result = {}

    def slow():
        t = time.monotonic()
        result["r"] = create(tstub, "delayed")
        result["t"] = time.monotonic() - t

    th = threading.Thread(target=slow)
    th.start()
    tstub.wait_for(lambda: "POST /api/v1/cases: injecting delay" in tstub.log, 1.5)
    # the delayed request was processed at once: its case is stored before the answer
    t = time.monotonic()
    assert len(tstub.cases()) == 1
    assert tstub.get("/api/v1/health").status == 200
    assert time.monotonic() - t < 1.0, "a second request stalled behind the delayed one"
    assert "r" not in result
    th.join(10)
    assert result["r"].status == 201, result
    assert 1.9 <= result["t"] < 5, result["t"]
    assert tstub.injections()["applied"]["delay"] == 1


def test_stop_with_a_delayed_request_pending(tstub):
    tstub.inject(action="delay", seconds=60)
    with socket.create_connection(("127.0.0.1", tstub.port), timeout=10) as s:
        s.sendall(b"GET /api/v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % tstub.token.encode())
        tstub.wait_for(lambda: "injecting delay" in tstub.log, 5)
        assert tstub.stop(timeout=10) == 0
