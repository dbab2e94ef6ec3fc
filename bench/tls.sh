#!/usr/bin/env bash
# bench/tls.sh: MQTT over TLS, ferroboard side by side with Mosquitto on the same certificates and
# the same generators, in one run. Not part of CI.
#   - TLS handshakes per second: `openssl s_time -new` (a full handshake per connection) for
#     SECONDS_PER_RUN, without and with a client certificate (Mosquitto needs a second listener with
#     require_certificate for the latter; ferroboard asks every client for an optional certificate);
#   - RSS per idle TLS session: IDLE sessions opened by bench/tls_idle.py (CONNECT accepted; device
#     tokens for ferroboard, anonymous for Mosquitto), (RSS after - RSS before) / IDLE.
# Each round starts both servers afresh and alternates them; ROUNDS rounds.
# Knobs: ROUNDS=2 SECONDS_PER_RUN=10 IDLE=1000 FB_PORT=18883 FB_MQTT_PORT=18832 HTTP_PORT=18082
#        MOSQ_PORT=18884 MOSQ_CERT_PORT=18885 CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ROUNDS=${ROUNDS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
IDLE=${IDLE:-1000}
FB_PORT=${FB_PORT:-18883}
FB_MQTT_PORT=${FB_MQTT_PORT:-18832}
HTTP_PORT=${HTTP_PORT:-18082}
MOSQ_PORT=${MOSQ_PORT:-18884}
MOSQ_CERT_PORT=${MOSQ_CERT_PORT:-18885}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FERROBOARD=$TARGET_DIR/release/ferroboard
LOADGEN=$TARGET_DIR/release/loadgen
PREFIX=tls-bench-
PASSWORD=tls-bench-password

for tool in openssl mosquitto python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench/tls.sh needs $tool" >&2; exit 2; }
done
[[ -x $FERROBOARD && -x $LOADGEN ]] || { echo "build first: cargo build --release (looked in $TARGET_DIR/release)" >&2; exit 2; }
need=$((IDLE + 1024))
(($(ulimit -n) >= need)) || ulimit -n "$need"

WORK=$(mktemp -d /tmp/fb-tls.XXXXXX)
chmod 755 "$WORK"
FB_PID="" MOSQ_PID=""
cleanup() {
    for pid in $FB_PID $MOSQ_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- certificates: one CA, a server certificate for 127.0.0.1, a client certificate (ECDSA P-256)
pki() {
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 -subj /CN=bench-ca
    for who in server client; do
        openssl req "${ec[@]}" -keyout "$WORK/$who.key" -out "$WORK/$who.csr" -subj "/CN=$who"
        openssl x509 -req -in "$WORK/$who.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
            -days 2 -out "$WORK/$who.pem" -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost')
    done
    chmod 644 "$WORK"/*.pem "$WORK"/*.key
} 2>/dev/null

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

ADMIN_PASSWORD=$PASSWORD MQTT_PORT=$FB_MQTT_PORT
start_ferroboard() {
    wait_until 30 "port $FB_PORT free" port_free "$FB_PORT"
    fb_start "sqlite://$WORK/fb.db" "$WORK/ferroboard.log" FERROBOARD_MQTTS_ADDR="127.0.0.1:$FB_PORT" \
        FERROBOARD_TLS_CERT="$WORK/server.pem" FERROBOARD_TLS_KEY="$WORK/server.key"
}
stop_ferroboard() { fb_stop; }

start_mosquitto() {
    cat >"$WORK/mosquitto.conf" <<CONF
per_listener_settings true
listener $MOSQ_PORT 127.0.0.1
certfile $WORK/server.pem
keyfile $WORK/server.key
allow_anonymous true
listener $MOSQ_CERT_PORT 127.0.0.1
cafile $WORK/ca.pem
certfile $WORK/server.pem
keyfile $WORK/server.key
require_certificate true
allow_anonymous true
CONF
    wait_until 30 "mosquitto ports free" eval "port_free $MOSQ_PORT && port_free $MOSQ_CERT_PORT"
    mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
    MOSQ_PID=$!
    wait_until 30 "mosquitto listening" eval "! port_free $MOSQ_PORT"
}

stop_mosquitto() {
    kill -TERM "$MOSQ_PID" 2>/dev/null || true
    wait "$MOSQ_PID" 2>/dev/null || true
    MOSQ_PID=""
}

# handshakes LABEL PORT [client-cert]: prints one RESULT line (full handshakes per second).
handshakes() {
    local label=$1 port=$2 cert=() out n secs
    [[ ${3:-} == client-cert ]] && cert=(-cert "$WORK/client.pem" -key "$WORK/client.key")
    out=$(openssl s_time -connect "127.0.0.1:$port" -new -time "$SECONDS_PER_RUN" -CAfile "$WORK/ca.pem" "${cert[@]}" 2>&1)
    read -r n secs < <(sed -n 's/^\([0-9]*\) connections in \([0-9]*\) real seconds.*/\1 \2/p' <<<"$out" | tail -n 1)
    [[ -n ${n:-} && ${secs:-0} -gt 0 ]] || { echo "s_time on $port failed: $out" >&2; return 1; }
    echo "RESULT $label handshakes/s ${3:-no-client-cert}: $((n / secs))"
}

# idle LABEL PORT PID TOKEN_PREFIX|-: prints one RESULT line (KiB of RSS per idle TLS session).
idle() {
    local label=$1 port=$2 pid=$3 prefix=$4 before after ready=$WORK/ready
    rm -f "$ready"
    before=$(rss_kib "$pid")
    python3 bench/tls_idle.py 127.0.0.1 "$port" "$WORK/ca.pem" "$IDLE" "$prefix" 600 "$ready" &
    local holder=$!
    wait_until 120 "$IDLE idle TLS sessions on $label" test -s "$ready"
    # Let the server finish the sessions' start-up work (device state, activity) before sampling.
    wait_until 30 "$label RSS to settle" eval "a=\$(rss_kib $pid); sleep 1; [ \$a -eq \$(rss_kib $pid) ]" || true
    after=$(rss_kib "$pid")
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    echo "RESULT $label idle-TLS-session RSS: $(((after - before) / IDLE)).$((((after - before) * 10 / IDLE) % 10)) KiB ($before -> $after KiB, $IDLE sessions)"
}

pki
start_ferroboard
"$LOADGEN" --create-devices "sqlite://$WORK/fb.db" --create-only --devices "$IDLE" --token-prefix "$PREFIX" >/dev/null
stop_ferroboard

for round in $(seq "$ROUNDS"); do
    echo "== round $round of $ROUNDS" >&2
    start_ferroboard
    start_mosquitto
    idle ferroboard "$FB_PORT" "$FB_PID" "$PREFIX"
    idle mosquitto "$MOSQ_PORT" "$MOSQ_PID" -
    handshakes ferroboard "$FB_PORT"
    handshakes mosquitto "$MOSQ_PORT"
    handshakes ferroboard "$FB_PORT" client-cert
    handshakes mosquitto "$MOSQ_CERT_PORT" client-cert
    stop_mosquitto
    stop_ferroboard
done
