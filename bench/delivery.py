#!/usr/bin/python3
"""bench/delivery.py: case delivery figures (issue 5), run by bench/run.sh.

    bench: delivery.latency_p50 VALUE ms    event -> case stored on the stub
    bench: delivery.latency_p99 VALUE ms
    bench: delivery.throughput VALUE cases/s
    bench: delivery.throughput_sync_normal VALUE cases/s

One weibao-agent (snmptrap collector on a loopback port, the default rules,
storm control opened wide) and one weibao-stub on 127.0.0.1, both started
here in a temporary directory on disk (the agent's state database and the
stub's database are real files; `sync full` by default). Traps come from
build/bench/trapgen, one linkDown per interface: each distinct ifIndex is a
new fault, so a new case. bench/README.md says how each figure is taken.
Progress and details go to stderr. DELIVERY_KEEP=1 keeps the directory.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("WEIBAO_BUILD") or os.path.join(ROOT, "build")  # as the integration tests
# The agent finds the MIBs beside a build in the tree; a build elsewhere is told.
if not os.path.isdir(os.path.join(BUILD, "..", "collectors", "mibs")):
    os.environ.setdefault("WEIBAO_MIBDIR", os.path.join(ROOT, "collectors", "mibs"))
TRIALS = int(os.environ.get("DELIVERY_TRIALS", "200"))
THROUGHPUT_CASES = int(os.environ.get("DELIVERY_CASES", "4000"))
procs = []


def say(*a):
    print("delivery:", *a, file=sys.stderr, flush=True)


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class Setup:
    def __init__(self, tmp, sync="full"):
        self.tmp = tmp
        os.makedirs(tmp, exist_ok=True)
        self.token = "bench-token-0123456789"
        tf = os.path.join(tmp, "token")
        with open(tf, "w") as f:
            f.write(self.token + "\n")
        os.chmod(tf, 0o600)
        stub = subprocess.Popen([os.path.join(BUILD, "weibao-stub"), "--listen", "127.0.0.1:0", "--db",
                                 os.path.join(tmp, "stub.db"), "--token-file", tf],
                                stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "stub.log"), "w"), text=True)
        procs.append(stub)
        line = stub.stdout.readline().strip()
        self.url = line.split()[-1]
        self.trap_port = free_port()
        self.sock = os.path.join(tmp, "agent.sock")
        conf = os.path.join(tmp, "agent.conf")
        with open(conf, "w") as f:
            f.write('agent {\n  id "bench"\n  state_dir "%s"\n  control_socket "%s"\n  log_level notice\n'
                    '  rules "%s/rules/default/*.rules"\n}\n'
                    'central {\n  url "%s"\n  token_file "%s"\n  retry 1s\n}\n'
                    'cases {\n  storm_keys 0\n  case_rate 1000000\n  case_burst 1000000\n  sync %s\n}\n'
                    'collector sensors {\n  enabled no\n}\n'
                    'collector snmptrap {\n  listen "udp:127.0.0.1:%d"\n  community "public"\n}\n'
                    % (os.path.join(tmp, "state"), self.sock, ROOT, self.url, tf, sync, self.trap_port))
        agent = subprocess.Popen([os.path.join(BUILD, "weibao-agent"), "--config", conf],
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "agent.log"), "w"))
        procs.append(agent)
        self.agent = agent
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit("agent did not start: " + open(os.path.join(tmp, "agent.log")).read())
            time.sleep(0.05)

    def get(self, path):
        req = urllib.request.Request(self.url + path, headers={"Authorization": "Bearer " + self.token})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as r:
            return json.loads(r.read())

    def cases(self):
        return self.get("/api/v1/cases")["cases"]

    def status(self):
        r = subprocess.run([os.path.join(BUILD, "weibaoctl"), "-s", self.sock, "--json", "status"],
                           capture_output=True, text=True, timeout=10)
        return json.loads(r.stdout)

    def send(self, first, count, rate=1000):
        keys = min(count, 4096)
        r = subprocess.run([os.path.join(BUILD, "bench", "trapgen"), "-h", "127.0.0.1", "-p", str(self.trap_port),
                            "-r", str(rate), "-n", str(count), "-k", str(keys), "-i", str(first)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SystemExit("trapgen failed: " + r.stderr)

    def stop(self):
        for p in (self.agent,):
            p.send_signal(signal.SIGTERM)
            p.wait(10)


def latency(s):
    lat = []
    for i in range(1, TRIALS + 1):
        s.send(i, 1)
        deadline = time.monotonic() + 5
        while True:
            cs = s.get("/api/v1/cases?fault_key=snmp:link:127.0.0.1:%d" % i)["cases"]
            if cs:
                break
            if time.monotonic() > deadline:
                raise SystemExit("no case for trial %d" % i)
            time.sleep(0.002)
        c = cs[0]
        lat.append((parse_time(c["created_at"]) - parse_time(c["first_seen"])) * 1000)
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * len(lat))) - 1)]
    say("latency over %d trials: min %.2f p50 %.2f p90 %.2f p99 %.2f max %.2f ms" %
        (len(lat), lat[0], p50, lat[int(0.9 * len(lat)) - 1], p99, lat[-1]))
    return p50, p99


def throughput(s, first):
    n = THROUGHPUT_CASES
    t0 = time.monotonic()
    s.send(first, n, rate=20000)
    deadline = time.monotonic() + 120
    while True:
        st = s.status()["cases"]
        if st["opened"] >= n and st["sends_pending"] == 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit("throughput: not all cases delivered: %s" % st)
        time.sleep(0.05)
    t1 = time.monotonic()
    cs = [c for c in s.cases() if c["fault_key"].startswith("snmp:link:")]
    created = sorted(parse_time(c["created_at"]) for c in cs[-n:])
    span = created[-1] - created[0]
    rate = (n - 1) / span if span > 0 else float("inf")
    say("throughput: %d cases stored in %.2f s (first to last created_at); %.2f s from the first trap "
        "to all acknowledged" % (n, span, t1 - t0))
    return rate


def main():
    for b in ("weibao-agent", "weibao-stub", "weibaoctl", "bench/trapgen"):
        if not os.access(os.path.join(BUILD, b), os.X_OK):
            raise SystemExit("build/%s missing (make bench builds it)" % b)
    base = tempfile.mkdtemp(prefix="weibao-delivery-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        s = Setup(os.path.join(base, "full"))
        p50, p99 = latency(s)
        print("bench: delivery.latency_p50 %.2f ms" % p50, flush=True)
        print("bench: delivery.latency_p99 %.2f ms" % p99, flush=True)
        # a fresh pair, so the throughput run starts with an empty stub
        s.stop()
        s = Setup(os.path.join(base, "full-tp"))
        print("bench: delivery.throughput %.0f cases/s" % throughput(s, 1), flush=True)
        s.stop()
        s = Setup(os.path.join(base, "normal"), sync="normal")
        print("bench: delivery.throughput_sync_normal %.0f cases/s" % throughput(s, 1), flush=True)
        s.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("DELIVERY_KEEP") == "1":
            say("kept", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
