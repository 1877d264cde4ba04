#!/bin/bash
# The embedded default: weibao-stub on 127.0.0.1:8080 with its SQLite file in
# var/, and weibao-agent with examples/agent.conf against it. The agent runs in
# a private mount namespace whose /sys/class/hwmon is a simulated sensor chip
# this script controls, so the demo behaves the same on a laptop, a VM without
# sensors or a server: the simulated CPU heats past its critical threshold,
# the fault becomes a case on the stub, it cools down and the case is told
# "fault cleared". Ctrl-C stops both programs.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
var=$root/var
hw=$var/demo-hwmon/hwmon0
stub_pid=
agent_pid=

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
        trap - INT TERM EXIT
        say "stopping"
        [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
        [ -n "$stub_pid" ] && kill -TERM "$stub_pid" 2>/dev/null && wait "$stub_pid" 2>/dev/null || true
        echo "agent and stub stopped; cases are kept in var/stub.db"
        exit 0
}
trap cleanup INT TERM EXIT

mkdir -p "$var/state" "$hw"
if [ ! -s "$var/token" ]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$var/token")
fi
chmod 600 "$var/token"
token=$(cat "$var/token")

# The simulated chip: a CPU package sensor with max 80 °C and critical 95 °C.
echo "demo_cpu" >"$hw/name"
echo "Package id 0" >"$hw/temp1_label"
echo 80000 >"$hw/temp1_max"
echo 95000 >"$hw/temp1_crit"
echo 0 >"$hw/temp1_crit_alarm"
echo 45000 >"$hw/temp1_input"
set_temp() { echo "$(($1 * 1000))" >"$hw/temp1_input.new" && mv "$hw/temp1_input.new" "$hw/temp1_input"; }

if ss -ltn 2>/dev/null | grep -q '127.0.0.1:8080 '; then
        echo "demo: 127.0.0.1:8080 is already in use (another demo running?); stop it first" >&2
        exit 1
fi

# Each run starts from an empty case database, so the cases shown are this
# run's; the previous run's is kept as var/stub.db.previous.
for f in "$var/stub.db" "$var/stub.db-wal" "$var/stub.db-shm"; do
        [ -e "$f" ] && mv -f "$f" "${f/stub.db/stub.db.previous}"
done
rm -rf "$var/state"
mkdir -p "$var/state"
say "starting weibao-stub on 127.0.0.1:8080 (database var/stub.db)"
echo "(its request log goes to var/stub.log)"
build/weibao-stub --listen 127.0.0.1:8080 --db "$var/stub.db" --token-file "$var/token" 2>>"$var/stub.log" &
stub_pid=$!
for _ in $(seq 50); do
        curl -sf http://127.0.0.1:8080/api/v1/health >/dev/null 2>&1 && break
        sleep 0.1
done

say "starting weibao-agent with examples/agent.conf"
echo "This machine's own sensors are hidden from the demo agent: it runs in a private"
echo "mount namespace where /sys/class/hwmon holds one SIMULATED chip, 'demo_cpu',"
echo "whose temperature this script sets (var/demo-hwmon/hwmon0/temp1_input)."
userns=
[ "$(id -u)" = 0 ] || userns=--map-root-user
unshare $userns --mount --propagation private sh -c '
        mount -t tmpfs weibao-demo /sys/class &&
        mkdir /sys/class/hwmon &&
        mount --bind "$1" /sys/class/hwmon &&
        exec "$2" --config "$3"' demo "$var/demo-hwmon" "$root/build/weibao-agent" "$root/examples/agent.conf" &
agent_pid=$!

api() {
        curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:8080/api/v1/$1"
}
cases() {
        api "cases?fault_key=$1"
}
# Prints every case of the fault key with its readings and updates.
show_case() {
        for id in $(cases "$1" | python3 -c 'import json,sys; print(" ".join(str(c["id"]) for c in json.load(sys.stdin)["cases"]))'); do
                api "cases/$id" | python3 -c 'import json,sys
c = json.load(sys.stdin)
print("case %s  %s  %s" % (c["id"], c["level"], c["title"]))
print("  fault key %s, rule %s, occurrences %s, fault active: %s, status: %s" % (c["fault_key"], c["rule"], c["occurrences"], c["fault_active"], c["status"]))
print("  agent: %s on %s (%s, kernel %s)" % (c["agent"]["id"], c["agent"]["hostname"], c["agent"]["os"], c["agent"]["kernel"]))
print("  readings: " + json.dumps(c.get("readings", {}), ensure_ascii=False))
for u in c.get("updates", []):
    what = u.get("message") or u.get("reason") or \
        ("%s occurrences, last seen %s" % (u.get("occurrences"), u.get("last_seen")))
    print("  update %s: %s" % (u.get("type"), what))'
        done
}
key="temp:demo_cpu-virtual-0/Package%20id%200"

sleep 3
build/weibaoctl -s "$var/weibao.sock" status || true

say "heating the simulated CPU: 45 -> 99 °C (critical is 95 °C)"
for t in 50 55 60 65 70 75 80 85 90 95 99; do
        set_temp $t
        printf '  demo_cpu/Package id 0 = %s °C\n' "$t"
        sleep 2
done
say "holding at 99 °C until the rule's 'for 10s' has passed and the case is opened"
for _ in $(seq 30); do
        n=$(cases "$key" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cases"]))' 2>/dev/null || echo 0)
        [ "$n" -gt 0 ] && break
        sleep 1
done
say "the case on the central API (GET /api/v1/cases)"
show_case "$key"
build/weibaoctl -s "$var/weibao.sock" faults || true

say "cooling down to 60 °C; the fault clears after 60 s below critical - 5"
set_temp 80
sleep 2
set_temp 70
sleep 2
set_temp 60
for _ in $(seq 90); do
        active=$(cases "$key" | python3 -c 'import json,sys; c=json.load(sys.stdin)["cases"]; print(c[-1]["fault_active"] if c else "")' 2>/dev/null || true)
        [ "$active" = "False" ] && break
        sleep 1
done
show_case "$key"
if command -v snmptrap >/dev/null; then
        say "a switch reports a broken link: SNMP linkDown for ifIndex 3 (eth2) to 127.0.0.1:1162"
        snmp_key="snmp:link:127.0.0.1:3"
        export MIBS=
        snmptrap -v2c -c public 127.0.0.1:1162 '' 1.3.6.1.6.3.1.1.5.3 \
                1.3.6.1.2.1.2.2.1.1.3 i 3 1.3.6.1.2.1.2.2.1.2.3 s eth2 \
                1.3.6.1.2.1.2.2.1.7.3 i 1 1.3.6.1.2.1.2.2.1.8.3 i 2
        for _ in $(seq 20); do
                n=$(cases "$snmp_key" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cases"]))' 2>/dev/null || echo 0)
                [ "$n" -gt 0 ] && break
                sleep 0.5
        done
        show_case "$snmp_key"
        say "the link comes back: SNMP linkUp for ifIndex 3"
        snmptrap -v2c -c public 127.0.0.1:1162 '' 1.3.6.1.6.3.1.1.5.4 \
                1.3.6.1.2.1.2.2.1.1.3 i 3 1.3.6.1.2.1.2.2.1.8.3 i 1
        sleep 2
        show_case "$snmp_key"
        build/weibaoctl -s "$var/weibao.sock" traps | head -20 || true
else
        say "snmptrap not installed (package snmp): skipping the SNMP part"
fi
say "demo done; agent and stub keep running (weibaoctl -s var/weibao.sock status). Ctrl-C stops both."
wait "$agent_pid"
