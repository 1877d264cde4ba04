#!/bin/bash
# bench/process.sh: detection latency of a process exit, from the moment a
# watched process is killed to the moment the fault fires inside the agent,
# over PROCESS_TRIALS trials; in the same run monit (Debian package) watches
# the same process with `set daemon 1`, its shortest cycle, and its
# detection latency is measured from its log. bench/README.md explains the
# method.
#
# Prints, on stdout, only lines of the form
#   bench: process.exit_{p50,p99,max}[[monit]] VALUE ms
# or "bench: NAME unavailable" (reason on stderr). Exit status: 0 when the
# agent was measured, 1 otherwise (a missing monit is reported, not a failure).
#
# Environment:
#   PROCESS_TRIALS  trials, default 100
#   PROCESS_KEEP    1 keeps the temporary directory for inspection
#
# Assumptions: the agent's exit statuses come from the proc connector, so
# this runs as root to see them (without, latency is the same and the
# events say "exit status unknown"). Nothing outside the private temporary
# directory is written.
set -u
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
trials=${PROCESS_TRIALS:-100}
tmp=$(mktemp -d /tmp/weibao-bench-process.XXXXXX)
started=()
KEEP_VAR=PROCESS_KEEP
say() { echo "bench/process.sh: $*" >&2; }
# shellcheck source=bench/common.sh
. "$root/bench/common.sh"

agent_bin=$root/build/weibao-agent
stub_bin=$root/build/weibao-stub
ctl_bin=$root/build/weibaoctl
monit_bin=/usr/bin/monit
for b in "$agent_bin" "$stub_bin" "$ctl_bin"; do
        if [ ! -x "$b" ]; then
                say "$b is not built (make all)"
                echo "bench: process.exit_p50 unavailable"
                exit 1
        fi
done

# ---- the central API stub and the agent ----
echo "bench-token-0123456789" >"$tmp/token"
chmod 600 "$tmp/token"
"$stub_bin" --listen 127.0.0.1:0 --db "$tmp/stub.db" --token-file "$tmp/token" >"$tmp/stub.out" 2>"$tmp/stub.log" &
started+=($!)
for _ in $(seq 100); do
        url=$(sed -n 's/^weibao-stub: listening on \(http:[^ ]*\)$/\1/p' "$tmp/stub.out")
        [ -n "$url" ] && break
        sleep 0.05
done
if [ -z "${url:-}" ]; then
        say "the stub did not start: $(cat "$tmp/stub.log")"
        echo "bench: process.exit_p50 unavailable"
        exit 1
fi
# Only the bench rule: the fault fires on the exit event itself (the
# default not-running rule would wait for the collector's grace, and the
# process is not critical, so no restart rule applies).
cat >"$tmp/bench.rules" <<'EOF'
rule bench-process-exited {
        when source == "process" and name == "exited"
        clear name == "running"
        level P4
        key "bench:{watch}"
        title "{watch}: pid {pid} {exit}"
}
EOF
cat >"$tmp/agent.conf" <<EOF
agent {
        id "bench-process"
        state_dir "$tmp/state"
        control_socket "$tmp/agent.sock"
        log_level notice
        rules "$tmp/bench.rules"
}
central {
        url "$url"
        token_file "$tmp/token"
}
collector sensors {
        enabled no
}
collector snmptrap {
        enabled no
}
collector process {
        watch "bench pidfile=$tmp/bench.pid"
        grace 1h
}
# every trial is a new firing period: no reopen window, no flapping, no
# storm limits (the figure is detection, not the lifecycle)
cases {
        reopen_window 0s
        flap_count 0
        storm_keys 0
        case_rate 1000000
        case_burst 1000000
}
EOF
"$agent_bin" --config "$tmp/agent.conf" >"$tmp/agent.log" 2>&1 &
started+=($!)

# ---- monit, watching the same pidfile ----
monit_ok=0
if [ -x "$monit_bin" ]; then
        (umask 077 && cat >"$tmp/monitrc") <<EOF
set daemon 1
set logfile $tmp/monit.log
set pidfile $tmp/monit.pid
set idfile $tmp/monit.id
set statefile $tmp/monit.state
check process bench with pidfile $tmp/bench.pid
EOF
        if "$monit_bin" -t -c "$tmp/monitrc" >"$tmp/monit-check.log" 2>&1; then
                "$monit_bin" -I -c "$tmp/monitrc" >"$tmp/monit.out" 2>&1 &
                started+=($!)
                monit_ok=1
        else
                say "monit rejects its configuration: $(cat "$tmp/monit-check.log")"
        fi
else
        say "monit: $monit_bin is missing (Debian package monit)"
fi

# ---- the trials ----
/usr/bin/python3 - "$tmp" "$ctl_bin" "$trials" "$monit_ok" <<'EOF'
import calendar, json, os, random, subprocess, sys, time

tmp, ctl, trials, monit_ok = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
pidfile = os.path.join(tmp, "bench.pid")
sock = os.path.join(tmp, "agent.sock")
monit_log = os.path.join(tmp, "monit.log")


def ctl_json(*args):
    r = subprocess.run([ctl, "-s", sock, "--json", *args], capture_output=True, text=True, timeout=10)
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait(pred, timeout, step=0.002):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def watch():
    o = ctl_json("collector", "process") or {}
    o = o.get("collector", o)
    return (o.get("watches") or [{}])[0]


def parse_rfc3339(s):
    # "2026-12-01T22:01:02.345Z"
    base, frac = s.rstrip("Z").split(".")
    t = time.strptime(base, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + int(frac) / 10 ** len(frac)


def firing_since(t0_ms):
    """first_seen of the bench fault, in whole ms, when it fired at or after t0_ms."""
    o = ctl_json("faults") or {}
    for f in o.get("faults", []):
        if f.get("key") == "bench:bench" and f.get("state") == "firing":
            ts = round(parse_rfc3339(f["first_seen"]) * 1000)
            if ts >= t0_ms:
                return ts
    return None


class LogTail:
    def __init__(self, path):
        self.path, self.pos = path, 0

    def skip(self):
        try:
            self.pos = os.path.getsize(self.path)
        except OSError:
            self.pos = 0

    def find(self, text):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return False
        i = data.find(text.encode())
        if i < 0:
            return False
        self.pos += i + len(text)
        return True


if not wait(lambda: os.path.exists(sock), 10, 0.05):
    print("bench/process.sh: the agent did not start", file=sys.stderr)
    sys.exit(1)
tail = LogTail(monit_log)
agent_ms, monit_ms = [], []
monit_seen_down = False
for i in range(trials):
    p = subprocess.Popen(["sleep", "1000"])
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d\n" % p.pid)
    os.rename(pidfile + ".tmp", pidfile)
    ok = wait(lambda: watch().get("pid") == p.pid, 5)
    if monit_ok:
        # monit logs "running" only after it saw the process missing; the
        # first trial waits for two of its cycles instead.
        if monit_seen_down:
            ok = ok and wait(lambda: tail.find("process is running"), 10, 0.01)
        else:
            time.sleep(2.5)
        tail.skip()
    if not ok:
        print("bench/process.sh: trial %d: the process was not picked up" % i, file=sys.stderr)
        p.kill()
        p.wait()
        continue
    # A random point in monit's 1 s cycle: right after its "running" line
    # every kill would land at the same phase.
    time.sleep(random.random())
    t0 = time.time()
    p.kill()
    p.wait()  # reaped at once: a zombie still "exists" for kill(pid, 0)
    # first_seen has millisecond resolution: t0 goes on the same grid.
    t0_ms = int(t0 * 1000)
    ts = wait(lambda: firing_since(t0_ms), 5)
    if ts is None:
        print("bench/process.sh: trial %d: no fault from the agent" % i, file=sys.stderr)
    else:
        agent_ms.append(float(ts - t0_ms))
    if monit_ok:
        if wait(lambda: tail.find("process is not running"), 10, 0.002):
            monit_ms.append((time.time() - t0) * 1000)
            monit_seen_down = True
        else:
            print("bench/process.sh: trial %d: monit logged nothing" % i, file=sys.stderr)
    try:
        os.unlink(pidfile)
    except OSError:
        pass


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]


def report(vals, tag):
    if not vals:
        for k in ("p50", "p99"):
            print("bench: process.exit_%s%s unavailable" % (k, tag), flush=True)
        return
    print("bench: process.exit_p50%s %.1f ms" % (tag, pct(vals, 50)), flush=True)
    print("bench: process.exit_p99%s %.1f ms" % (tag, pct(vals, 99)), flush=True)
    print("bench: process.exit_max%s %.1f ms" % (tag, max(vals)), flush=True)
    print("bench/process.sh: %s%d trials measured of %d" % (tag + " " if tag else "", len(vals), trials),
          file=sys.stderr)


report(agent_ms, "")
report(monit_ms, "[monit]")
sys.exit(0 if agent_ms else 1)
EOF
