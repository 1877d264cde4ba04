#!/bin/bash
# The whole test suite behind `make test`: format check, unit tests, the same
# under ASan+UBSan, golden rules tests, short fuzz runs, integration tests.
# Every stage runs even if an earlier one failed; the last line is the total
# "N passed, N failed" (N skipped) that CI reads.
set -u
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
passed=0
failed=0
skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Adds the counts of a "...: N passed, M failed[, K skipped]" line from $log.
count() {
        local stage=$1 rc=$2 line p f s
        line=$(grep -E '[0-9]+ passed|[0-9]+ failed|[0-9]+ error' "$log" | tail -1)
        p=$(printf '%s' "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || true)
        f=$(printf '%s' "$line" | grep -oE '[0-9]+ (failed|error|errors)' | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
        s=$(printf '%s' "$line" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || true)
        p=${p:-0}
        s=${s:-0}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
                f=1
        fi
        echo "== $stage: $p passed, $f failed, $s skipped"
        passed=$((passed + p))
        failed=$((failed + f))
        skipped=$((skipped + s))
}

stage() {
        local name=$1
        shift
        echo "== $name"
        "$@" 2>&1 | tee "$log"
        count "$name" "${PIPESTATUS[0]}"
}

check_format() {
        if $MAKE --no-print-directory check-format; then echo "format: 1 passed, 0 failed"; else echo "format: 0 passed, 1 failed"; return 1; fi
}

stage format check_format
stage unit $MAKE --no-print-directory unit
stage unit-asan $MAKE --no-print-directory unit-asan
stage golden $MAKE --no-print-directory golden
stage fuzz $MAKE --no-print-directory fuzz-smoke
stage integration $MAKE --no-print-directory integration

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
