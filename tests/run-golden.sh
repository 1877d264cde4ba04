#!/bin/sh
# Golden tests for the rules language: for each tests/rules/NNN-name.rules,
# "AGENT --check-rules FILE" (stdout and stderr, then "exit: N") must equal
# NNN-name.out. For every file that checks clean, the normalised output must
# check clean again and print exactly the same (the round trip).
#
# usage: tests/run-golden.sh [--update] AGENT_BINARY
#   --update  rewrite the .out files from the current output (review the diff!)
set -u

update=0
if [ "${1:-}" = "--update" ]; then
        update=1
        shift
fi
if [ $# -ne 1 ]; then
        echo "usage: $0 [--update] AGENT_BINARY" >&2
        exit 2
fi
case "$1" in
/*) agent="$1" ;;
*) agent="$(pwd)/$1" ;;
esac
if [ ! -x "$agent" ]; then
        echo "golden: $agent is not an executable" >&2
        exit 2
fi

dir="$(cd "$(dirname "$0")/rules" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM

passed=0
failed=0
cd "$dir" || exit 2
for rules in [0-9][0-9][0-9]-*.rules; do
        [ -e "$rules" ] || continue
        name="${rules%.rules}"
        out="$tmp/$name.out"
        # file names in diagnostics are relative to tests/rules
        "$agent" --check-rules "$rules" >"$out" 2>&1
        echo "exit: $?" >>"$out"
        if [ "$update" = 1 ]; then
                cp "$out" "$name.out"
        fi
        ok=1
        if [ ! -f "$name.out" ]; then
                echo "golden: $name: no $name.out (run with --update)"
                ok=0
        elif ! diff -u "$name.out" "$out" >"$tmp/$name.diff"; then
                echo "golden: $name: output differs:"
                cat "$tmp/$name.diff"
                ok=0
        fi
        # round trip: the normalised form parses again to the same text
        if [ "$ok" = 1 ] && tail -n 1 "$out" | grep -qx "exit: 0"; then
                "$agent" --check-rules "$rules" >"$tmp/$name.norm.rules" 2>/dev/null
                if ! (cd "$tmp" && "$agent" --check-rules "$name.norm.rules" >"$name.again" 2>"$name.again.err"); then
                        echo "golden: $name: the normalised form does not check:"
                        cat "$tmp/$name.again.err"
                        ok=0
                elif ! diff -u "$tmp/$name.norm.rules" "$tmp/$name.again" >"$tmp/$name.rt.diff"; then
                        echo "golden: $name: the normalised form changes when parsed again:"
                        cat "$tmp/$name.rt.diff"
                        ok=0
                fi
        fi
        if [ "$ok" = 1 ]; then
                passed=$((passed + 1))
        else
                failed=$((failed + 1))
        fi
done

echo "golden: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
