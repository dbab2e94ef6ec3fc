#!/usr/bin/env bash
# bench/cluster.sh: two ferroboard nodes sharing PostgreSQL and a Redis bus, measured together.
#
# Starts its own redis-server on a free port, creates a fresh PostgreSQL database, starts node A
# and node B (release build) on it and runs:
#   fanout  one shared-attribute value saved over REST for each of $DEVICES devices (half
#           connected to each node, every REST call on the node that does NOT hold the device),
#           timed until every device received the push; RSS of both nodes during it.
#   rpc     two-way RPC round trips REST -> device -> REST (bench/rpc_latency.py): REST and
#           device on node A (local), then REST on A with the device on B (cross-node).
#   ws      PUBLISH -> WebSocket update latency (bench/ws_latency.py, $WS_COUNT values): device and
#           WebSocket on node A, then the device on node A and the WebSocket on node B.
# Prints the RESULT / summary lines, stops everything it started and exits non-zero when a
# scenario failed (a fan-out where not every device subscribed and received the value counts as
# failed). Knobs (environment):
#   DEVICES=10000 CONCURRENCY=64 RPC_CALLS=300 WS_COUNT=500 SCENARIOS="fanout rpc" REDIS_PORT=16399
#   MQTT_PORTS="18841 18842" HTTP_PORTS="18081 18082" PGHOST=127.0.0.1 PGUSER=postgres
#   SKIP_BUILD=1 (use the binaries already built)   CARGO_TARGET_DIR (honoured)
#   PYTHON (with requests and paho-mqtt; default: the acceptance virtualenv's, from tests/acceptance/venv)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DEVICES=${DEVICES:-10000}
CONCURRENCY=${CONCURRENCY:-64}
RPC_CALLS=${RPC_CALLS:-300}
WS_COUNT=${WS_COUNT:-500}
SCENARIOS=${SCENARIOS:-fanout rpc}
REDIS_PORT=${REDIS_PORT:-16399}
read -r -a MQTT_PORTS <<<"${MQTT_PORTS:-18841 18842}"
read -r -a HTTP_PORTS <<<"${HTTP_PORTS:-18081 18082}"
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
# The acceptance suite's virtualenv (created on first use) has requests and both paho packages.
if [[ -z "${PYTHON:-}" ]]; then
    VENV=$(tests/acceptance/venv)
    PYTHON=$VENV/bin/python
    export ACCEPTANCE_UPSTREAM_PAHO=$VENV/upstream-paho
fi
ADMIN_PASSWORD=bench-admin-password
PREFIX=fanout-
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOADGEN=$TARGET_DIR/release/loadgen
FERROBOARD=$TARGET_DIR/release/ferroboard

WORK=$(mktemp -d /tmp/fb-cluster.XXXXXX)
PG_DB="fb_cluster_$$"
URL="postgres://$PGUSER@$PGHOST/$PG_DB"
PIDS=()
REDIS_PID=""

log() { echo "[$(date +%T)] $*" >&2; }

redis_up() { redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n "$REDIS_PID" ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    dropdb -h "$PGHOST" -U "$PGUSER" --if-exists "$PG_DB" 2>/dev/null || true
    log "logs kept in $WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_node() { # INDEX
    local i=$1 name
    name=node-$((i + 1))
    for port in "${MQTT_PORTS[$i]}" "${HTTP_PORTS[$i]}"; do
        port_free "$port" || { echo "port $port is in use (a node left over from an earlier run?)" >&2; exit 1; }
    done
    MQTT_PORT=${MQTT_PORTS[$i]} HTTP_PORT=${HTTP_PORTS[$i]} fb_start "$URL" "$WORK/$name.log" \
        FERROBOARD_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" FERROBOARD_NODE_ID="$name"
    PIDS+=("$FB_PID")
    log "$name pid ${PIDS[-1]}: MQTT ${MQTT_PORTS[$i]}, HTTP ${HTTP_PORTS[$i]}"
}

if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    cargo build --release --bin ferroboard --bin loadgen
fi
need=$((DEVICES + 1024))
if (($(ulimit -n) < need)); then
    ulimit -n "$need" 2>/dev/null || echo "warning: cannot raise ulimit -n to $need; connections may fail" >&2
fi

port_free "$REDIS_PORT" || { echo "port $REDIS_PORT is in use; set REDIS_PORT" >&2; exit 1; }
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" &
REDIS_PID=$!
wait_until 10 "redis-server on $REDIS_PORT" redis_up
createdb -h "$PGHOST" -U "$PGUSER" "$PG_DB"

start_node 0
"$LOADGEN" --create-devices "$URL" --create-only --devices "$DEVICES" --token-prefix "$PREFIX"
start_node 1

failed=()
for scenario in $SCENARIOS; do
    case $scenario in
        fanout)
            log "fanout: $DEVICES devices over both nodes"
            "$LOADGEN" --port "$(IFS=,; echo "${MQTT_PORTS[*]}")" \
                --fanout-http "http://127.0.0.1:${HTTP_PORTS[0]},http://127.0.0.1:${HTTP_PORTS[1]}" \
                --password "$ADMIN_PASSWORD" --devices "$DEVICES" --token-prefix "$PREFIX" \
                --fanout-concurrency "$CONCURRENCY" --server-pid "$(IFS=,; echo "${PIDS[*]}")" \
                --label "cluster-fanout" || failed+=("fanout (exit $?)")
            ;;
        rpc)
            log "rpc: $RPC_CALLS two-way calls, device on the REST node"
            "$PYTHON" bench/rpc_latency.py --http "http://127.0.0.1:${HTTP_PORTS[0]}" \
                --mqtt-port "${MQTT_PORTS[0]}" --password "$ADMIN_PASSWORD" --calls "$RPC_CALLS" || failed+=("rpc local (exit $?)")
            log "rpc: $RPC_CALLS two-way calls, REST on node A, device on node B"
            "$PYTHON" bench/rpc_latency.py --http "http://127.0.0.1:${HTTP_PORTS[0]}" \
                --mqtt-port "${MQTT_PORTS[0]}" --device-mqtt-port "${MQTT_PORTS[1]}" \
                --password "$ADMIN_PASSWORD" --calls "$RPC_CALLS" || failed+=("rpc cross-node (exit $?)")
            ;;
        ws)
            for ws_port in "${HTTP_PORTS[0]}" "${HTTP_PORTS[1]}"; do
                log "ws: $WS_COUNT values published on node A, WebSocket on :$ws_port"
                "$PYTHON" bench/ws_latency.py --http "http://127.0.0.1:${HTTP_PORTS[0]}" \
                    --ws-http "http://127.0.0.1:$ws_port" --mqtt-port "${MQTT_PORTS[0]}" \
                    --password "$ADMIN_PASSWORD" latency --count "$WS_COUNT" || failed+=("ws via :$ws_port (exit $?)")
            done
            ;;
        *)
            echo "unknown scenario $scenario" >&2
            exit 2
            ;;
    esac
done
if ((${#failed[@]})); then
    echo "failed scenarios: ${failed[*]}" >&2
    exit 1
fi
