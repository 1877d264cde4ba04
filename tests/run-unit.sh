#!/bin/bash
# Runs each cmocka unit-test binary given as argument. Prints each binary's
# output and a closing "unit: N passed, M failed" line (counts are cmocka test
# cases; a binary that dies without a summary counts as one failure).
set -u
passed=0
failed=0
for t in "$@"; do
        out=$("$t" 2>&1)
        rc=$?
        printf '%s\n' "$out"
        p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
        f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
                echo "unit: $t exited with status $rc without a cmocka summary"
                f=1
        fi
        passed=$((passed + p))
        failed=$((failed + f))
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
