"""Two-way RPC round trip REST -> device -> REST, sequential calls, p50/p99.

Usage (the acceptance virtualenv has requests and paho-mqtt; `tests/acceptance/venv` prints its folder):
  VENV=$(tests/acceptance/venv); ACCEPTANCE_UPSTREAM_PAHO=$VENV/upstream-paho $VENV/bin/python bench/rpc_latency.py \
      --http http://127.0.0.1:18080 --mqtt-port 18830 --password ADMIN_PASSWORD [--calls 200]
Creates one device through REST, connects it with paho-mqtt (MQTT 3.1.1, in-process thread that
answers every RPC at once), then times `--calls` sequential POST /api/plugins/rpc/twoway calls.
Give --device-mqtt-port to connect the device to another node (cross-node round trip).
Also prints one line `RESULT {json}` (for bench/all.sh).
"""

import argparse
import json
import statistics
import sys
import threading
import time
import uuid

import requests

if __import__("os").environ.get("ACCEPTANCE_UPSTREAM_PAHO"):
    sys.path.insert(0, __import__("os").environ["ACCEPTANCE_UPSTREAM_PAHO"])
import paho.mqtt.client as mqtt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--device-mqtt-port", type=int, default=None)
    ap.add_argument("--password", required=True)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()

    s = requests.Session()
    s.trust_env = False
    tok = s.post(f"{args.http}/api/auth/login", json={"username": "tenant@thingsboard.org", "password": args.password}).json()["token"]
    s.headers["X-Authorization"] = f"Bearer {tok}"
    dev = s.post(f"{args.http}/api/device", json={"name": f"rpc-bench-{uuid.uuid4().hex[:8]}"}).json()
    token = s.get(f"{args.http}/api/device/{dev['id']['id']}/credentials").json()["credentialsId"]

    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(token)

    def on_connect(client, *_):
        client.subscribe("v1/devices/me/rpc/request/+", 1)

    def on_message(client, _u, msg):
        rid = msg.topic.rsplit("/", 1)[1]
        client.publish(f"v1/devices/me/rpc/response/{rid}", b'{"ok":true}', qos=1)

    c.on_connect = on_connect
    c.on_subscribe = lambda *_: subscribed.set()
    c.on_message = on_message
    c.connect("127.0.0.1", args.device_mqtt_port or args.mqtt_port)
    c.loop_start()
    if not subscribed.wait(10):
        sys.exit("device did not subscribe")

    lat = []
    url = f"{args.http}/api/plugins/rpc/twoway/{dev['id']['id']}"
    for _ in range(args.calls):
        t = time.perf_counter()
        r = s.post(url, json={"method": "ping", "params": {}, "timeout": 5000})
        lat.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            sys.exit(f"RPC failed: {r.status_code} {r.text}")
    c.loop_stop()
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    print(f"calls {len(lat)}  p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  max {lat[-1]:.2f} ms  mean {statistics.mean(lat):.2f} ms")
    cross = args.device_mqtt_port is not None and args.device_mqtt_port != args.mqtt_port
    print("RESULT " + json.dumps({"mode": "rpc", "nodes": "two" if cross else "one", "calls": len(lat),
                                  "p50_ms": p(0.5), "p99_ms": p(0.99), "max_ms": lat[-1]}), flush=True)


if __name__ == "__main__":
    main()
