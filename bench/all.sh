#!/usr/bin/env bash
# bench/all.sh: every benchmark side by side in one command; writes bench/results/<UTC time>/ with
# results.jsonl (one line per measurement), table.md (median and spread per figure) and plot.png.
#
# Systems (SYSTEMS): ferroboard on SQLite (sqlite) and on PostgreSQL (postgres), Mosquitto (mosquitto,
# no persistence) and rumqttd (rumqttd, when its binary is found: RUMQTTD, PATH or
# /tmp/rumqttd/bin/rumqttd), all driven by the same loadgen. Every measurement runs on a freshly
# started server; per round the systems take turns, the starting one rotating (A B C, B C A, ...).
# Parts (PARTS, in this order):
#   throughput  QoS 1 msg/s (PUBACK after commit on ferroboard), DEVICES devices with INFLIGHT
#               outstanding each, for each of KEYS_LIST keys per message
#   latency     PUBACK latency p50/p99 at fixed open-loop rates RATES (msg/s in total, 3 keys)
#   idle        RSS per idle connection at IDLE_COUNTS connections (capped by `ulimit -n`, see below)
#   rows        ferroboard msg/s (3 keys) as the telemetry table grows: ROWS rows pre-filled in bulk
#               with SQL (generate_series on PostgreSQL, a recursive CTE on SQLite), deleted afterwards
#   start       launch to /api/health/ready UP (polled every 2 ms): fresh database, and restart on a
#               database with devices; Mosquitto/rumqttd: launch to port open
#   cluster     bench/cluster.sh: shared-attribute fan-out to CLUSTER_DEVICES devices over two nodes
#               with Redis, RPC round trips (one node, across nodes), PUBLISH -> WebSocket latency
#               (one node, across nodes)
#   ws          one node: PUBLISH -> WebSocket latency, and WebSocket subscribers served at WS_RATE
#               updates/s (sweep WS_SUBSCRIBERS until delivery drops, lags or a client is closed)
#   tracing     ferroboard (SQLite) QoS 1 msg/s with trace export off and on (OTLP/HTTP to a local
#               sink that discards what it receives), alternating
#   gateway     bench/gateway.sh: one gateway with GW_SUBS devices behind it against GW_SUBS devices
# Knobs (environment; QUICK=1 makes every default small for a short run):
#   PARTS SYSTEMS ROUNDS=3 DEVICES=1000 INFLIGHT=4 WARMUP=3 DURATION=10 KEYS_LIST="1 3"
#   RATES="5000 10000 20000" IDLE_COUNTS="1000 10000 50000" IDLE_SECONDS=5 CONNECT_RATE=4000
#   ROWS="1000000 10000000" (ROWS_BIG=1 appends 50000000)  CLUSTER_DEVICES=10000 RPC_CALLS=300
#   WS_COUNT=500 WS_RATE=1000 WS_SECONDS=10 WS_SUBSCRIBERS=10,25,50,100,200 GW_SUBS=1000
#   PORT_BASE=19500 (uses PORT_BASE..PORT_BASE+40 and +90..+91 for Mosquitto/rumqttd)
#   PGHOST=127.0.0.1 PGUSER=postgres  CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release;
#   build them first: cargo build --release --bins)  PYTHON (default: the acceptance virtualenv's)
#   OUT (default bench/results/<UTC time>)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

if [[ -n "${QUICK:-}" ]]; then
    : "${ROUNDS:=2}" "${DURATION:=4}" "${WARMUP:=2}" "${IDLE_COUNTS:=1000 5000 10000}" "${IDLE_SECONDS:=3}"
    : "${ROWS:=1000000 5000000}" "${CLUSTER_DEVICES:=2000}" "${RPC_CALLS:=100}" "${WS_COUNT:=200}"
    : "${WS_SECONDS:=4}" "${WS_SUBSCRIBERS:=10,25,50}" "${GW_SUBS:=500}" "${GW_SECONDS:=5}"
fi
PARTS=${PARTS:-throughput latency idle rows start cluster ws tracing gateway}
SYSTEMS=${SYSTEMS:-sqlite postgres mosquitto rumqttd}
ROUNDS=${ROUNDS:-3}
DEVICES=${DEVICES:-1000}
INFLIGHT=${INFLIGHT:-4}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-10}
KEYS_LIST=${KEYS_LIST:-1 3}
RATES=${RATES:-5000 10000 20000}
IDLE_COUNTS=${IDLE_COUNTS:-1000 10000 50000}
IDLE_SECONDS=${IDLE_SECONDS:-5}
CONNECT_RATE=${CONNECT_RATE:-4000}
ROWS=${ROWS:-1000000 10000000}
if [[ -n "${ROWS_BIG:-}" ]]; then ROWS="$ROWS 50000000"; fi
CLUSTER_DEVICES=${CLUSTER_DEVICES:-10000}
RPC_CALLS=${RPC_CALLS:-300}
WS_COUNT=${WS_COUNT:-500}
WS_RATE=${WS_RATE:-1000}
WS_SECONDS=${WS_SECONDS:-10}
WS_SUBSCRIBERS=${WS_SUBSCRIBERS:-10,25,50,100,200}
GW_SUBS=${GW_SUBS:-1000}
GW_SECONDS=${GW_SECONDS:-10}
PORT_BASE=${PORT_BASE:-19500}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FERROBOARD=$TARGET_DIR/release/ferroboard
LOADGEN=$TARGET_DIR/release/loadgen
RUMQTTD=${RUMQTTD:-$(command -v rumqttd || echo /tmp/rumqttd/bin/rumqttd)}
ADMIN_PASSWORD=bench-admin-password
PREFIX=bench-
MQTT_PORT=$PORT_BASE
HTTP_PORT=$((PORT_BASE + 1))
OTLP_PORT=$((PORT_BASE + 2))
MOSQUITTO_PORT=$((PORT_BASE + 90))
RUMQTTD_PORT=$((PORT_BASE + 91))
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
# Servers are restarted for every measurement: skip the load balancers' drain window on SIGTERM.
export FERROBOARD_SHUTDOWN_DRAIN_MS=${FERROBOARD_SHUTDOWN_DRAIN_MS:-0}

[[ -x $FERROBOARD && -x $LOADGEN ]] || { echo "build first: cargo build --release --bins (looked in $TARGET_DIR/release)" >&2; exit 2; }
for tool in curl jq psql createdb sqlite3; do
    command -v "$tool" >/dev/null || { echo "bench/all.sh needs $tool" >&2; exit 2; }
done
if [[ -z "${PYTHON:-}" ]]; then
    VENV=$(tests/acceptance/venv)
    PYTHON=$VENV/bin/python
    export ACCEPTANCE_UPSTREAM_PAHO=$VENV/upstream-paho
fi
export PYTHON

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/fb-all.XXXXXX)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
FB_PID="" BROKER_PID="" SINK_PID=""

log() { echo "[$(date -u +%T)] $*" >&2; }

stop_all() {
    fb_stop
    if [[ -n "$BROKER_PID" ]]; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
cleanup() {
    stop_all
    if [[ -n "$SINK_PID" ]]; then kill "$SINK_PID" 2>/dev/null || true; fi
    # db_url runs in command substitutions, so its databases are found by their suffix
    for db in $(psql -h "$PGHOST" -U "$PGUSER" -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'fb\_%\_$$'" 2>/dev/null); do
        dropdb -h "$PGHOST" -U "$PGUSER" --if-exists "$db" 2>/dev/null || true
    done
    rm -f "$WORK"/*.db "$WORK"/*.db-wal "$WORK"/*.db-shm
    log "logs in $WORK; results in $OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- limits: one descriptor per connection in loadgen and in the server (both inherit ours)
IDLE_MAX=$(($(ulimit -Hn) - 1024))
ports=$(awk '{print $2 - $1}' /proc/sys/net/ipv4/ip_local_port_range)
if ((ports - 1000 < IDLE_MAX)); then IDLE_MAX=$((ports - 1000)); fi
IDLE_MAX=$((IDLE_MAX / 1000 * 1000))
idle_counts=()
for n in $IDLE_COUNTS; do
    if ((n > IDLE_MAX)); then
        [[ " $PARTS " != *" idle "* ]] || log "idle: $n connections need $n descriptors in the server and in loadgen (hard ulimit -n is $(ulimit -Hn)) and $n source ports on one address ($ports ephemeral ports); measuring $IDLE_MAX instead"
        n=$IDLE_MAX
    fi
    [[ " ${idle_counts[*]} " == *" $n "* ]] || idle_counts+=("$n")
done
ulimit -n "$(ulimit -Hn)"

systems=()
for s in $SYSTEMS; do
    if [[ $s == rumqttd && ! -x $RUMQTTD ]]; then
        log "rumqttd: no binary at $RUMQTTD (cargo install rumqttd --root /tmp/rumqttd); skipped"
        continue
    fi
    if [[ $s == mosquitto ]] && ! command -v mosquitto >/dev/null; then
        log "mosquitto: not installed; skipped"
        continue
    fi
    systems+=("$s")
done

# --- one measurement's record: the tool's RESULT json plus part, system, param, round and load
# record PART SYSTEM PARAM ROUND JSON
record() {
    jq -c --arg part "$1" --arg system "$2" --arg param "$3" --argjson round "$4" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '. + {part: $part, system: $system, param: $param, round: $round, loadavg: $load}' <<<"$5" >>"$RESULTS"
}

# rotated ROUND SYSTEM...: the systems, starting at the (ROUND-1)-th.
rotated() {
    local r=$1
    shift
    local n=$# i
    for ((i = 0; i < n; i++)); do
        local j=$(((i + r - 1) % n + 1))
        echo "${!j}"
    done
}

# --- databases: one per backend, with the devices every part needs, made on first use
declare -A DB_URL
db_url() { # BACKEND NAME: a fresh database URL
    case $1 in
        sqlite) echo "sqlite://$WORK/$2.db" ;;
        postgres)
            local db=fb_${2}_$$
            createdb -h "$PGHOST" -U "$PGUSER" "$db"
            echo "postgres://$PGUSER@$PGHOST/$db"
            ;;
    esac
}
backend_of() { case $1 in sqlite | sqlite-otlp) echo sqlite ;; postgres) echo postgres ;; esac; }
ensure_db() { # SYSTEM
    local backend n=$DEVICES
    backend=$(backend_of "$1")
    [[ -n "${DB_URL[$backend]:-}" ]] && return 0
    for c in "${idle_counts[@]}"; do if ((c > n)); then n=$c; fi; done
    DB_URL[$backend]=$(db_url "$backend" bench)
    log "$backend: creating the database and $n devices"
    fb_start "${DB_URL[$backend]}" "$WORK/ferroboard.log"
    "$LOADGEN" --create-devices "${DB_URL[$backend]}" --create-only --devices "$n" --token-prefix "$PREFIX" >>"$WORK/create.log" 2>&1
    fb_stop
}

# start_system SYSTEM [VAR=VALUE...]: sets SYS_PID, SYS_PORT, SYS_TOPIC.
start_system() {
    local s=$1
    shift
    case $s in
        sqlite | postgres | sqlite-otlp)
            ensure_db "$s"
            local extra=("$@")
            if [[ $s == sqlite-otlp ]]; then extra+=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT"); fi
            fb_start "${DB_URL[$(backend_of "$s")]}" "$WORK/ferroboard.log" "${extra[@]}"
            SYS_PID=$FB_PID SYS_PORT=$MQTT_PORT SYS_TOPIC=v1/devices/me/telemetry
            ;;
        mosquitto)
            start_broker mosquitto "$MOSQUITTO_PORT"
            SYS_PID=$BROKER_PID SYS_PORT=$MOSQUITTO_PORT SYS_TOPIC=bench/nobody
            ;;
        rumqttd)
            start_broker rumqttd "$RUMQTTD_PORT"
            SYS_PID=$BROKER_PID SYS_PORT=$RUMQTTD_PORT SYS_TOPIC=bench/nobody
            ;;
        *)
            echo "unknown system $s" >&2
            exit 2
            ;;
    esac
}

# loadgen_run PART SYSTEM PARAM ROUND LOADGEN-ARGS...: one bounded loadgen run on a fresh server;
# records its RESULT and prints a progress line.
loadgen_run() {
    local part=$1 sys=$2 param=$3 round=$4 line
    shift 4
    start_system "$sys"
    line=$(timeout $((WARMUP + DURATION + IDLE_SECONDS + 180)) "$LOADGEN" --port "$SYS_PORT" \
        --server-pid "$SYS_PID" --topic "$SYS_TOPIC" --token-prefix "$PREFIX" --label "$sys" "$@" \
        2>>"$WORK/loadgen.err" | tee -a "$WORK/loadgen.out" | grep '^RESULT ' | sed 's/^RESULT //') || true
    stop_all
    if [[ -z "$line" ]]; then
        log "$part $param round $round $sys: no result (see $WORK/loadgen.err)"
        return 0
    fi
    record "$part" "$sys" "$param" "$round" "$line"
    log "$part $param round $round/$ROUNDS $sys: $(jq -r '"\(.msg_per_s // 0 | floor) msg/s, p50 \(.latency_ms.p50 // "-") ms, p99 \(.latency_ms.p99 // "-") ms, \(.server_rss_kb.per_connection_delta_kb // "-") KiB/conn, \(.connected)/\(.devices) connected"' <<<"$line")"
}

part_throughput() {
    local keys round sys
    for keys in $KEYS_LIST; do
        for round in $(seq "$ROUNDS"); do
            for sys in $(rotated "$round" "${systems[@]}"); do
                loadgen_run throughput "$sys" "keys=$keys" "$round" --devices "$DEVICES" --qos 1 \
                    --keys "$keys" --inflight "$INFLIGHT" --warmup "$WARMUP" --duration "$DURATION"
            done
        done
    done
}

part_latency() {
    local rate round sys
    for rate in $RATES; do
        for round in $(seq "$ROUNDS"); do
            for sys in $(rotated "$round" "${systems[@]}"); do
                loadgen_run latency "$sys" "rate=$rate" "$round" --devices "$DEVICES" --qos 1 --keys 3 \
                    --rate "$rate" --inflight 8 --warmup "$WARMUP" --duration "$DURATION"
            done
        done
    done
}

part_idle() {
    local n round sys
    for n in "${idle_counts[@]}"; do
        for round in $(seq "$ROUNDS"); do
            for sys in $(rotated "$round" "${systems[@]}"); do
                loadgen_run idle "$sys" "conns=$n" "$round" --devices "$n" --idle \
                    --duration "$IDLE_SECONDS" --connect-rate "$CONNECT_RATE"
            done
        done
    done
}

# prefill BACKEND URL FROM TO: rows FROM..TO of key "prefill" for every rows- device, in bulk, with
# the server stopped.
prefill() {
    local backend=$1 url=$2 from=$3 to=$4
    case $backend in
        postgres)
            psql -q -v ON_ERROR_STOP=1 "$url" <<SQL
INSERT INTO ts_kv_dictionary (key) VALUES ('prefill') ON CONFLICT DO NOTHING;
INSERT INTO ts_kv (entity_id, key_id, ts, dbl_v)
SELECT d.id, k.key_id, 1000000000000 + g, g
FROM devices d, ts_kv_dictionary k, generate_series($from, $to) g
WHERE d.name LIKE 'rows-%' AND k.key = 'prefill';
ANALYZE ts_kv;
SQL
            ;;
        sqlite)
            sqlite3 -bail "${url#sqlite://}" <<SQL
PRAGMA journal_mode = DELETE;
PRAGMA synchronous = OFF;
INSERT OR IGNORE INTO ts_kv_dictionary (key) VALUES ('prefill');
WITH RECURSIVE g(n) AS (SELECT $from UNION ALL SELECT n + 1 FROM g WHERE n < $to)
INSERT INTO ts_kv (entity_id, key_id, ts, dbl_v)
SELECT d.id, k.key_id, 1000000000000 + g.n, g.n
FROM devices d, ts_kv_dictionary k, g
WHERE d.name LIKE 'rows-%' AND k.key = 'prefill';
PRAGMA journal_mode = WAL;
SQL
            ;;
    esac >/dev/null
}

# live rows (the benchmark's own, ts after the prefill's) are deleted after each run, so that each
# step measures at its row count
drop_live_rows() { # BACKEND URL
    local sql="DELETE FROM ts_kv WHERE ts > 1500000000000;"
    case $1 in
        postgres) psql -q -v ON_ERROR_STOP=1 "$2" -c "$sql" ;;
        sqlite) sqlite3 -bail "${2#sqlite://}" "$sql" ;;
    esac
}

part_rows() {
    local backends=() s b total prev=0 round per t0
    for s in "${systems[@]}"; do if [[ $s == sqlite || $s == postgres ]]; then backends+=("$s"); fi; done
    ((${#backends[@]})) || { log "rows: needs sqlite or postgres in SYSTEMS; skipped"; return 0; }
    declare -A url
    for b in "${backends[@]}"; do
        url[$b]=$(db_url "$b" rows)
        fb_start "${url[$b]}" "$WORK/ferroboard.log"
        "$LOADGEN" --create-devices "${url[$b]}" --create-only --devices "$DEVICES" --token-prefix rows- >>"$WORK/create.log" 2>&1
        fb_stop
    done
    for total in $ROWS; do
        per=$((total / DEVICES))
        for b in "${backends[@]}"; do
            t0=$SECONDS
            prefill "$b" "${url[$b]}" $((prev + 1)) "$per"
            log "rows: $b pre-filled to $((per * DEVICES)) rows in $((SECONDS - t0)) s"
        done
        for round in $(seq "$ROUNDS"); do
            for b in $(rotated "$round" "${backends[@]}"); do
                fb_start "${url[$b]}" "$WORK/ferroboard.log"
                line=$(timeout $((WARMUP + DURATION + 180)) "$LOADGEN" --port "$MQTT_PORT" --server-pid "$FB_PID" \
                    --token-prefix rows- --label "$b" --devices "$DEVICES" --qos 1 --keys 3 --inflight "$INFLIGHT" \
                    --warmup "$WARMUP" --duration "$DURATION" 2>>"$WORK/loadgen.err" | tee -a "$WORK/loadgen.out" |
                    grep '^RESULT ' | sed 's/^RESULT //') || true
                fb_stop
                drop_live_rows "$b" "${url[$b]}"
                [[ -n "$line" ]] || { log "rows=$total round $round $b: no result"; continue; }
                record rows "$b" "rows=$((per * DEVICES))" "$round" "$line"
                log "rows=$((per * DEVICES)) round $round/$ROUNDS $b: $(jq -r '.msg_per_s | floor' <<<"$line") msg/s"
            done
        done
        prev=$per
    done
    # the data goes with its databases
    for b in "${backends[@]}"; do
        case $b in
            sqlite) rm -f "${url[$b]#sqlite://}"* ;;
            postgres) dropdb -h "$PGHOST" -U "$PGUSER" --if-exists "${url[$b]##*/}" ;;
        esac
    done
}

part_start() {
    local round sys t0 ms
    for round in $(seq "$ROUNDS"); do
        for sys in $(rotated "$round" "${systems[@]}"); do
            case $sys in
                sqlite | postgres)
                    local url
                    url=$(db_url "$sys" "start$round")
                    POLL_INTERVAL=0.002 fb_start "$url" "$WORK/ferroboard.log"
                    fb_stop
                    record start "$sys" "fresh database" "$round" "{\"ms\": $FB_START_MS}"
                    log "start round $round/$ROUNDS $sys: fresh database ${FB_START_MS} ms"
                    ensure_db "$sys"
                    POLL_INTERVAL=0.002 fb_start "${DB_URL[$sys]}" "$WORK/ferroboard.log"
                    fb_stop
                    record start "$sys" "restart" "$round" "{\"ms\": $FB_START_MS}"
                    log "start round $round/$ROUNDS $sys: restart ${FB_START_MS} ms"
                    if [[ $sys == sqlite ]]; then rm -f "${url#sqlite://}"*; fi
                    ;;
                mosquitto | rumqttd)
                    local port=$MOSQUITTO_PORT
                    if [[ $sys == rumqttd ]]; then port=$RUMQTTD_PORT; fi
                    t0=${EPOCHREALTIME/./}
                    POLL_INTERVAL=0.002 start_broker "$sys" "$port"
                    ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
                    stop_all
                    record start "$sys" "restart" "$round" "{\"ms\": $ms}"
                    log "start round $round/$ROUNDS $sys: ${ms} ms to listening"
                    ;;
            esac
        done
    done
}

part_cluster() {
    local round out
    for round in $(seq "$ROUNDS"); do
        out=$WORK/cluster-$round.out
        log "cluster round $round/$ROUNDS: $CLUSTER_DEVICES devices on two nodes (fanout, rpc, ws)"
        SKIP_BUILD=1 DEVICES=$CLUSTER_DEVICES RPC_CALLS=$RPC_CALLS WS_COUNT=$WS_COUNT SCENARIOS="fanout rpc ws" \
            REDIS_PORT=$((PORT_BASE + 10)) MQTT_PORTS="$((PORT_BASE + 11)) $((PORT_BASE + 12))" \
            HTTP_PORTS="$((PORT_BASE + 13)) $((PORT_BASE + 14))" PYTHON=$PYTHON CARGO_TARGET_DIR=$TARGET_DIR \
            timeout 900 bench/cluster.sh >"$out" 2>"$WORK/cluster-$round.err" || log "cluster round $round: failed (see $WORK/cluster-$round.err)"
        { grep '^RESULT ' "$out" || true; } | sed 's/^RESULT //' | while read -r line; do
            local param
            param=$(jq -r 'if .mode == "fanout" then "fanout to \(.devices) devices"
                else "\(if .mode == "rpc" then "RPC round trip" else "PUBLISH -> WebSocket" end), \(if .nodes == "two" then "across nodes" else "one node" end)" end' <<<"$line")
            record cluster ferroboard-2-nodes "$param" "$round" "$line"
            log "cluster round $round: $param: $(jq -c 'with_entries(select(.value | type != "object" and type != "array"))' <<<"$line" | cut -c1-240)"
        done
    done
}

part_ws() {
    local round out
    for round in $(seq "$ROUNDS"); do
        start_system sqlite
        out=$WORK/ws-$round.out
        log "ws round $round/$ROUNDS: latency ($WS_COUNT values), then subscribers $WS_SUBSCRIBERS at $WS_RATE updates/s"
        timeout 300 "$PYTHON" bench/ws_latency.py --http "http://127.0.0.1:$HTTP_PORT" --mqtt-port "$MQTT_PORT" \
            --password "$ADMIN_PASSWORD" latency --count "$WS_COUNT" >"$out" 2>>"$WORK/ws.err" || log "ws latency failed"
        timeout 900 "$PYTHON" bench/ws_latency.py --http "http://127.0.0.1:$HTTP_PORT" --mqtt-port "$MQTT_PORT" \
            --password "$ADMIN_PASSWORD" fanout --subscribers "$WS_SUBSCRIBERS" --rate "$WS_RATE" \
            --duration "$WS_SECONDS" >>"$out" 2>>"$WORK/ws.err" || log "ws fanout failed"
        stop_all
        { grep '^RESULT ' "$out" || true; } | sed 's/^RESULT //' | while read -r line; do
            local param
            param=$(jq -r 'if .mode == "ws-latency" then "latency" else "\(.subscribers) subscribers" end' <<<"$line")
            record ws sqlite "$param" "$round" "$line"
            log "ws round $round: $param: $(jq -c . <<<"$line")"
        done
    done
}

part_tracing() {
    wait_until 10 "port $OTLP_PORT free" port_free "$OTLP_PORT"
    "$PYTHON" bench/otlp_sink.py "$OTLP_PORT" "$WORK/otlp-sink.json" >>"$WORK/otlp-sink.log" 2>&1 &
    SINK_PID=$!
    wait_until 10 "OTLP sink on $OTLP_PORT" eval "! port_free $OTLP_PORT"
    local round sys
    for round in $(seq "$ROUNDS"); do
        for sys in $(rotated "$round" sqlite sqlite-otlp); do
            loadgen_run tracing "$sys" "keys=3" "$round" --devices "$DEVICES" --qos 1 --keys 3 \
                --inflight "$INFLIGHT" --warmup "$WARMUP" --duration "$DURATION"
        done
    done
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
    log "tracing: the sink received $(cat "$WORK/otlp-sink.json" 2>/dev/null || echo nothing)"
}

part_gateway() {
    local out=$WORK/gateway.out
    log "gateway: one gateway with $GW_SUBS devices against $GW_SUBS direct devices (SQLite)"
    SUBS=$GW_SUBS KEYS=5 DURATION=$GW_SECONDS WARMUP=$((GW_SECONDS + 5)) MQTT_PORT=$((PORT_BASE + 20)) \
        HTTP_PORT=$((PORT_BASE + 21)) CARGO_TARGET_DIR=$TARGET_DIR timeout 600 bench/gateway.sh \
        >"$out" 2>"$WORK/gateway.err" || log "gateway failed (see $WORK/gateway.err)"
    { grep '^RESULT ' "$out" || true; } | sed 's/^RESULT //' | while read -r line; do
        record gateway "$(jq -r .label <<<"$line")" "$GW_SUBS devices, 5 keys" 1 "$line"
    done
    grep -E '^(mode|gateway|direct) ' "$out" >&2 || true
}

{
    echo "{\"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\", \"started\": \"$(date -u +%FT%TZ)\","
    echo " \"cpus\": $(nproc), \"loadavg_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"systems\": \"${systems[*]}\","
    echo " \"devices\": $DEVICES, \"inflight\": $INFLIGHT, \"duration\": $DURATION, \"warmup\": $WARMUP, \"rounds\": $ROUNDS}"
} >"$OUT/run.json"
log "bench/all.sh: parts [$PARTS], systems [${systems[*]}], $ROUNDS round(s); output $OUT; logs $WORK"
for part in $PARTS; do
    case $part in
        throughput | latency | idle | rows | start | cluster | ws | tracing | gateway) ;;
        *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
for part in $PARTS; do
    log "=== $part (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "part_$part"
done
jq --arg l "$(cut -d' ' -f1-3 /proc/loadavg)" --arg t "$(date -u +%FT%TZ)" '. + {loadavg_after: $l, finished: $t}' \
    "$OUT/run.json" >"$WORK/run.json" && mv "$WORK/run.json" "$OUT/run.json"
"$PYTHON" bench/report.py "$OUT"
log "table: $OUT/table.md  plot: $OUT/plot.png"
