#!/usr/bin/env bash
# bench/run.sh: side-by-side MQTT benchmark of ferroboard (SQLite, PostgreSQL) and Mosquitto.
#
# Builds the release binaries, starts ferroboard on a fresh SQLite file, then on a fresh
# PostgreSQL database, runs the loadgen scenarios against each and against the Mosquitto
# already listening on 127.0.0.1:1883, prints the RESULT lines side by side and stops
# everything it started. See bench/README.md. Knobs (environment):
#   DEVICES=1000 DURATION=10 WARMUP=2 THREADS=1 INFLIGHT=1 KEYS=3 IDLE_DEVICES=10000
#   SCENARIOS="qos1 qos0 idle"   TARGETS="sqlite postgres mosquitto"
#   MQTT_PORT=18830 HTTP_PORT=18080 MOSQUITTO_PORT=1883
#   PGHOST=127.0.0.1 PGUSER=postgres   (createdb/dropdb; the URL is postgres://$PGUSER@$PGHOST/...)
#   SKIP_BUILD=1 (use the binaries already built)
#   CARGO_TARGET_DIR (honoured: binaries are taken from $CARGO_TARGET_DIR/release)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DEVICES=${DEVICES:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-1}
INFLIGHT=${INFLIGHT:-1}
KEYS=${KEYS:-3}
IDLE_DEVICES=${IDLE_DEVICES:-10000}
SCENARIOS=${SCENARIOS:-qos1 qos0 idle}
TARGETS=${TARGETS:-sqlite postgres mosquitto}
MQTT_PORT=${MQTT_PORT:-18830}
HTTP_PORT=${HTTP_PORT:-18080}
MOSQUITTO_PORT=${MOSQUITTO_PORT:-1883}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-bench-admin-password}
PREFIX=bench-

WORK=$(mktemp -d /tmp/fb-bench.XXXXXX)
RESULTS="$WORK/results.txt"
: >"$RESULTS"
FB_PID=""
PG_DB=""
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOADGEN=$TARGET_DIR/release/loadgen
FERROBOARD=$TARGET_DIR/release/ferroboard

log() { printf '\n### %s\n' "$*" >&2; }
start_ferroboard() { # DATABASE_URL
    fb_start "$1" "$WORK/ferroboard.log"
    echo "ferroboard pid $FB_PID on 127.0.0.1:$MQTT_PORT ($1)" >&2
}
stop_ferroboard() { fb_stop; }

cleanup() {
    stop_ferroboard
    if [[ -n "$PG_DB" ]]; then
        dropdb -h "$PGHOST" -U "$PGUSER" --if-exists "$PG_DB" || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# scenario_args SCENARIO: the loadgen flags of one scenario.
scenario_args() {
    case $1 in
        qos1) echo --devices "$DEVICES" --qos 1 --keys "$KEYS" --inflight "$INFLIGHT" --warmup "$WARMUP" --duration "$DURATION" ;;
        qos0) echo --devices "$DEVICES" --qos 0 --keys "$KEYS" --warmup "$WARMUP" --duration "$DURATION" ;;
        idle) echo --devices "$IDLE_DEVICES" --idle --duration "$DURATION" ;;
        *)
            echo "unknown scenario $1" >&2
            return 2
            ;;
    esac
}

# run_loadgen LABEL PORT PID TOPIC SCENARIO: one loadgen run; its RESULT line goes to $RESULTS.
run_loadgen() {
    local label=$1 port=$2 pid=$3 topic=$4 scenario=$5 extra
    extra=$(scenario_args "$scenario")
    # shellcheck disable=SC2206 # the scenario flags are plain words
    local args=(--port "$port" --server-pid "$pid" --topic "$topic" --token-prefix "$PREFIX"
        --threads "$THREADS" --label "$label/$scenario" $extra)
    log "$label/$scenario: loadgen ${args[*]}"
    # A failed scenario (exit 1/2) still prints its RESULT line; keep going.
    "$LOADGEN" "${args[@]}" | tee -a "$WORK/loadgen.out" | grep '^RESULT ' >>"$RESULTS" || true
}

# run_ferroboard LABEL DATABASE_URL: creates the devices, then runs every scenario on a freshly
# started server, so that RSS figures and backlogs of one scenario do not leak into the next.
run_ferroboard() {
    local label=$1 url=$2 scenario n=$DEVICES
    if [[ " $SCENARIOS " == *" idle "* ]] && ((IDLE_DEVICES > n)); then n=$IDLE_DEVICES; fi
    log "$label: first start on $url (creates the tenant), creating $n devices"
    start_ferroboard "$url"
    "$LOADGEN" --create-devices "$url" --create-only --devices "$n" --token-prefix "$PREFIX"
    stop_ferroboard
    for scenario in $SCENARIOS; do
        scenario_args "$scenario" >/dev/null
        start_ferroboard "$url"
        run_loadgen "$label" "$MQTT_PORT" "$FB_PID" v1/devices/me/telemetry "$scenario"
        stop_ferroboard
    done
}

need=$((IDLE_DEVICES + 1024))
if (($(ulimit -n) < need)); then
    ulimit -n "$need" 2>/dev/null || echo "warning: cannot raise ulimit -n to $need (hard limit $(ulimit -Hn)); idle runs may fail" >&2
fi

if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    cargo build --release --bin ferroboard --bin loadgen
fi

for target in $TARGETS; do
    case $target in
        sqlite)
            run_ferroboard ferroboard-sqlite "sqlite://$WORK/ferroboard.db"
            ;;
        postgres)
            PG_DB=fb_bench_$$
            createdb -h "$PGHOST" -U "$PGUSER" "$PG_DB"
            run_ferroboard ferroboard-postgres "postgres://$PGUSER@$PGHOST/$PG_DB"
            dropdb -h "$PGHOST" -U "$PGUSER" --if-exists "$PG_DB"
            PG_DB=""
            ;;
        mosquitto)
            mpid=$(pgrep -o -x mosquitto || true)
            if [[ -z "$mpid" ]] || port_free "$MOSQUITTO_PORT"; then
                echo "no mosquitto listening on 127.0.0.1:$MOSQUITTO_PORT; skipped" >&2
                continue
            fi
            # Anonymous clients; nobody subscribes to bench/nobody, so the broker only acks.
            # Mosquitto is not restarted: its RSS after earlier runs reflects reused memory.
            for scenario in $SCENARIOS; do
                run_loadgen mosquitto "$MOSQUITTO_PORT" "$mpid" bench/nobody "$scenario"
            done
            ;;
        *)
            echo "unknown target $target" >&2
            exit 2
            ;;
    esac
done

log "results (full output in $WORK)"
if command -v jq >/dev/null; then
    {
        echo "label connected msg/s p50_ms p90_ms p99_ms max_ms errors rss_max_MiB idle_KiB/conn"
        sed 's/^RESULT //' "$RESULTS" | jq -r '[
            .label,
            "\(.connected)/\(.devices)",
            (if .mode == "idle" then "-" else (.msg_per_s | floor) end),
            (.latency_ms.p50 // "-"), (.latency_ms.p90 // "-"), (.latency_ms.p99 // "-"), (.latency_ms.max // "-"),
            (.publish_errors + .disconnects + .connect_failures),
            (if .server_rss_kb.max then (.server_rss_kb.max / 1024 * 10 | floor) / 10 else "-" end),
            (.server_rss_kb.per_connection_delta_kb // "-")
        ] | map(tostring) | join(" ")'
    } | if command -v column >/dev/null; then column -t; else cat; fi
fi
echo
cat "$RESULTS"
