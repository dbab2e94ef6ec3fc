#!/usr/bin/env bash
# bench/soak.sh: a long run under steady load and connection churn, watching the server's RSS and
# open file descriptors for growth. Not part of CI.
#
# Starts ferroboard (release) on a fresh SQLite file (or PostgreSQL with BACKEND=postgres), then for
# SOAK_SECONDS runs at the same time:
#   - loadgen: DEVICES devices publishing QoS 1 telemetry at RATE msg/s in total,
#   - churn: short-lived connections (mosquitto_pub, QoS 0 and QoS 1, a wrong token now and then),
#   - REST: telemetry reads and a shared-attribute save every few seconds,
# samples VmRSS and the open-fd count every SAMPLE seconds into $WORK/samples.csv, and prints the
# least-squares slopes (KiB/min, fds/min) over the samples after the first quarter (warm-up).
# Knobs: SOAK_SECONDS=600 SAMPLE=5 DEVICES=200 RATE=2000 BACKEND=sqlite|postgres SKIP_BUILD=1
#        MQTT_PORT=18831 HTTP_PORT=18081 CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

SOAK_SECONDS=${SOAK_SECONDS:-600}
SAMPLE=${SAMPLE:-5}
DEVICES=${DEVICES:-200}
RATE=${RATE:-2000}
BACKEND=${BACKEND:-sqlite}
MQTT_PORT=${MQTT_PORT:-18831}
HTTP_PORT=${HTTP_PORT:-18081}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
PASSWORD=soak-admin-password
PREFIX=soak-
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FERROBOARD=$TARGET_DIR/release/ferroboard
LOADGEN=$TARGET_DIR/release/loadgen

WORK=$(mktemp -d /tmp/fb-soak.XXXXXX)
FB_PID=""
PG_DB=""
BACKGROUND=()

cleanup() {
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
    fb_stop
    if [[ -n "$PG_DB" ]]; then dropdb -h "$PGHOST" -U "$PGUSER" --if-exists "$PG_DB" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release --bin ferroboard --bin loadgen
fi
command -v mosquitto_pub >/dev/null || { echo "bench/soak.sh needs mosquitto_pub (apt-get install mosquitto-clients)" >&2; exit 2; }

case $BACKEND in
    sqlite) URL="sqlite://$WORK/ferroboard.db" ;;
    postgres)
        PG_DB=fb_soak_$$
        createdb -h "$PGHOST" -U "$PGUSER" "$PG_DB"
        URL="postgres://$PGUSER@$PGHOST/$PG_DB"
        ;;
    *) echo "BACKEND must be sqlite or postgres" >&2; exit 2 ;;
esac

ADMIN_PASSWORD=$PASSWORD
fb_start "$URL" "$WORK/ferroboard.log"
"$LOADGEN" --create-devices "$URL" --create-only --devices "$DEVICES" --token-prefix "$PREFIX"
echo "soak: ferroboard pid $FB_PID on $URL for ${SOAK_SECONDS}s; work dir $WORK" >&2

"$LOADGEN" --port "$MQTT_PORT" --devices "$DEVICES" --qos 1 --rate "$RATE" --token-prefix "$PREFIX" \
    --warmup 0 --duration "$SOAK_SECONDS" --label soak >"$WORK/loadgen.out" 2>&1 &
BACKGROUND+=($!)

churn() {
    local i=0 end=$((SECONDS + SOAK_SECONDS))
    while ((SECONDS < end)); do
        i=$((i + 1))
        local token="$PREFIX$((i % DEVICES))"
        ((i % 10 == 0)) && token="soak-wrong-$i"
        mosquitto_pub -p "$MQTT_PORT" -u "$token" -q $((i % 2)) -t v1/devices/me/telemetry \
            -m "{\"churn\":$i}" >/dev/null 2>&1 || true
    done
}
churn &
BACKGROUND+=($!)

rest() {
    local end=$((SECONDS + SOAK_SECONDS)) jwt id
    jwt=$(curl -fsS -H 'Content-Type: application/json' \
        -d "{\"username\":\"tenant@thingsboard.org\",\"password\":\"$PASSWORD\"}" \
        "http://127.0.0.1:$HTTP_PORT/api/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    id=$(curl -fsS -H "X-Authorization: Bearer $jwt" \
        "http://127.0.0.1:$HTTP_PORT/api/tenant/devices?pageSize=1&page=0" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"]["id"])')
    while ((SECONDS < end)); do
        curl -fsS -o /dev/null -H "X-Authorization: Bearer $jwt" \
            "http://127.0.0.1:$HTTP_PORT/api/plugins/telemetry/DEVICE/$id/values/timeseries" || true
        curl -fsS -o /dev/null -H "X-Authorization: Bearer $jwt" -H 'Content-Type: application/json' \
            -d "{\"soak\":$SECONDS}" \
            "http://127.0.0.1:$HTTP_PORT/api/plugins/telemetry/DEVICE/$id/SHARED_SCOPE" || true
        sleep 2 # pacing of the load, not synchronisation
    done
}
rest &
BACKGROUND+=($!)

echo "seconds,rss_kib,fds" >"$WORK/samples.csv"
start=$SECONDS
while ((SECONDS - start < SOAK_SECONDS)); do
    kill -0 "$FB_PID" 2>/dev/null || { echo "ferroboard died; log tail:" >&2; tail -n 30 "$WORK/ferroboard.log" >&2; exit 1; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$FB_PID/status")
    fds=$(find "/proc/$FB_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    echo "$((SECONDS - start)),$rss,$fds" >>"$WORK/samples.csv"
    printf 'soak: %4ds rss %6d KiB fds %5d\n' "$((SECONDS - start))" "$rss" "$fds" >&2
    sleep "$SAMPLE" # sampling interval
done
wait "${BACKGROUND[0]}" || true
grep '^RESULT ' "$WORK/loadgen.out" || tail -n 5 "$WORK/loadgen.out"

python3 - "$WORK/samples.csv" <<'EOF'
import csv, sys
rows = [tuple(map(float, r)) for r in list(csv.reader(open(sys.argv[1])))[1:]]
rows = rows[len(rows) // 4:]
def slope(xs, ys):
    n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den
t = [r[0] / 60 for r in rows]
print(f"SOAK samples={len(rows)} (after warm-up) rss_kib min={min(r[1] for r in rows):.0f} "
      f"max={max(r[1] for r in rows):.0f} slope={slope(t, [r[1] for r in rows]):.1f} KiB/min; "
      f"fds min={min(r[2] for r in rows):.0f} max={max(r[2] for r in rows):.0f} "
      f"slope={slope(t, [r[2] for r in rows]):.2f} fds/min")
EOF
echo "samples: $WORK/samples.csv; server log: $WORK/ferroboard.log"
