#!/bin/bash
# bench/idle.sh: the idle cost of weibao-agent with the temperature collector
# at a 10 s interval, beside two peers measured in the same run and the same
# way: collectd (sensors, cpu, memory, interface) and monit watching two
# processes. bench/README.md explains the method and the goals.
#
# Prints, on stdout, only lines of the form
#   bench: idle.{rss,pss,pss_mean,cpu}[.8sensors][[peer]] VALUE UNIT
# or "bench: NAME unavailable" (reason on stderr). Everything else goes to
# stderr. Exit status: 0 when the agent was measured, 1 when the agent or the
# stub could not be run (a missing peer is reported, not a failure).
#
# Environment:
#   IDLE_SECONDS  measurement window, default 60 (CPU is always scaled to 60 s)
#   IDLE_SETTLE   seconds between start and the first reading, default 5
#   IDLE_FAKE     0 skips the second phase (8 simulated sensors), default 1
#   IDLE_KEEP     1 keeps the temporary directory for inspection
#
# Assumptions: Linux with /proc/PID/smaps_rollup (4.14+); root, or user
# namespaces for the fake-sensor phase. Nothing outside the private temporary
# directory is written: no /etc, no system service is touched.
# pid_NAME variables are read through ${!var} in measure, and the start_*
# functions are called through run_one's arguments:
# shellcheck disable=SC2034,SC2317
set -u
export LC_ALL=C # "." as the decimal point in $EPOCHREALTIME and awk

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${IDLE_SECONDS:-60}
settle=${IDLE_SETTLE:-5}
sample=5 # seconds between memory samples
fake=${IDLE_FAKE:-1}
agent_bin=$root/build/weibao-agent
stub_bin=$root/build/weibao-stub
collectd_bin=/usr/sbin/collectd
collectd_plugins=/usr/lib/collectd
collectd_types=/usr/share/collectd/types.db
monit_bin=/usr/bin/monit
hz=$(getconf CLK_TCK)
status=0

case $seconds in '' | *[!0-9]* | 0) echo "idle: IDLE_SECONDS must be a positive integer" >&2; exit 2 ;; esac
case $settle in '' | *[!0-9]*) echo "idle: IDLE_SETTLE must be an integer" >&2; exit 2 ;; esac

tmp=$(mktemp -d /tmp/weibao-idle.XXXXXX) || exit 1
chmod 700 "$tmp"

# Every process this script starts, so that every exit path can stop it.
started=()

say() { echo "idle: $*" >&2; }

# nap SECONDS: sleep in the background and wait for it, so that a TERM is
# handled at once rather than when the sleep ends.
nap() {
        sleep "$1" &
        wait "$!"
}

KEEP_VAR=IDLE_KEEP
# shellcheck source=bench/common.sh
. "$root/bench/common.sh"

# ---------------------------------------------------------------- /proc ----

# Fills the global associative array "children" (ppid -> " pid pid ...").
declare -A children
scan_children() {
        local f line rest
        local -a fields
        children=()
        for f in /proc/[0-9]*/stat; do
                read -r line 2>/dev/null <"$f" || continue
                rest=${line##*) }
                read -ra fields <<<"$rest"
                f=${f#/proc/}
                children[${fields[1]}]+=" ${f%/stat}"
        done
}

# tree PID: PID and all its live descendants (after scan_children).
tree() {
        local pid=$1 kid
        echo "$pid"
        for kid in ${children[$pid]:-}; do
                tree "$kid"
        done
}

# cpu_ticks PID: utime+stime+cutime+cstime summed over the live tree. cutime
# and cstime hold children that already ended and were reaped, so a helper
# that comes and goes during the window is counted too; a live process
# appears only once. Prints nothing when PID is gone.
cpu_ticks() {
        local pid line rest sum=0
        local -a f
        [ -r "/proc/$1/stat" ] || return 1
        scan_children
        for pid in $(tree "$1"); do
                read -r line 2>/dev/null <"/proc/$pid/stat" || continue
                rest=${line##*) }
                read -ra f <<<"$rest"
                # f[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17
                sum=$((sum + f[11] + f[12] + f[13] + f[14]))
        done
        echo "$sum"
}

# mem_kb PID: "RSS_KB PSS_KB" summed over the live tree, from smaps_rollup.
mem_kb() {
        local pid rss=0 pss=0 key val _
        [ -r "/proc/$1/smaps_rollup" ] || return 1
        scan_children
        for pid in $(tree "$1"); do
                while read -r key val _; do
                        case $key in
                        Rss:) rss=$((rss + val)) ;;
                        Pss:) pss=$((pss + val)) ;;
                        esac
                done 2>/dev/null <"/proc/$pid/smaps_rollup"
        done
        echo "$rss $pss"
}

# ------------------------------------------------------------- programs ----

# The simulated sensors of the second phase: two chips, 8 temperatures, as
# hwmon presents them (millidegrees), without a "device" link, so libsensors
# takes them as virtual chips (bench_cpu-virtual-0, bench_nvme-virtual-0).
make_fake_hwmon() {
        local d=$tmp/hwmon i
        mkdir -p "$d/hwmon0" "$d/hwmon1" || return 1
        echo bench_cpu >"$d/hwmon0/name"
        echo "Package id 0" >"$d/hwmon0/temp1_label"
        for i in 2 3 4 5 6; do
                echo "Core $((i - 2))" >"$d/hwmon0/temp${i}_label"
        done
        for i in 1 2 3 4 5 6; do
                echo $((40000 + i * 1000)) >"$d/hwmon0/temp${i}_input"
                echo 80000 >"$d/hwmon0/temp${i}_max"
                echo 95000 >"$d/hwmon0/temp${i}_crit"
                echo 0 >"$d/hwmon0/temp${i}_crit_alarm"
        done
        echo bench_nvme >"$d/hwmon1/name"
        echo Composite >"$d/hwmon1/temp1_label"
        echo "Sensor 1" >"$d/hwmon1/temp2_label"
        for i in 1 2; do
                echo 38850 >"$d/hwmon1/temp${i}_input"
                echo 81850 >"$d/hwmon1/temp${i}_max"
                echo 84850 >"$d/hwmon1/temp${i}_crit"
        done
}

# in_fake_ns CMD...: exec CMD in a private mount namespace whose
# /sys/class/hwmon is the simulated tree (the rest of /sys/class is hidden;
# neither program needs it: collectd's cpu, memory and interface plugins read
# /proc). unshare and sh exec, so the PID stays the program's.
in_fake_ns() {
        local userns=()
        [ "$(id -u)" = 0 ] || userns=(--map-root-user)
        # shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
        exec unshare "${userns[@]}" --mount --propagation private sh -c '
                mount -t tmpfs weibao-bench /sys/class &&
                mkdir /sys/class/hwmon &&
                mount --bind "$1" /sys/class/hwmon &&
                shift && exec "$@"' sh "$tmp/hwmon" "$@"
}

start_stub() {
        local i
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$tmp/token") || return 1
        chmod 600 "$tmp/token"
        : >"$tmp/stub.out"
        "$stub_bin" --listen 127.0.0.1:0 --db "$tmp/stub.db" --token-file "$tmp/token" \
                >"$tmp/stub.out" 2>"$tmp/stub.log" &
        started+=("$!")
        stub_pid=$!
        for ((i = 0; i < 100; i++)); do
                stub_url=$(sed -n 's/^weibao-stub: listening on \(http:[^ ]*\)$/\1/p' "$tmp/stub.out")
                [ -n "$stub_url" ] && return 0
                kill -0 "$stub_pid" 2>/dev/null || break
                sleep 0.1
        done
        say "weibao-stub did not report its address; its output:"
        cat "$tmp/stub.out" "$tmp/stub.log" >&2
        return 1
}

# start_agent NAME [fake]: sets pid_NAME.
start_agent() {
        local name=$1 mode=${2:-} dir=$tmp/$1
        mkdir -p "$dir/state" && chmod 700 "$dir" "$dir/state"
        cat >"$dir/agent.conf" <<EOF
agent {
    id "bench-agent"
    state_dir "$dir/state"
    control_socket "$dir/agent.sock"
    log_level notice
    rules "$root/rules/default/*.rules"
}
central {
    url "$stub_url"
    token_file "$tmp/token"
}
collector sensors {
    interval 10s
}
EOF
        if [ "$mode" = fake ]; then
                (in_fake_ns "$agent_bin" --config "$dir/agent.conf") >"$dir/log" 2>&1 &
        else
                "$agent_bin" --config "$dir/agent.conf" >"$dir/log" 2>&1 &
        fi
        started+=("$!")
        printf -v "pid_$name" %s "$!"
}

# start_collectd NAME [fake]: sets pid_NAME; returns 1 if unavailable.
start_collectd() {
        local name=$1 mode=${2:-} dir=$tmp/$1 p
        for p in "$collectd_bin" "$collectd_types" \
                "$collectd_plugins"/{sensors,cpu,memory,interface,csv,logfile}.so; do
                if [ ! -e "$p" ]; then
                        say "collectd: $p is missing (Debian package collectd-core)"
                        return 1
                fi
        done
        mkdir -p "$dir/csv"
        cat >"$dir/collectd.conf" <<EOF
# Written by bench/idle.sh; everything stays under $dir.
Hostname "weibao-bench"
FQDNLookup false
BaseDir "$dir"
PIDFile "$dir/collectd.pid"
PluginDir "$collectd_plugins"
TypesDB "$collectd_types"
Interval 10
LoadPlugin logfile
<Plugin logfile>
    LogLevel "info"
    File "$dir/collectd.log"
    Timestamp true
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin interface
LoadPlugin sensors
LoadPlugin csv
<Plugin csv>
    DataDir "$dir/csv"
    StoreRates false
</Plugin>
EOF
        if ! "$collectd_bin" -t -C "$dir/collectd.conf" >"$dir/check.log" 2>&1; then
                say "collectd rejects its configuration:"
                cat "$dir/check.log" >&2
                return 1
        fi
        if [ "$mode" = fake ]; then
                (in_fake_ns "$collectd_bin" -f -C "$dir/collectd.conf") >"$dir/log" 2>&1 &
        else
                "$collectd_bin" -f -C "$dir/collectd.conf" >"$dir/log" 2>&1 &
        fi
        started+=("$!")
        printf -v "pid_$name" %s "$!"
}

# start_monit NAME: two helpers to watch, then monit; sets pid_NAME.
start_monit() {
        local name=$1 dir=$tmp/$1 h
        if [ ! -x "$monit_bin" ]; then
                say "monit: $monit_bin is missing (Debian package monit)"
                return 1
        fi
        mkdir -p "$dir"
        for h in a b; do
                bash -c "exec -a weibao-bench-$h sleep 100000" &
                started+=("$!")
        done
        (umask 077 && cat >"$dir/monitrc") <<EOF
# Written by bench/idle.sh. A 10 s cycle to match the agent's interval
# (Debian's default is 120 s). No httpd.
set daemon 10
set logfile $dir/monit.log
set pidfile $dir/monit.pid
set idfile $dir/monit.id
set statefile $dir/monit.state
check process weibao-bench-a matching "^weibao-bench-a "
check process weibao-bench-b matching "^weibao-bench-b "
EOF
        chmod 600 "$dir/monitrc"
        if ! "$monit_bin" -t -c "$dir/monitrc" >"$dir/check.log" 2>&1; then
                say "monit rejects its configuration:"
                cat "$dir/check.log" >&2
                return 1
        fi
        "$monit_bin" -I -c "$dir/monitrc" >"$dir/log" 2>&1 &
        started+=("$!")
        printf -v "pid_$name" %s "$!"
}

# ---------------------------------------------------------- measurement ----

# measure LABEL NAME: settle, read CPU time at t0, sample memory every
# $sample seconds through the window, read CPU time at t1, print the three
# lines. LABEL is the metric suffix: "" (the agent), "[collectd]",
# ".8sensors[collectd]"; NAME names the program's directory under $tmp and
# its pid_NAME variable. RSS and PSS are the highest of the samples: PSS
# splits each shared page among all processes mapping it at that instant, so
# a process elsewhere on the machine that maps the same library for a moment
# (a test run, a curl) lowers a single reading; the highest sample is the one
# least lowered. CPU is scaled from the measured wall time to 60 s. Sets
# status=1 when the agent (a label without "[peer]") could not be measured.
measure() {
        local label=$1 name=$2 pid t0 t1="" w0 w1 mem rss pss rss_max=0 pss_max=0 pss_sum=0 n=0 left=0 step others=""
        pid=pid_$name
        pid=${!pid}
        nap "$settle"
        w0=$EPOCHREALTIME
        t0=$(cpu_ticks "$pid") || t0=
        if [ -n "$t0" ]; then
                say "measuring $name (pid $pid) for ${seconds}s after ${settle}s to settle"
                for ((left = seconds; left > 0; left -= step)); do
                        step=$((left < sample ? left : sample))
                        nap "$step"
                        mem=$(mem_kb "$pid") || break
                        read -r rss pss <<<"$mem"
                        ((rss > rss_max)) && rss_max=$rss
                        ((pss > pss_max)) && pss_max=$pss
                        pss_sum=$((pss_sum + pss))
                        n=$((n + 1))
                        others+=$(other_copies "$pid")
                done
                t1=$(cpu_ticks "$pid") || t1=
                w1=$EPOCHREALTIME
        fi
        if [ -z "$t0" ] || [ -z "$t1" ] || [ "$left" -gt 0 ]; then
                say "$name (pid $pid) is no longer running; its logs:"
                log_tail "$name"
                unavailable "$label"
                case $label in *\[*) ;; *) status=1 ;; esac
                return
        fi
        if [ -n "$others" ]; then
                say "warning: other processes ran the same $(readlink "/proc/$pid/exe") during" \
                        "the window (pids$(tr ' ' '\n' <<<"$others" | sort -un | tr '\n' ' ')); while they" \
                        "run they share pages with $name and lower its PSS (the reported PSS is the" \
                        "highest sample, taken when the fewest pages were shared)"
        fi
        # The agent's breakdown always; a peer's when its PSS may be lowered.
        case "$label|$others" in *\[*\|) ;; *)
                say "$name at the end of the window, PSS by mapping:"
                pss_breakdown "$pid"
                ;;
        esac
        awk -v l="$label" -v r="$rss_max" -v p="$pss_max" -v d="$((t1 - t0))" -v ps="$pss_sum" -v n="$n" \
                -v hz="$hz" -v w0="$w0" -v w1="$w1" 'BEGIN {
                printf "bench: idle.rss%s %.2f MiB\n", l, r / 1024
                printf "bench: idle.pss%s %.2f MiB\n", l, p / 1024
                if (n > 0) printf "bench: idle.pss_mean%s %.2f MiB\n", l, ps / n / 1024
                printf "bench: idle.cpu%s %.3f s/60s\n", l, d / hz * 60 / (w1 - w0)
        }'
}

# log_tail NAME: the last lines of whatever that program logged.
log_tail() {
        local f
        for f in "$tmp/$1"/*log; do
                [ -s "$f" ] || continue
                echo "--- ${f#"$tmp"/}" >&2
                tail -n 20 "$f" >&2
        done
}

# pss_breakdown PID: on stderr, the private memory (USS: pages no other
# process maps at this moment) and the mappings that weigh most in PSS, with
# their RSS, so a figure over the goal says where it comes from and how much
# of it other processes share right now.
pss_breakdown() {
        awk '/^Private_(Clean|Dirty):/ { p += $2 }
             END { printf "idle:   private (USS) %.2f MiB\n", p / 1024 }' \
                "/proc/$1/smaps_rollup" >&2
        awk '/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6) ? $6 : "[anon]" }
             /^Rss:/ { rss[name] += $2 }
             /^Pss:/ { pss[name] += $2 }
             END { for (n in pss) if (pss[n] >= 64)
                     printf "%d %d %s\n", pss[n], rss[n], n }' \
                "/proc/$1/smaps" 2>/dev/null | sort -rn | head -n 8 |
                awk '{ printf "idle:   PSS %5.2f MiB of RSS %5.2f MiB  %s\n", $1 / 1024, $2 / 1024, $3 }' >&2
}

# other_copies PID: the PIDs of other processes running the same executable
# file (same device and inode, so a binary rebuilt meanwhile does not count)
# as PID, outside its tree: another engineer's test agent, a system collectd.
other_copies() {
        local id f fid p mine
        id=$(stat -L -c %d:%i "/proc/$1/exe" 2>/dev/null) || return 0
        scan_children
        mine=" $(tree "$1" | tr '\n' ' ')"
        while read -r f fid; do
                [ "$fid" = "$id" ] || continue
                p=${f#/proc/}
                p=${p%/exe}
                case $mine in *" $p "*) ;; *) printf ' %s' "$p" ;; esac
        done < <(stat -L -c '%n %d:%i' /proc/[0-9]*/exe 2>/dev/null)
}

unavailable() {
        local m
        for m in rss pss cpu; do echo "bench: idle.$m$1 unavailable"; done
}

# run_one LABEL NAME START_FUNCTION [ARG...]: start one program (and what it
# needs), measure it alone, stop everything that was started for it. A start
# function that fails has said why; its program is reported unavailable.
run_one() {
        local label=$1 name=$2 n0=${#started[@]}
        shift 2
        printf -v "pid_$name" %s -
        if "$@"; then
                measure "$label" "$name"
        else
                unavailable "$label"
                case $label in *\[*) ;; *) status=1 ;; esac
        fi
        stop_pids "${started[@]:n0}"
        started=("${started[@]:0:n0}")
}

start_agent_with_stub() {
        local name=$1 b
        for b in "$agent_bin" "$stub_bin"; do
                if [ ! -x "$b" ]; then
                        say "$b is missing (make all)"
                        return 1
                fi
        done
        start_stub || return 1
        say "weibao-stub at $stub_url"
        start_agent "$@"
}

# -------------------------------------------------------------------- main ----

host_sensors=$(sensors -u 2>/dev/null | grep -cE '^ +temp[0-9]+_input:')
say "this machine: $(nproc) CPUs, ${host_sensors:-0} temperature inputs from sensors -u, CLK_TCK $hz"

# One program at a time, with nothing else of ours running: PSS splits every
# shared page among all processes mapping it, so two programs measured
# together lower each other's PSS (programs sharing libraries such as libcrypto or libc, the
# agent and collectd libsensors). Only weibao-stub runs beside the agent,
# because the agent needs a central API to idle as in production.

# Phase 1: the machine's own sensors.
run_one "" agent start_agent_with_stub agent
run_one "[collectd]" collectd start_collectd collectd
run_one "[monit]" monit start_monit monit

# Phase 2: 8 simulated sensors; the agent and collectd each in a private
# mount namespace with the same fake hwmon tree, so both read sensors.
if [ "$fake" != 0 ]; then
        n=
        if make_fake_hwmon; then
                n=$( (in_fake_ns sensors -u) 2>/dev/null | grep -cE '^ +temp[0-9]+_input:')
        fi
        if [ "$n" != 8 ]; then
                say "the simulated hwmon tree does not work here (sensors -u saw '${n}' inputs; needs root or user namespaces)"
                unavailable .8sensors
                unavailable ".8sensors[collectd]"
        else
                say "phase 2: 8 simulated sensors in a private mount namespace"
                run_one .8sensors agent8 start_agent_with_stub agent8 fake
                run_one ".8sensors[collectd]" collectd8 start_collectd collectd8 fake
        fi
fi

exit "$status"
