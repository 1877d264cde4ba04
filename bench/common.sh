# bench/common.sh: what the bench scripts share, sourced by them.
#
# The sourcing script sets $tmp (its private temporary directory), an array
# started=() of every process it starts, and KEEP_VAR (the name of its
# "keep the temporary directory" variable); it defines say(). Sourcing
# installs the exit traps that stop every started process and remove $tmp.

# stop_pids PID...: TERM, up to 3 s grace, then KILL; reaps them.
stop_pids() {
        local pid i alive
        [ $# -gt 0 ] || return 0
        kill -TERM "$@" 2>/dev/null
        for ((i = 0; i < 30; i++)); do
                alive=0
                for pid in "$@"; do
                        kill -0 "$pid" 2>/dev/null && alive=1
                done
                [ "$alive" = 0 ] && break
                sleep 0.1
        done
        kill -KILL "$@" 2>/dev/null
        for pid in "$@"; do
                wait "$pid" 2>/dev/null
        done
        return 0
}

cleanup() {
        trap - EXIT INT TERM HUP
        stop_pids "${started[@]}"
        if [ "${!KEEP_VAR:-0}" = 1 ]; then
                say "kept $tmp"
        else
                rm -rf "$tmp"
        fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
