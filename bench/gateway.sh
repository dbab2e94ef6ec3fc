#!/usr/bin/env bash
# bench/gateway.sh: one gateway with SUBS devices behind it against SUBS directly connected devices
# sending the same telemetry, in one run. Not part of CI.
#   - gateway: one MQTT connection (a device with additionalInfo.gateway) publishing
#     {"<name>": [{"key0":..}]} to v1/gateway/telemetry, device k mod SUBS per message, GW_INFLIGHT
#     messages outstanding (the devices behind it are created by the first messages, in the warm-up);
#   - direct: SUBS connections publishing {"key0":..} to v1/devices/me/telemetry, DIRECT_INFLIGHT each.
# Reported per mode: acknowledged msg/s and data points/s (msg/s x KEYS; QoS 1, so committed), PUBACK
# latency, and the server's RSS before the run and at its peak, with (peak - before) / SUBS as the cost
# of one device. Each mode runs on a freshly started server (same database), gateway first.
# Knobs: SUBS=1000 KEYS=5 DURATION=20 WARMUP=15 GW_INFLIGHT=100 DIRECT_INFLIGHT=1 PROTOCOL=v3
#        MQTT_PORT=18836 HTTP_PORT=18086 DATABASE_URL (default: a fresh SQLite file)
#        CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release; BUILD=debug for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

SUBS=${SUBS:-1000}
KEYS=${KEYS:-5}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-15}
GW_INFLIGHT=${GW_INFLIGHT:-100}
DIRECT_INFLIGHT=${DIRECT_INFLIGHT:-1}
PROTOCOL=${PROTOCOL:-v3}
MQTT_PORT=${MQTT_PORT:-18836}
HTTP_PORT=${HTTP_PORT:-18086}
BUILD=${BUILD:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FERROBOARD=$TARGET_DIR/$BUILD/ferroboard
LOADGEN=$TARGET_DIR/$BUILD/loadgen
PASSWORD=gw-bench-password
PREFIX=gwbench-
GW_PREFIX=gwbench-gateway-

for tool in python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench/gateway.sh needs $tool" >&2; exit 2; }
done
[[ -x $FERROBOARD && -x $LOADGEN ]] || { echo "build first: cargo build --$BUILD (looked in $TARGET_DIR/$BUILD)" >&2; exit 2; }
need=$((SUBS + 1024))
(($(ulimit -n) >= need)) || ulimit -n "$need"

WORK=$(mktemp -d /tmp/fb-gateway.XXXXXX)
DB=${DATABASE_URL:-sqlite://$WORK/fb.db}
FB_PID=""
cleanup() {
    [[ -n $FB_PID ]] && kill -TERM "$FB_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ADMIN_PASSWORD=$PASSWORD
start_ferroboard() { fb_start "$DB" "$WORK/ferroboard.log" RUST_LOG=warn; }
stop_ferroboard() { fb_stop; }

# The gateway device, over REST (its token is ${GW_PREFIX}0, as loadgen names device 0).
create_gateway() {
    local jwt
    jwt=$(curl -fs -H 'Content-Type: application/json' \
        -d "{\"username\":\"tenant@thingsboard.org\",\"password\":\"$PASSWORD\"}" \
        "http://127.0.0.1:$HTTP_PORT/api/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    curl -s -o /dev/null -H "X-Authorization: Bearer $jwt" -H 'Content-Type: application/json' \
        -d '{"name":"gwbench-gateway","additionalInfo":{"gateway":true}}' \
        "http://127.0.0.1:$HTTP_PORT/api/device?accessToken=${GW_PREFIX}0"
}

run() { # LABEL LOADGEN-ARGS...
    local label=$1
    shift
    start_ferroboard
    "$LOADGEN" --port "$MQTT_PORT" --protocol "$PROTOCOL" --qos 1 --keys "$KEYS" \
        --duration "$DURATION" --warmup "$WARMUP" --server-pid "$FB_PID" --label "$label" "$@" \
        | tee -a "$WORK/results.txt" | grep '^RESULT' >>"$WORK/results.jsonl"
    stop_ferroboard
}

start_ferroboard
"$LOADGEN" --create-devices "$DB" --create-only --devices "$SUBS" --token-prefix "$PREFIX" >/dev/null
create_gateway
stop_ferroboard

run gateway --devices 1 --token-prefix "$GW_PREFIX" --gateway-devices "$SUBS" --inflight "$GW_INFLIGHT"
run direct --devices "$SUBS" --token-prefix "$PREFIX" --inflight "$DIRECT_INFLIGHT" --connect-rate 2000

python3 - "$WORK/results.jsonl" "$SUBS" "$KEYS" <<'PY'
import json, sys
path, subs, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(line.split(" ", 1)[1]) for line in open(path)]
print(f"\n{subs} devices, {keys} keys per message, QoS 1 (PUBACK after commit)")
print(f"{'mode':8} {'conns':>6} {'msg/s':>10} {'points/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'RSS before':>11} {'RSS peak':>10} {'KiB/device':>11}")
for r in rows:
    rss = r.get("server_rss_kb") or {}
    before, peak = rss.get("before"), rss.get("max")
    per = (peak - before) / subs if before is not None and peak is not None else float("nan")
    lat = r.get("latency_ms") or {}
    print(f"{r['label']:8} {r['connected']:>6} {r['msg_per_s']:>10.1f} {r['msg_per_s'] * keys:>11.1f} "
          f"{lat.get('p50', float('nan')):>8.2f} {lat.get('p99', float('nan')):>8.2f} "
          f"{(before or 0) / 1024:>9.1f}Mi {(peak or 0) / 1024:>8.1f}Mi {per:>11.2f}")
PY
cat "$WORK/results.jsonl"
echo "raw results: $WORK/results.txt"
