#!/bin/bash
# bench/traps.sh: SNMP traps through the whole path of weibao-agent (receive,
# decode, rules, dedup) on one core, and the same load in the same run into
# two peers (Debian packages): snmptrapd logging every trap to a file, and
# snmptrapd handing every trap to SNMPTT. bench/README.md explains the method.
#
# Every receiver gets the same treatment from the same code: bursts of
# TRAPS_SECONDS from build/bench/trapgen (pinned to CPU 0; the receiver is
# pinned to CPU 1) up a ladder of rates, then a bisection between the last
# rate without loss and the first with loss. Prints on stdout only
#   bench: traps.zero_loss[PEER] RATE traps/s    highest rate without loss
#   bench: traps.loss@RATE[PEER] PERCENT %       ladder rates above it, and the reference rate
#   bench: traps.drain[PEER] SECONDS s           drain time after the burst at the reference rate
#   bench: traps.throughput[PEER] RATE traps/s   most traps processed per second in any burst
# with [PEER] empty for the agent, [snmptrapd] or [snmptrapd+snmptt], or
# "bench: NAME unavailable" with the reason on stderr. Progress and details
# go to stderr. Exit status: 0 when every figure was measured, 1 when any
# could not be (the receivers that failed are named on stderr), 2 for a bad
# setting.
#
# Environment:
#   TRAPS_SECONDS    length of each burst, default 5
#   TRAPS_RATES      the ladder in traps/s, ascending, default
#                    "1000 2000 5000 10000 20000 50000 100000 150000 200000 300000"
#   TRAPS_CURVE      ladder rates with loss measured per receiver, default 3
#   TRAPS_BISECT     bisection steps below the first rate with loss, default 3
#   TRAPS_REF_RATE   the reference load of traps.drain, default 50000
#   TRAPS_DRAIN_MAX  seconds to wait for a receiver to finish, default 120
#   TRAPS_ONLY       receivers to run, default "agent snmptrapd snmptt"
#   TRAPS_BUILD      the build directory of the agent, stub, weibaoctl and
#                    generator, default build (as make B=DIR)
#   TRAPS_TRAPGEN    the generator, default $TRAPS_BUILD/bench/trapgen
#   TRAPS_NICE       niceness of the generator and the receivers, default
#                    -10 as root, else 0
#   TRAPS_KEEP       1 keeps the temporary directory for inspection
#
# Assumptions: Linux with at least 2 CPUs (0 and 1 usable), /proc/net/udp,
# GNU coreutils (stat %.6Y), /usr/bin/python3 for the agent's JSON status.
# Nothing outside one private temporary directory is written: no /etc, no
# system service, no sysctl is touched; every process started here is
# stopped on every exit path.
# Receiver functions (NAME_start, NAME_count, ...) and NAME_fields are used
# by name:
# shellcheck disable=SC2317,SC2034
set -u
export LC_ALL=C # "." as the decimal point in $EPOCHREALTIME and awk

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${TRAPS_SECONDS:-5}
read -ra rates <<<"${TRAPS_RATES:-1000 2000 5000 10000 20000 50000 100000 150000 200000 300000}"
curve=${TRAPS_CURVE:-3}
bisect=${TRAPS_BISECT:-3}
ref_rate=${TRAPS_REF_RATE:-50000}
drain_max=${TRAPS_DRAIN_MAX:-120}
read -ra only <<<"${TRAPS_ONLY:-agent snmptrapd snmptt}"
build=${TRAPS_BUILD:-$root/build}
trapgen=${TRAPS_TRAPGEN:-$build/bench/trapgen}
agent_bin=$build/weibao-agent
stub_bin=$build/weibao-stub
ctl_bin=$build/weibaoctl
snmptrapd_bin=/usr/sbin/snmptrapd
snmptt_bin=/usr/sbin/snmptt
snmptt_handler=/usr/lib/snmptt/snmptthandler-embedded
snmptt_ini=/etc/snmp/snmptt.ini
python=/usr/bin/python3
gen_cpu=0
rx_cpu=1
# The generator and the receivers run at a higher priority than the rest of
# the machine (when root), every receiver the same: on a shared machine other
# programs then take less of their CPUs. Each runs in a session of its own
# (setsid), hence in its own scheduler autogroup, whose nice value is set
# from inside it: with autogroups, the nice value of a process only counts
# against the processes of its own session. All of these exec in turn, so
# $! is the program's PID.
prio=${TRAPS_NICE:-$([ "$(id -u)" = 0 ] && echo -10 || echo 0)}
# shellcheck disable=SC2016 # $0 and $@ belong to the inner sh
prio_sh='echo "$0" >/proc/self/autogroup 2>/dev/null; exec nice -n "$0" "$@"'
on_gen=(setsid sh -c "$prio_sh" "$prio" taskset -c "$gen_cpu")
on_rx=(setsid sh -c "$prio_sh" "$prio" taskset -c "$rx_cpu")
hz=$(getconf CLK_TCK)
status=0
failed=()
warned=()

say() { echo "traps: $*" >&2; }

is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }

case $prio in -[0-9] | -1[0-9] | -20 | [0-9] | 1[0-9]) ;; *)
        say "TRAPS_NICE must be a niceness from -20 to 19, not '$prio'"
        exit 2
        ;;
esac
for v in seconds curve ref_rate drain_max bisect; do
        if ! is_uint "${!v}" || { [ "${!v}" = 0 ] && [ "$v" != bisect ]; }; then
                say "TRAPS_$(tr '[:lower:]' '[:upper:]' <<<"$v") must be a positive integer, not '${!v}'"
                exit 2
        fi
done
prev=0
for r in "${rates[@]}"; do
        if ! is_uint "$r" || [ "$r" -le "$prev" ]; then
                say "TRAPS_RATES must be ascending positive integers, not '${rates[*]}'"
                exit 2
        fi
        prev=$r
done
for n in "${only[@]}"; do
        case $n in agent | snmptrapd | snmptt) ;; *)
                say "TRAPS_ONLY: unknown receiver '$n' (agent, snmptrapd, snmptt)"
                exit 2
                ;;
        esac
done

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/weibao-traps.XXXXXX") || exit 1
chmod 700 "$tmp"

# Every process this script starts, so that every exit path can stop it.
started=()

KEEP_VAR=TRAPS_KEEP
# shellcheck source=bench/common.sh
. "$root/bench/common.sh"

now_us() { echo "${EPOCHREALTIME/./}"; }

# us_to_s MICROSECONDS: seconds with two decimals.
us_to_s() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }

# ------------------------------------------------------------ /proc ----

# sock_stat PORT: "BOUND RXQ DROPS" over every UDP socket whose local port
# is PORT: how many there are, the bytes waiting in their receive queues and
# the datagrams the kernel dropped on them since they were opened.
sock_stat() {
        local hex f loc q rest bound=0 rxq=0 drops=0
        local -a x
        printf -v hex '%04X' "$1"
        for f in /proc/net/udp /proc/net/udp6; do
                [ -r "$f" ] || continue
                while read -r _ loc _ _ q rest; do
                        [ "${loc##*:}" = "$hex" ] || continue
                        read -ra x <<<"$rest"
                        bound=$((bound + 1))
                        rxq=$((rxq + 16#${q#*:}))
                        drops=$((drops + x[${#x[@]} - 1]))
                done < <(tail -n +2 "$f")
        done
        echo "$bound $rxq $drops"
}

# free_port: a UDP port nothing on this machine is bound to.
free_port() {
        local p b _
        for _ in $(seq 50); do
                p=$((20000 + RANDOM % 40000))
                read -r b _ <<<"$(sock_stat "$p")"
                [ "$b" = 0 ] && echo "$p" && return 0
        done
        return 1
}

# wait_bound PORT PID: waits up to 10 s for a socket on PORT while PID lives.
wait_bound() {
        local i b _
        for ((i = 0; i < 100; i++)); do
                read -r b _ <<<"$(sock_stat "$1")"
                [ "$b" != 0 ] && return 0
                kill -0 "$2" 2>/dev/null || return 1
                sleep 0.1
        done
        return 1
}

# cpu_ticks PID...: utime+stime+cutime+cstime summed over the PIDs and their
# live descendants, as in bench/idle.sh.
cpu_ticks() {
        local f line rest pid sum=0
        local -a fields
        local -A kids=()
        for f in /proc/[0-9]*/stat; do
                read -r line 2>/dev/null <"$f" || continue
                rest=${line##*) }
                read -ra fields <<<"$rest"
                f=${f#/proc/}
                kids[${fields[1]}]+=" ${f%/stat}"
        done
        local -a todo=("$@")
        while [ ${#todo[@]} -gt 0 ]; do
                pid=${todo[0]}
                todo=("${todo[@]:1}")
                read -r line 2>/dev/null <"/proc/$pid/stat" || continue
                rest=${line##*) }
                read -ra fields <<<"$rest"
                sum=$((sum + fields[11] + fields[12] + fields[13] + fields[14]))
                # shellcheck disable=SC2206 # the list is pids separated by spaces
                todo+=(${kids[$pid]:-})
        done
        echo "$sum"
}

# cpu_stat N: "TOTAL IDLE" ticks of CPU N since boot, from /proc/stat.
cpu_stat() {
        local n u ni sy id io irq sirq st _
        while read -r n u ni sy id io irq sirq st _; do
                if [ "$n" = "cpu$1" ]; then
                        echo "$((u + ni + sy + id + io + irq + sirq + st)) $((id + io))"
                        return 0
                fi
        done </proc/stat
        return 1
}

# run_wait_us PID...: how long the threads of the PIDs have waited, runnable,
# for a CPU (the second field of /proc/PID/task/TID/schedstat, in ns).
run_wait_us() {
        local pid f run wait sum=0
        for pid in "$@"; do
                for f in /proc/"$pid"/task/*/schedstat; do
                        read -r run wait _ 2>/dev/null <"$f" || continue
                        sum=$((sum + wait / 1000))
                done
        done
        echo "$sum"
}

# ------------------------------------------------------------ receivers ----
#
# Each receiver NAME has
#   NAME_start    starts it with on_rx, sets rx_port and rx_pids;
#                 returns 1 after saying why it cannot run
#   NAME_count    prints the traps it has fully processed so far, then
#                 optional further counters (NAME_fields names them all)
#   NAME_check    after the first trap: is it decoded as sent?
#   NAME_reset    between bursts (truncates logs), optional
#   NAME_busy     true while work is queued outside the socket, optional
#   NAME_last     prints when it last wrote output (µs since the epoch),
#                 optional; without it the drain ends at the last poll that
#                 saw progress

# The agent's counters as "occurrences accepted received rejected shed
# kernel_drops rule_events unmatched": occurrences of the one fault every
# trap of the bench makes (snmp-link-down for 127.0.0.1, ifIndex 1; 0
# before the first), i.e. traps that went through the whole path to the
# fault, then the snmptrap collector's counters. Arguments: weibaoctl,
# control socket.
py_status='
import json, subprocess, sys
def ask(what):
    r = subprocess.run([sys.argv[1], "-s", sys.argv[2], "--json", what], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("traps: weibaoctl %s failed: %s" % (what, r.stderr.strip()))
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        sys.exit("traps: weibaoctl --json %s is not JSON: %s" % (what, e))
d = ask("status")
cs = [c for c in d.get("collectors", []) if isinstance(c, dict) and c.get("name") == "snmptrap"]
if not cs:
    sys.exit("traps: the agent status lists no collector named snmptrap")
c = cs[0]
try:
    occ = 0
    for f in ask("faults")["faults"]:
        if f["key"] == "snmp:link:127.0.0.1:1":
            if f["rule"] != "snmp-link-down":
                sys.exit("traps: fault %s comes from rule %s, not snmp-link-down" % (f["key"], f["rule"]))
            occ = f["occurrences"]
    rej = c["rejected"]
    rej = sum(rej.values()) if isinstance(rej, dict) else rej
    n = [occ, c["accepted"], c["received"], rej, c["shed"], c["kernel_drops"], d["rules"]["events"], c["unmatched"]]
    print(" ".join("%d" % v for v in n))
except (KeyError, TypeError, AttributeError, ValueError) as e:
    sys.exit("traps: the agent status lacks a number: %r" % e)
'

agent_fields="occurrences accepted received rejected shed kernel_drops rule_events unmatched"

agent_start() {
        local d=$tmp/agent b i url=""
        for b in "$agent_bin" "$stub_bin" "$ctl_bin" "$python"; do
                if [ ! -x "$b" ]; then
                        say "agent: $b is missing (make all)"
                        return 1
                fi
        done
        mkdir -p "$d/state" && chmod 700 "$d" "$d/state"
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$d/token") || return 1
        chmod 600 "$d/token"
        # The stub is not measured; it shares the generator's CPU.
        taskset -c "$gen_cpu" "$stub_bin" --listen 127.0.0.1:0 --db "$d/stub.db" --token-file "$d/token" \
                >"$d/stub.out" 2>"$d/stub.log" &
        started+=("$!")
        for ((i = 0; i < 100; i++)); do
                url=$(sed -n 's/^weibao-stub: listening on \(http:[^ ]*\)$/\1/p' "$d/stub.out")
                [ -n "$url" ] && break
                kill -0 "$!" 2>/dev/null || break
                sleep 0.1
        done
        if [ -z "$url" ]; then
                say "agent: weibao-stub did not report its address:"
                cat "$d/stub.out" "$d/stub.log" >&2
                return 1
        fi
        rx_port=$(free_port) || return 1
        agent_sock=$d/state/control.sock
        # Every trap of the bench has the same sender and ifIndex: the default
        # rule snmp-link-down makes them one fault and one case; the rest is
        # deduplicated.
        cat >"$d/agent.conf" <<EOF
# Written by bench/traps.sh.
agent {
    id "bench"
    state_dir "$d/state"
    control_socket "$agent_sock"
    log_level notice
    rules "$root/rules/default/*.rules"
}
central {
    url "$url"
    token_file "$d/token"
}
collector sensors {
    enabled no
}
collector snmptrap {
    listen "udp:127.0.0.1:$rx_port"
    community "public"
}
EOF
        "${on_rx[@]}" "$agent_bin" --config "$d/agent.conf" >"$d/log" 2>&1 &
        started+=("$!")
        rx_pids=("$!")
        for ((i = 0; i < 100; i++)); do
                [ -S "$agent_sock" ] && break
                kill -0 "${rx_pids[0]}" 2>/dev/null || break
                sleep 0.1
        done
        if [ ! -S "$agent_sock" ] || ! wait_bound "$rx_port" "${rx_pids[0]}"; then
                say "agent: weibao-agent did not open its control socket and udp:127.0.0.1:$rx_port; its log:"
                tail -n 20 "$d/log" >&2
                return 1
        fi
        "$ctl_bin" -s "$agent_sock" --json status 2>/dev/null | "$python" -c '
import json, sys
for c in json.load(sys.stdin).get("collectors", []):
    if isinstance(c, dict) and c.get("name") == "snmptrap":
        for l in c.get("listen", []):
            print("traps: agent: listening on %s, receive buffer %s bytes" % (l.get("address"), l.get("receive_buffer")))
' >&2 2>/dev/null
        return 0
}

agent_count() {
        "$python" -c "$py_status" "$ctl_bin" "$agent_sock" 2>>"$tmp/agent/ctl.log"
}

# agent_verify COUNTS: the whole path held for every trap accepted so far:
# each matched the rule (unmatched 0) and counted on the one fault
# (occurrences = accepted). A figure of traps that stopped short of the
# fault is no figure of the whole path.
agent_verify() {
        local -a f
        read -ra f <<<"$1"
        if [ "${f[7]}" != 0 ] || [ "${f[0]}" != "${f[1]}" ]; then
                say "agent: the whole path did not hold: ${f[1]} traps accepted, ${f[0]} occurrences of" \
                        "fault snmp:link:127.0.0.1:1, ${f[7]} matched no rule"
                return 1
        fi
}

agent_check() {
        local c
        c=$(count agent) || return 1
        agent_verify "$c"
}

agent_report() {
        say "agent: status and faults after the run:"
        {
                "$ctl_bin" -s "$agent_sock" status
                "$ctl_bin" -s "$agent_sock" faults
        } 2>&1 | sed 's/^/traps:   /' | head -n 40 >&2
}

snmptrapd_fields="logged"

snmptrapd_start() {
        local d=$tmp/snmptrapd
        if [ ! -x "$snmptrapd_bin" ]; then
                say "snmptrapd: $snmptrapd_bin is missing (Debian package snmptrapd)"
                return 1
        fi
        mkdir -p "$d"
        rx_port=$(free_port) || return 1
        cat >"$d/snmptrapd.conf" <<EOF
# Written by bench/traps.sh: log every v1/v2c trap with community public.
authCommunity log public
doNotRetainNotificationLogs yes
EOF
        # -C: no other configuration file; -m '': no MIBs, as Debian ships
        # them (/etc/snmp/snmp.conf says "mibs :"); -n: no DNS; -F: the
        # default v2c format on one line, behind a marker to count.
        SNMP_PERSISTENT_DIR=$d/persist "${on_rx[@]}" "$snmptrapd_bin" -f -n -C -c "$d/snmptrapd.conf" \
                -m '' -p "$d/snmptrapd.pid" -Lf "$d/traps.log" \
                -F 'TRAP %.4y-%.2m-%.2l %.2h:%.2j:%.2k %B [%b]: %v\n' "udp:127.0.0.1:$rx_port" \
                >"$d/out" 2>&1 &
        started+=("$!")
        rx_pids=("$!")
        if ! wait_bound "$rx_port" "$!"; then
                say "snmptrapd did not bind udp:127.0.0.1:$rx_port; its output:"
                tail -n 20 "$d/out" "$d/traps.log" >&2 2>/dev/null
                return 1
        fi
}

snmptrapd_count() {
        local n
        n=$(grep -c '^TRAP ' "$tmp/snmptrapd/traps.log")
        echo "${n:-0}"
}

snmptrapd_check() {
        local l
        l=$(grep -m1 '^TRAP ' "$tmp/snmptrapd/traps.log")
        case $l in *'.6.3.1.1.5.3'*'"eth1"'*) return 0 ;; esac
        say "snmptrapd logged something else than the linkDown sent: $l"
        return 1
}

snmptrapd_reset() { : >"$tmp/snmptrapd/traps.log"; }

snmptrapd_last() {
        local t
        t=$(stat -c %.6Y "$tmp/snmptrapd/traps.log") && echo "${t/./}"
}

snmptt_fields="logged"

snmptt_start() {
        local d=$tmp/snmptt p trapd_pid
        for p in "$snmptrapd_bin" "$snmptt_bin" "$snmptt_handler" "$snmptt_ini"; do
                if [ ! -e "$p" ]; then
                        say "snmptt: $p is missing (Debian packages snmptrapd, snmptt)"
                        return 1
                fi
        done
        if ! "$snmptrapd_bin" -H 2>&1 | grep -q '^ *perl '; then
                say "snmptt: this snmptrapd has no embedded Perl for snmptthandler-embedded"
                return 1
        fi
        mkdir -p "$d/spool"
        rx_port=$(free_port) || return 1
        # Debian's snmptt.ini with the paths moved here and these changes:
        # foreground (daemon_fork 0, no daemon_uid), the spool polled every
        # 0.1 s instead of 5 s (so the drain time is not the poll interval),
        # no syslog, and no IPv6 (needs Net::IP, only recommended by the
        # package; these traps are IPv4).
        awk -v d="$d" -v ini="$snmptt_ini" '
        BEGIN {
                o["mode"] = "daemon"; o["daemon_fork"] = "0"; o["daemon_uid"] = ""
                o["pid_file"] = d "/snmptt.pid"; o["spool_directory"] = d "/spool/"; o["sleep"] = "0.1"
                o["log_file"] = d "/snmptt.log"; o["log_system_enable"] = "1"
                o["log_system_file"] = d "/snmpttsystem.log"; o["syslog_enable"] = "0"
                o["syslog_system_enable"] = "0"; o["ipv6_enable"] = "0"; o["unknown_trap_log_enable"] = "0"
        }
        files { if ($0 == "END") { print d "/snmptt.conf"; print; files = 0 }; next }
        /^snmptt_conf_files *= *<<END/ { print; files = 1; seen["files"] = 1; next }
        /^[A-Za-z0-9_]+ *=/ {
                k = $0; sub(/ *=.*/, "", k)
                if (k in o) { print k " = " o[k]; seen[k] = 1; next }
        }
        { print }
        END {
                for (k in o) if (!(k in seen)) { print "traps: snmptt: " ini " has no " k > "/dev/stderr"; bad = 1 }
                if (!("files" in seen)) { print "traps: snmptt: " ini " has no snmptt_conf_files" > "/dev/stderr"; bad = 1 }
                exit bad
        }' "$snmptt_ini" >"$d/snmptt.ini" || return 1
        # The linkDown entry of Debian's /etc/snmp/snmptt.conf.
        cat >"$d/snmptt.conf" <<'EOF'
EVENT linkDown .1.3.6.1.6.3.1.1.5.3 "Status Events" Normal
FORMAT Link down on interface $1.  Admin state: $2.  Operational state: $3
EOF
        # The embedded handler reads its ini from fixed paths unless edited.
        sed "s|^my \$ini = '';|my \$ini = '$d/snmptt.ini';|" "$snmptt_handler" >"$d/handler.pl"
        if ! grep -q "^my \$ini = '$d/snmptt.ini';" "$d/handler.pl"; then
                say "snmptt: cannot point $snmptt_handler at $d/snmptt.ini"
                return 1
        fi
        # SNMPTT's recommended setup: the embedded handler and -On (numeric
        # OIDs). "execute" only: snmptrapd does not also log every trap.
        cat >"$d/snmptrapd.conf" <<EOF
# Written by bench/traps.sh: hand every v1/v2c trap with community public to SNMPTT.
authCommunity execute public
doNotRetainNotificationLogs yes
perl do "$d/handler.pl";
EOF
        # -LF 0-6: without debug messages (one per trap from the Perl handler).
        SNMP_PERSISTENT_DIR=$d/persist "${on_rx[@]}" "$snmptrapd_bin" -f -n -On -C -c "$d/snmptrapd.conf" \
                -m '' -p "$d/snmptrapd.pid" -LF 0-6 "$d/snmptrapd.log" "udp:127.0.0.1:$rx_port" \
                >"$d/snmptrapd.out" 2>&1 &
        started+=("$!")
        trapd_pid=$!
        # stderr to /dev/null as when Debian's service forks it: SNMPTT 1.5
        # prints dozens of Perl warnings per trap. Its own log is snmpttsystem.log.
        "${on_rx[@]}" "$snmptt_bin" --daemon --ini="$d/snmptt.ini" >/dev/null 2>&1 &
        started+=("$!")
        rx_pids=("$trapd_pid" "$!")
        if ! wait_bound "$rx_port" "$trapd_pid"; then
                say "snmptt: snmptrapd did not bind udp:127.0.0.1:$rx_port; its output:"
                tail -n 20 "$d/snmptrapd.out" "$d/snmptrapd.log" >&2 2>/dev/null
                return 1
        fi
}

snmptt_count() {
        local n
        n=$(grep -c 'Link down on interface' "$tmp/snmptt/snmptt.log" 2>/dev/null)
        echo "${n:-0}"
}

snmptt_check() {
        local l
        l=$(grep -m1 'Link down on interface' "$tmp/snmptt/snmptt.log")
        case $l in *'.1.3.6.1.6.3.1.1.5.3'*'interface 1.  Admin state: 1.  Operational state: 2'*) return 0 ;; esac
        say "snmptt logged something else than the linkDown sent: $l"
        return 1
}

snmptt_reset() { : >"$tmp/snmptt/snmptt.log"; }

snmptt_busy() {
        [ -n "$(find "$tmp/snmptt/spool" -mindepth 1 -maxdepth 1 -print -quit)" ]
}

snmptt_last() {
        local t
        t=$(stat -c %.6Y "$tmp/snmptt/snmptt.log") && echo "${t/./}"
}

snmptt_fail_log() {
        tail -n 20 "$tmp/snmptt/snmptrapd.log" "$tmp/snmptt/snmpttsystem.log" >&2 2>/dev/null
}

# --------------------------------------------------------------- a step ----

# generate ARG...: runs the generator on its CPU with ARGs; its result line
# goes to $tmp/trapgen.out. In the background and waited for, not in $(...),
# so that a signal to this script is handled at once and its EXIT trap stops
# the generator too (which runs in a session of its own).
generate() {
        local rc
        "${on_gen[@]}" "$trapgen" "$@" >"$tmp/trapgen.out" &
        started+=("$!")
        wait "$!"
        rc=$?
        unset 'started[-1]'
        return "$rc"
}

has() { declare -F "$1" >/dev/null; }

# count NAME: prints the receiver's counters; fails when it cannot say.
count() {
        local out
        out=$("${1}_count") || return 1
        is_uint "${out%% *}" || return 1
        echo "$out"
}

# wait_done NAME T_END_US: waits until the receiver has finished with
# what it was sent: its socket queue empty (polled every 10 ms), nothing
# queued elsewhere (NAME_busy) and its count still for 0.5 s (SNMPTT: 1 s,
# its spool loop sleeps 0.1 s). Sets done_count (counters) and done_us: the
# moment the queue was first seen empty or, when later, the last output
# (NAME_last) or the last poll that saw the count move. Returns 1 after
# TRAPS_DRAIN_MAX or when the receiver fails.
wait_done() {
        local name=$1 t_end=$2 c prev t_q t_change=0 t_still now last quiet_us=500000 b rxq _
        [ "$name" = snmptt ] && quiet_us=1000000
        while :; do
                read -r b rxq _ <<<"$(sock_stat "$rx_port")"
                now=$(now_us)
                if [ "$b" = 0 ]; then
                        say "$name: its socket is gone"
                        return 1
                fi
                [ "$rxq" = 0 ] && break
                if ((now - t_end > drain_max * 1000000)); then
                        say "$name: still $rxq bytes queued on its socket after ${drain_max}s"
                        return 1
                fi
                sleep 0.01
        done
        t_q=$now
        prev=$(count "$name") || return 1
        t_still=$(now_us)
        while :; do
                sleep 0.1
                c=$(count "$name") || return 1
                now=$(now_us)
                read -r b rxq _ <<<"$(sock_stat "$rx_port")"
                if [ "${c%% *}" != "${prev%% *}" ]; then
                        t_change=$now
                        t_still=$now
                elif [ "$rxq" != 0 ] || { has "${name}_busy" && "${name}_busy"; }; then
                        t_still=$now
                elif ((now - t_still >= quiet_us)); then
                        break
                fi
                prev=$c
                if ((now - t_end > drain_max * 1000000)); then
                        say "$name: still processing ${drain_max}s after the burst"
                        return 1
                fi
        done
        done_count=$c
        done_us=$t_q
        if has "${name}_last"; then
                last=$("${name}_last") && ((last > done_us)) && done_us=$last
        elif ((t_change > done_us)); then
                done_us=$t_change
        fi
        return 0
}

# Results of the steps of the current receiver, by rate.
declare -A r_sent r_loss r_zero r_drain r_tput r_grid
# The highest share of the receiver's CPU other processes took in a step
# with loss (where the receiver wanted all of it).
others_max=0

# step NAME RATE: one burst of TRAPS_SECONDS at RATE and its drain; fills
# r_*[RATE]. Returns 0, 1 when the receiver failed or cannot be counted,
# 2 when the generator did not hold the rate (nothing recorded).
step() {
        local name=$1 rate=$2 c0 c1 d0 d1 b _ out sent=0 achieved=0 errors=0 kv t0 t_end
        local tick0 tick1 tickb proc drops loss extra="" cpu i tot0 idle0 tot1 idle1 others wait0 wait1
        local -a f0 f1 names
        c0=$(count "$name") || return 1
        read -r b _ d0 <<<"$(sock_stat "$rx_port")"
        tick0=$(cpu_ticks "${rx_pids[@]}")
        read -r tot0 idle0 <<<"$(cpu_stat "$rx_cpu")"
        wait0=$(run_wait_us "${rx_pids[@]}")
        t0=$(now_us)
        if ! generate -p "$rx_port" -r "$rate" -d "$seconds"; then
                say "$name: $trapgen failed at $rate/s"
                return 1
        fi
        out=$(<"$tmp/trapgen.out")
        t_end=$(now_us)
        # Over the burst only: while draining the receiver idles, and others
        # may use the CPU without taking anything from it.
        read -r tot1 idle1 <<<"$(cpu_stat "$rx_cpu")"
        tickb=$(cpu_ticks "${rx_pids[@]}")
        for kv in $out; do
                case $kv in
                sent=*) sent=${kv#sent=} ;;
                rate=*) achieved=${kv#rate=} ;;
                errors=*) errors=${kv#errors=} ;;
                esac
        done
        wait_done "$name" "$t_end" || return 1
        c1=$done_count
        if has "${name}_verify" && ! "${name}_verify" "$c1"; then
                say "$name: the burst at $rate/s was not processed through the whole path"
                return 1
        fi
        read -r b _ d1 <<<"$(sock_stat "$rx_port")"
        tick1=$(cpu_ticks "${rx_pids[@]}")
        wait1=$(run_wait_us "${rx_pids[@]}")
        # What else ran on the receiver's CPU during the burst: busy time not
        # spent by the receiver (other programs on a shared machine,
        # interrupts).
        others=$(((tot1 - tot0 - (idle1 - idle0) - (tickb - tick0)) * 100 / (tot1 - tot0 > 0 ? tot1 - tot0 : 1)))
        ((others < 0)) && others=0
        read -ra f0 <<<"$c0"
        read -ra f1 <<<"$c1"
        proc=$((f1[0] - f0[0]))
        drops=$((d1 - d0))
        local fields_var=${name}_fields
        read -ra names <<<"${!fields_var}"
        for ((i = 1; i < ${#f1[@]}; i++)); do
                extra+=", ${names[i]:-field$i} +$((f1[i] - f0[i]))"
        done
        if ! awk -v a="$achieved" -v r="$rate" 'BEGIN { exit !(a >= 0.98 * r) }' ||
                [ "$sent" != $((rate * seconds)) ]; then
                say "$name: the generator sent $sent at $achieved/s for a target of $rate/s ($errors send errors): it cannot hold this rate here"
                return 2
        fi
        if ((proc > sent)); then
                say "$name: processed $proc traps but $sent were sent: something else is sending to port $rx_port"
                return 1
        fi
        cpu=$(awk -v t="$((tick1 - tick0))" -v hz="$hz" -v n="$proc" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else printf "-" }')
        loss=$(awk -v s="$sent" -v p="$proc" 'BEGIN { l = (s - p) * 100 / s
                if (l == 0) printf "0"; else if (l < 0.01) printf "%.4f", l; else printf "%.2f", l }')
        r_sent[$rate]=$sent
        r_loss[$rate]=$loss
        r_zero[$rate]=0
        [ "$proc" = "$sent" ] && [ "$drops" = 0 ] && r_zero[$rate]=1
        [ "${r_zero[$rate]}" = 0 ] && ((others > others_max)) && others_max=$others
        r_drain[$rate]=$((done_us - t_end))
        ((r_drain[$rate] < 0)) && r_drain[$rate]=0
        r_tput[$rate]=$(awk -v p="$proc" -v us="$(((done_us > t_end ? done_us : t_end) - t0))" 'BEGIN { printf "%d", p * 1e6 / us }')
        say "$(printf '%-9s %7s/s: sent %8s (%.0f/s), processed %8s, loss %6s %%, socket drops %7s, drain %6ss, %5s µs CPU/trap, others %2s%% of CPU %s in the burst, waited %5s ms for it%s' \
                "$name" "$rate" "$sent" "$achieved" "$proc" "$loss" "$drops" "$(us_to_s "${r_drain[$rate]}")" "$cpu" \
                "$others" "$rx_cpu" "$(((wait1 - wait0) / 1000))" "$extra")"
        has "${name}_reset" && "${name}_reset"
        return 0
}

# ------------------------------------------------------------ a receiver ----

unavailable_all() {
        local label=$1 n
        for n in traps.zero_loss "traps.loss@$ref_rate" traps.drain traps.throughput; do
                echo "bench: $n$label unavailable"
        done
}

# probe NAME: one trap through the whole path (also the warm-up), decoded
# as sent; then the logs are reset.
probe() {
        local name=$1 c0 c i
        c0=$(count "$name") || {
                say "$name: cannot read its counters"
                return 1
        }
        generate -p "$rx_port" -n 1 || return 1
        for ((i = 0; i < 150; i++)); do
                c=$(count "$name") || c=$c0
                ((${c%% *} > ${c0%% *})) && break
                sleep 0.1
        done
        if ((${c%% *} <= ${c0%% *})); then
                say "$name: the first trap was not processed within 15 s"
                has "${name}_verify" && "${name}_verify" "$c"
                return 1
        fi
        "${name}_check" || return 1
        has "${name}_reset" && "${name}_reset"
        return 0
}

# measure NAME LABEL: the ladder, the reference rate, the bisection; prints
# the figures. Returns 1 when any figure could not be measured.
measure() {
        local name=$1 label=$2 r rc zl="" hi="" nlossy=0 lo mid unit i tput=0 ok=0 capped=""
        r_sent=() r_loss=() r_zero=() r_drain=() r_tput=() r_grid=()
        measured=0
        for r in "${rates[@]}"; do
                # Past the loss curve only the reference rate is still wanted.
                if ((nlossy >= curve)) && [ "$r" != "$ref_rate" ]; then
                        if [ -z "${r_sent[$ref_rate]:-}" ] && ((r < ref_rate)); then
                                continue
                        fi
                        break
                fi
                step "$name" "$r"
                rc=$?
                [ "$rc" = 1 ] && return 1
                if [ "$rc" = 2 ]; then
                        capped=$r
                        break
                fi
                r_grid[$r]=1
                if [ "${r_zero[$r]}" = 1 ]; then
                        [ -z "$hi" ] && zl=$r
                else
                        [ -z "$hi" ] && hi=$r
                        nlossy=$((nlossy + 1))
                fi
        done
        if [ -z "${r_sent[$ref_rate]:-}" ] && [ -z "$capped" ]; then
                step "$name" "$ref_rate"
                rc=$?
                [ "$rc" = 1 ] && return 1
                [ "$rc" = 2 ] && capped=$ref_rate
        fi
        if [ -n "$hi" ]; then
                lo=${zl:-0}
                for ((i = 0; i < bisect; i++)); do
                        # Rounded to two significant digits of the gap.
                        unit=1
                        while ((unit * 100 <= hi - lo)); do unit=$((unit * 10)); done
                        mid=$((((lo + hi) / 2 + unit / 2) / unit * unit))
                        ((mid > lo && mid < hi)) || break
                        step "$name" "$mid"
                        rc=$?
                        [ "$rc" = 1 ] && return 1
                        [ "$rc" = 2 ] && break
                        if [ "${r_zero[$mid]}" = 1 ]; then lo=$mid; else hi=$mid; fi
                done
                ((lo > 0)) && zl=$lo
        fi

        measured=1
        if [ -n "$zl" ]; then
                echo "bench: traps.zero_loss$label $zl traps/s"
                if [ -z "$hi" ]; then
                        say "$name: no loss at any rate tried (${capped:+the generator could not send $capped/s; }up to $zl/s):" \
                                "traps.zero_loss$label is a lower bound"
                fi
        else
                echo "bench: traps.zero_loss$label unavailable"
                say "$name: traps were lost even at ${hi}/s, the lowest rate tried"
                ok=1
        fi
        for r in $(printf '%s\n' "${!r_grid[@]}" | sort -n); do
                if { [ -n "$zl" ] && ((r > zl)); } || [ -z "$zl" ] || [ "$r" = "$ref_rate" ]; then
                        echo "bench: traps.loss@$r$label ${r_loss[$r]} %"
                fi
        done
        if [ -n "${r_sent[$ref_rate]:-}" ]; then
                [ -n "${r_grid[$ref_rate]:-}" ] || echo "bench: traps.loss@$ref_rate$label ${r_loss[$ref_rate]} %"
                echo "bench: traps.drain$label $(us_to_s "${r_drain[$ref_rate]}") s"
        else
                echo "bench: traps.loss@$ref_rate$label unavailable"
                echo "bench: traps.drain$label unavailable"
                say "$name: the generator could not send $ref_rate traps/s here"
                ok=1
        fi
        for r in "${!r_tput[@]}"; do
                ((r_tput[$r] > tput)) && tput=${r_tput[$r]}
        done
        echo "bench: traps.throughput$label $tput traps/s"
        return $ok
}

# run_receiver NAME LABEL: start, probe, measure, stop.
run_receiver() {
        local name=$1 label=$2 n0=${#started[@]} rc=1 t0
        t0=$(now_us)
        rx_port="" rx_pids=() others_max=0 measured=0
        say "--- $name${label:+ $label}"
        if "${name}_start" && probe "$name"; then
                measure "$name" "$label"
                rc=$?
                # a step that failed ends the receiver before any figure
                [ "$measured" = 0 ] && unavailable_all "$label"
                has "${name}_report" && "${name}_report"
        else
                unavailable_all "$label"
                has "${name}_fail_log" && "${name}_fail_log"
        fi
        if ((others_max >= 10)); then
                say "$name: warning: other processes took up to $others_max% of CPU $rx_cpu during a burst with" \
                        "loss; its figures are lower than on an otherwise idle machine"
                warned+=("$name")
        fi
        if [ "$rc" != 0 ]; then
                local p
                for p in "${rx_pids[@]}"; do
                        kill -0 "$p" 2>/dev/null || say "$name: process $p is no longer running"
                done
                say "$name: FAILED (figures above marked unavailable or missing)"
                status=1
                failed+=("$name")
        fi
        stop_pids "${started[@]:n0}"
        started=("${started[@]:0:n0}")
        say "$name: done in $(us_to_s $(($(now_us) - t0)))s"
}

# -------------------------------------------------------------------- main ----

if ! taskset -c "$gen_cpu,$rx_cpu" true 2>/dev/null; then
        say "needs CPUs $gen_cpu and $rx_cpu (this machine: $(nproc) usable)"
        for n in "${only[@]}"; do
                case $n in agent) unavailable_all "" ;; snmptrapd) unavailable_all "[snmptrapd]" ;;
                snmptt) unavailable_all "[snmptrapd+snmptt]" ;; esac
        done
        exit 1
fi
if [ ! -x "$trapgen" ]; then
        say "$trapgen is missing (make $build/bench/trapgen)"
        for n in "${only[@]}"; do
                case $n in agent) unavailable_all "" ;; snmptrapd) unavailable_all "[snmptrapd]" ;;
                snmptt) unavailable_all "[snmptrapd+snmptt]" ;; esac
        done
        exit 1
fi

# This script and its helpers (polls, python, the stub) share the
# generator's CPU, so that the receiver's CPU runs the receiver alone.
taskset -pc "$gen_cpu" $$ >/dev/null

t_start=$(now_us)
say "generator on CPU $gen_cpu, receivers on CPU $rx_cpu, both at niceness $prio; bursts of ${seconds}s at ${rates[*]} traps/s;" \
        "reference load $ref_rate/s; net.core.rmem_default $(cat /proc/sys/net/core/rmem_default)," \
        "rmem_max $(cat /proc/sys/net/core/rmem_max)"
for n in "${only[@]}"; do
        case $n in
        agent) run_receiver agent "" ;;
        snmptrapd) run_receiver snmptrapd "[snmptrapd]" ;;
        snmptt) run_receiver snmptt "[snmptrapd+snmptt]" ;;
        esac
done
say "total $(us_to_s $(($(now_us) - t_start)))s"
if [ "${#warned[@]}" -gt 0 ]; then
        say "warning: CPU $rx_cpu was shared with other processes while measuring: ${warned[*]}"
fi
if [ "$status" != 0 ]; then
        say "failed: ${failed[*]}"
fi
exit "$status"
