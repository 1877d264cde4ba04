#!/bin/bash
# bench/heartbeat.sh: detection latency of the heartbeat collector, event to
# fault firing inside the agent, p50/p99 over HB_TRIALS trials (default 100):
#
#   carrier    the peer's end of link hb0 goes down (SIOCSIFFLAGS in the
#              peer's namespace): this agent loses carrier; goal <= 50 ms p99.
#              Trials are 1.1 s apart: the kernel's linkwatch announces a
#              carrier change at most once a second, so a carrier loss right
#              after another change is announced up to 1 s late by the kernel
#   hbloss     nftables starts dropping the heartbeats arriving on hb0
#              (interval 200ms, timeout 600ms: set here, as the issue's
#              goal names it; the default timeout is 1 s since a lossy link
#              must not look dead); goal <= timeout + interval
#
# Two agents in network namespaces (wbhbbench<pid>-*) joined by two veth
# links, as in tests/integration/test_heartbeat.py, whose topology code it
# reuses. bench/README.md explains the method. Prints
#   bench: heartbeat.{carrier,hbloss}_{p50,p99,max} VALUE ms
#   bench: heartbeat.{rss,pss} VALUE MiB   (one agent while heartbeating)
# or "bench: heartbeat unavailable" with the reason on stderr and exit
# status 1 (as bench/process.sh: a figure that could not be taken is a
# failed part, not a pass). Needs root and nft.
# Everything it creates (namespaces, temporary directory, processes) is
# removed on exit.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
        echo "bench/heartbeat.sh: needs root for network namespaces" >&2
        echo "bench: heartbeat unavailable"
        exit 1
fi
for t in ip nft; do
        if ! command -v "$t" >/dev/null; then
                echo "bench/heartbeat.sh: $t missing (make deps)" >&2
                echo "bench: heartbeat unavailable"
                exit 1
        fi
done
exec /usr/bin/python3 - "$root" "${HB_TRIALS:-100}" <<'EOF'
import ctypes, datetime, fcntl, json, os, socket, struct, subprocess, sys, tempfile, time, shutil

root, trials = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, os.path.join(root, "tests", "integration"))
os.environ.setdefault("WEIBAO_BUILD", os.path.join(root, "build"))
import test_heartbeat as hb  # noqa: E402  (the namespaces and processes of the integration test)


def log(*a):
    print("bench/heartbeat.sh:", *a, file=sys.stderr, flush=True)


def ask(sock, cmd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock)
    s.sendall(cmd.encode() + b"\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)


def wall_ms(rfc3339):
    d = datetime.datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return d.timestamp() * 1000


def fault(agent, key):
    for f in ask(agent.sock, "faults")["faults"]:
        if f["key"] == key:
            return f
    return None


def wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.002)
    return None


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1


def set_up(ns, dev, up):
    """Flips IFF_UP from a thread inside ns; returns the wall time (ms) just before the change."""
    def run():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        req = struct.pack("16sH22x", dev.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        flags = flags | IFF_UP if up else flags & ~IFF_UP
        t = time.time() * 1000
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", dev.encode(), flags))
        s.close()
        return t
    return hb.in_netns(ns, run)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def report(name, xs):
    if not xs:
        print("bench: heartbeat.%s unavailable" % name, flush=True)
        return
    for label, v in (("p50", pct(xs, 50)), ("p99", pct(xs, 99)), ("max", max(xs))):
        print("bench: heartbeat.%s_%s %.1f ms" % (name, label, v), flush=True)
    log("%s: %d trials, min %.1f ms, p50 %.1f, p99 %.1f, max %.1f" % (name, len(xs), min(xs), pct(xs, 50),
                                                                    pct(xs, 99), max(xs)))


tmp = tempfile.mkdtemp(prefix="weibao-hbbench.")
net = hb.Net()
net.prefix = "wbhbbench%d" % os.getpid()
net.a, net.b, net.m, net.f = (net.prefix + s for s in ("a", "b", "m", "f"))
net.pad = True
agents, stub, status = [], None, 0
try:
    net.up()
    # the default rules, minus the 5 s clear hold, so that trials can follow
    # each other quickly; firing is what is measured and is unchanged
    rules = os.path.join(tmp, "rules")
    os.mkdir(rules)
    for f in os.listdir(os.path.join(root, "rules", "default")):
        with open(os.path.join(root, "rules", "default", f)) as src, open(os.path.join(rules, f), "w") as dst:
            dst.write(src.read().replace("clear links_down == 0 for 5s", "clear links_down == 0"))
    os.mkdir(os.path.join(tmp, "stub"))
    stub = hb.NsStub(os.path.join(tmp, "stub"), net.m, "10.201.0.254")
    stub.start()
    key_file = os.path.join(tmp, "hb.key")
    with open(key_file, "wb") as f:
        f.write(hb.KEY)
    os.chmod(key_file, 0o600)
    for ns, me, peer, side, mgmt in ((net.a, "hb-a", "hb-b", 1, "10.201.0.2"), (net.b, "hb-b", "hb-a", 2, "10.201.0.1")):
        d = os.path.join(tmp, me)
        os.mkdir(d)
        links = ["hb%d 10.201.%d.%d 10.201.%d.%d" % (i, i + 1, side, i + 1, 3 - side) for i in (0, 1)]
        a = hb.NsAgent(d, ns, me, peer, links, mgmt, stub, key_file)
        # interval 200ms, timeout 600ms; flapping off (trials are flaps on purpose)
        with open(a.conf) as f:
            conf = f.read()
        conf = conf.replace(os.path.join(root, "rules", "default", "*.rules"), os.path.join(rules, "*.rules"))
        conf = conf.replace("log_level debug", "log_level notice")
        conf = conf.replace("  interval 50ms\n  timeout 1s\n", "  interval 200ms\n  timeout 600ms\n  flap_count 32\n  flap_window 1s\n")
        # every trial a new firing period: the fault table's reopen window,
        # flapping and storm limits are out of the way (the figure is detection)
        conf += ("cases {\n  reopen_window 0s\n  flap_count 0\n  storm_keys 0\n  case_rate 1000000\n"
                 "  case_burst 1000000\n}\n")
        with open(a.conf, "w") as f:
            f.write(conf)
        agents.append(a)
        a.start()
    A, B = agents
    if not wait(lambda: all(x.hb().get("verdict") == "ok" for x in agents), 15):
        raise RuntimeError("the agents did not see each other: %s" % A.hb())
    key = "hb:hb-b"

    # memory of an agent heartbeating on two links and a management path
    # (the two agents share the binary's pages, so PSS splits those between
    # them; RSS counts them whole)
    time.sleep(2)
    mem = {}
    with open("/proc/%d/smaps_rollup" % A.proc.pid) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("Rss:", "Pss:"):
                mem[parts[0][:-1].lower()] = int(parts[1]) / 1024.0
    print("bench: heartbeat.rss %.2f MiB" % mem.get("rss", 0), flush=True)
    print("bench: heartbeat.pss %.2f MiB" % mem.get("pss", 0), flush=True)

    carrier = []
    for i in range(trials):
        t0 = set_up(net.b, "hb0", False)
        f = wait(lambda: (lambda x: x if x and x["state"] == "firing" else None)(fault(A, key)), 5)
        if f:
            carrier.append(wall_ms(f["first_seen"]) - t0)
        set_up(net.b, "hb0", True)
        if not wait(lambda: (fault(A, key) or {}).get("state") == "cleared" and A.link("hb0").get("state") == "up", 10):
            log("carrier trial %d: the link did not come back" % i)
            break
        # The kernel's linkwatch announces carrier changes at most once a
        # second: a carrier loss within 1 s of the previous change would be
        # announced late by the kernel itself, so trials are spaced out.
        time.sleep(1.1)
    report("carrier", carrier)

    nft = ["ip", "netns", "exec", net.a, "nft"]
    subprocess.run(nft + ["add table inet wbhbbench; add chain inet wbhbbench in { type filter hook input priority 0 ; }"],
                   check=True)
    hbloss = []
    for i in range(trials):
        time.sleep(0.05 + (i % 10) * 0.02)  # spread the start over the sending interval
        t0 = time.time() * 1000
        subprocess.run(nft + ['add rule inet wbhbbench in iifname "hb0" udp dport %d drop' % hb.PORT], check=True)
        f = wait(lambda: (lambda x: x if x and x["state"] == "firing" else None)(fault(A, key)), 5)
        if f:
            hbloss.append(wall_ms(f["first_seen"]) - t0)
        subprocess.run(nft + ["flush chain inet wbhbbench in"], check=True)
        if not wait(lambda: (fault(A, key) or {}).get("state") == "cleared" and A.link("hb0").get("state") == "up", 10):
            log("heartbeat-loss trial %d: the link did not come back" % i)
            break
    report("hbloss", hbloss)
    if len(carrier) < trials or len(hbloss) < trials:
        status = 1
except Exception as e:  # report, clean up, fail the part
    log("failed: %s" % e)
    print("bench: heartbeat unavailable", flush=True)
    status = 1
finally:
    for a in agents:
        a.stop()
    if stub:
        stub.stop()
        stub._kill()
    net.down()
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(status)
EOF
