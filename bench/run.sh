#!/bin/bash
# bench/run.sh: the driver behind `make bench`. Runs every build/bench/bench_*
# binary in name order, then bench/idle.sh, bench/traps.sh (which drives
# build/bench/trapgen), bench/delivery.py, bench/heartbeat.sh and bench/process.sh. Each part prints its own
# "bench: NAME VALUE UNIT" lines on stdout; they are passed through as they
# come. A part that fails does not stop the others; the exit status is 1 if
# any part failed (the failed parts are listed on stderr), else 0.
# bench/README.md says how each figure is measured.
set -u

cd "$(dirname "$0")/.." || exit 1

failed=()

run_part() {
        local rc
        echo "bench/run.sh: running $1" >&2
        "$@"
        rc=$?
        if [ "$rc" != 0 ]; then
                echo "bench/run.sh: $1 failed (exit status $rc)" >&2
                failed+=("$1")
        fi
}

for b in build/bench/bench_*; do
        if [ -f "$b" ] && [ -x "$b" ]; then
                run_part "$b"
        fi
done
run_part bench/idle.sh
run_part bench/traps.sh
run_part bench/delivery.py
run_part bench/process.sh
run_part bench/heartbeat.sh

if [ "${#failed[@]}" -gt 0 ]; then
        echo "bench/run.sh: failed: ${failed[*]}" >&2
        exit 1
fi
exit 0
