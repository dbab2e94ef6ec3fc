# bench/lib.sh: shell helpers shared by the benchmark scripts (sourced, not run).

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 200 ms until it succeeds or the
# deadline passes (then fails).
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "timed out after ${limit}s waiting for: $what" >&2
            return 1
        fi
        sleep 0.2
    done
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
