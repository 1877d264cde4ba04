#!/bin/bash
# Short libFuzzer runs of every target over a copy of its seed corpus
# (tests/fuzz/corpus/NAME/), so `make test` catches crashes on known-shaped
# input and a little beyond. FUZZ_SECONDS sets the time per target.
set -u
secs=${FUZZ_SECONDS:-15}
passed=0
failed=0
for bin in "$@"; do
        name=$(basename "$bin")
        work=$(mktemp -d)
        mkdir -p "$work/corpus"
        if [ -d "tests/fuzz/corpus/$name" ]; then
                cp -r "tests/fuzz/corpus/$name/." "$work/corpus/"
        fi
        if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$work/" \
                "$work/corpus" >"$work/log" 2>&1; then
                echo "fuzz: $name ok ($(grep -c . "$work/log") log lines, $(ls "$work/corpus" | wc -l) corpus files)"
                passed=$((passed + 1))
        else
                echo "fuzz: $name FAILED; last lines:"
                tail -30 "$work/log"
                mkdir -p build/fuzz-artifacts
                cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* build/fuzz-artifacts/ 2>/dev/null
                failed=$((failed + 1))
        fi
        rm -rf "$work"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
