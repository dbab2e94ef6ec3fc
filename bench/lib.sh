# bench/lib.sh: shell helpers shared by the benchmark scripts (sourced, not run).

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every $POLL_INTERVAL seconds (0.2 by
# default) until it succeeds or the deadline passes (then fails).
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "timed out after ${limit}s waiting for: $what" >&2
            return 1
        fi
        sleep "${POLL_INTERVAL:-0.2}"
    done
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# fb_healthy PID HTTP_PORT LOG: the server PID is alive and its /api/health/ready says UP. Exits the
# script (with the log's tail) when the server died, so that a failed start is not waited out.
fb_healthy() {
    if ! kill -0 "$1" 2>/dev/null; then
        echo "ferroboard (pid $1) exited during start-up; tail of $3:" >&2
        tail -n 30 "$3" >&2
        exit 1
    fi
    curl -fsS "http://127.0.0.1:$2/api/health/ready" 2>/dev/null | grep -q '"status":"UP"'
}

# fb_start DATABASE_URL LOG [VAR=VALUE...]: starts "$FERROBOARD serve" in the background on
# 127.0.0.1:$MQTT_PORT (MQTT) and 127.0.0.1:$HTTP_PORT (HTTP) with the admin passwords
# $ADMIN_PASSWORD, appending its output to LOG; the extra VAR=VALUE words go into its environment.
# Waits (ports free, then /api/health/ready UP, 60 s at most) and sets FB_PID and FB_START_MS (the
# milliseconds from launch to healthy, as fine as POLL_INTERVAL).
fb_start() {
    local url=$1 log=$2 t0
    shift 2
    wait_until 30 "ports $MQTT_PORT/$HTTP_PORT to be free" eval "port_free $MQTT_PORT && port_free $HTTP_PORT"
    echo "--- starting ferroboard on $url" >>"$log"
    t0=${EPOCHREALTIME/./}
    env FERROBOARD_MQTT_ADDR="127.0.0.1:$MQTT_PORT" FERROBOARD_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
        FERROBOARD_DATABASE_URL="$url" FERROBOARD_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
        FERROBOARD_SYSADMIN_PASSWORD="$ADMIN_PASSWORD" "$@" "$FERROBOARD" serve >>"$log" 2>&1 &
    FB_PID=$!
    wait_until 60 "ferroboard health UP on :$HTTP_PORT" fb_healthy "$FB_PID" "$HTTP_PORT" "$log"
    FB_START_MS=$(((${EPOCHREALTIME/./} - t0) / 1000))
}

# fb_stop: stops the server fb_start started (SIGTERM, SIGKILL after 20 s) and clears FB_PID.
fb_stop() {
    [[ -n "${FB_PID:-}" ]] || return 0
    if kill -0 "$FB_PID" 2>/dev/null; then
        kill -TERM "$FB_PID" 2>/dev/null || true
        if ! wait_until 20 "ferroboard (pid $FB_PID) to exit" eval "! kill -0 $FB_PID 2>/dev/null"; then
            kill -KILL "$FB_PID" 2>/dev/null || true
        fi
    fi
    wait "$FB_PID" 2>/dev/null || true
    FB_PID=""
}

# start_broker mosquitto|rumqttd PORT: starts that broker on 127.0.0.1:PORT (anonymous clients, no
# persistence; config and log in $WORK; rumqttd from $RUMQTTD), sets BROKER_PID and waits until the
# port accepts connections.
start_broker() { # SYSTEM PORT
    local port=$2
    wait_until 30 "port $port free" port_free "$port"
    case $1 in
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n' "$port" >"$WORK/mosquitto.conf"
            mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
            ;;
        rumqttd)
            rumqttd_config "$port" >"$WORK/rumqttd.toml"
            "$RUMQTTD" -q --config "$WORK/rumqttd.toml" >>"$WORK/rumqttd.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    wait_until 30 "$1 listening on $port" eval "! port_free $port"
}
rumqttd_config() { # PORT: a v4 (MQTT 3.1.1) listener, no persistence, limits above the benchmark's
    cat <<TOML
id = 0
[router]
id = 0
max_connections = 100000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$1"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
TOML
}
