"""WebSocket live updates: PUBLISH -> update latency, and subscribers served at a given update rate.

Usage (the acceptance virtualenv has requests, paho-mqtt and websocket-client; `tests/acceptance/venv` prints its folder):
  VENV=$(tests/acceptance/venv); ACCEPTANCE_UPSTREAM_PAHO=$VENV/upstream-paho $VENV/bin/python bench/ws_latency.py \
      --http http://127.0.0.1:18080 --mqtt-port 18830 --password ADMIN_PASSWORD latency [--count 500]
  ... fanout --subscribers 50 --rate 1000 --duration 10

latency: one device (paho-mqtt, MQTT 3.1.1, QoS 1) publishes {"seq": n} one at a time; a WebSocket client
  subscribed with tsSubCmds times each value from the PUBLISH call to its update; p50/p99. Give --ws-http
  of another node to measure across nodes (the device on --mqtt-port, the browser on the other node).
fanout: --subscribers WebSocket clients (one thread each) subscribe to the same device; the device publishes
  --rate values a second for --duration seconds (QoS 0); reports per-subscriber delivery, closed clients and
  the p99 latency of delivered updates. --subscribers takes a comma-separated list (e.g. 10,50,100,200):
  the steps run in order, each with fresh clients, and the sweep stops after the first step where a
  subscriber missed updates, a client was closed, or the p99 exceeded --lag-ms (delivery lags).
Each run also prints one line `RESULT {json}` per measurement (for bench/all.sh).
"""

import argparse
import json
import sys
import threading
import time
import uuid

import requests
import websocket

if __import__("os").environ.get("ACCEPTANCE_UPSTREAM_PAHO"):
    sys.path.insert(0, __import__("os").environ["ACCEPTANCE_UPSTREAM_PAHO"])
import paho.mqtt.client as mqtt  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def setup(args):
    s = requests.Session()
    s.trust_env = False
    tok = s.post(f"{args.http}/api/auth/login", json={"username": "tenant@thingsboard.org", "password": args.password}).json()["token"]
    s.headers["X-Authorization"] = f"Bearer {tok}"
    dev = s.post(f"{args.http}/api/device", json={"name": f"ws-bench-{uuid.uuid4().hex[:8]}"}).json()
    token = s.get(f"{args.http}/api/device/{dev['id']['id']}/credentials").json()["credentialsId"]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(token)
    c.connect("127.0.0.1", args.mqtt_port)
    c.loop_start()
    return tok, dev["id"]["id"], c


def subscribe(args, jwt, device):
    base = "ws" + (args.ws_http or args.http)[len("http"):]
    ws = websocket.create_connection(f"{base}/api/ws/plugins/telemetry?token={jwt}", timeout=30)
    ws.send(json.dumps({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device, "keys": "seq"}]}))
    ws.recv()  # the snapshot
    return ws


def latency(args):
    jwt, device, client = setup(args)
    ws = subscribe(args, jwt, device)
    time.sleep(1.0)  # across nodes, the other node learns of the subscription over Redis first
    lat = []
    for n in range(1, args.count + 1):
        t = time.perf_counter()
        client.publish("v1/devices/me/telemetry", json.dumps({"seq": n}), qos=1)
        while True:
            update = json.loads(ws.recv())
            points = update.get("data", {}).get("seq") or []
            if any(p[1] == str(n) for p in points):
                break
        lat.append((time.perf_counter() - t) * 1000)
    client.loop_stop()
    print(f"updates {len(lat)}  p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  max {max(lat):.2f} ms")
    nodes = "two" if args.ws_http and args.ws_http != args.http else "one"
    result({"mode": "ws-latency", "nodes": nodes, "updates": len(lat), "p50_ms": pct(lat, 0.5),
            "p99_ms": pct(lat, 0.99), "max_ms": max(lat)})


def result(fields):
    print("RESULT " + json.dumps(fields), flush=True)


def fanout(args):
    for subscribers in args.subscribers:
        ok = fanout_step(args, subscribers)
        if not ok:
            break


def fanout_step(args, subscribers):
    """One step of the sweep; False once delivery drops, lags or a client is closed."""
    jwt, device, client = setup(args)
    sent_at = {}
    results = []
    lock = threading.Lock()
    stop = threading.Event()

    def reader(ws):
        got, closed, lat = 0, False, []
        ws.settimeout(1.0)
        while not stop.is_set():
            try:
                update = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                closed = True
                break
            now = time.perf_counter()
            for _, value in update.get("data", {}).get("seq") or []:
                got += 1
                if value in sent_at:
                    lat.append((now - sent_at[value]) * 1000)
        with lock:
            results.append((got, closed, lat))

    sockets = [subscribe(args, jwt, device) for _ in range(subscribers)]
    threads = [threading.Thread(target=reader, args=(ws,), daemon=True) for ws in sockets]
    for t in threads:
        t.start()
    time.sleep(1.0)
    total = int(args.rate * args.duration)
    start = time.perf_counter()
    for n in range(1, total + 1):
        sent_at[str(n)] = time.perf_counter()
        client.publish("v1/devices/me/telemetry", json.dumps({"seq": n}), qos=0)
        delay = start + n / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.perf_counter() - start
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join()
    client.loop_stop()
    client.disconnect()
    for ws in sockets:
        try:
            ws.close()
        except Exception:
            pass
    got = [r[0] for r in results]
    closed = sum(1 for r in results if r[1])
    lat = [x for r in results for x in r[2]]
    print(f"subscribers {subscribers}  published {total} in {elapsed:.1f} s ({total / elapsed:.0f}/s)  "
          f"delivered min {min(got) / total:.1%} avg {sum(got) / len(got) / total:.1%}  closed {closed}  "
          f"p50 {pct(lat, 0.5):.1f} ms  p99 {pct(lat, 0.99):.1f} ms", flush=True)
    p99 = pct(lat, 0.99)
    ok = min(got) >= total and closed == 0 and p99 <= args.lag_ms
    result({"mode": "ws-fanout", "subscribers": subscribers, "rate": args.rate, "published": total,
            "publish_rate": total / elapsed, "delivered_min": min(got) / total,
            "delivered_avg": sum(got) / len(got) / total, "closed": closed, "p50_ms": pct(lat, 0.5),
            "p99_ms": p99, "ok": ok})
    return ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--ws-http", default=None, help="HTTP base of the node the WebSocket connects to (default --http)")
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--password", required=True)
    sub = ap.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--count", type=int, default=500)
    fan = sub.add_parser("fanout")
    fan.add_argument("--subscribers", type=lambda v: [int(x) for x in v.split(",")], default=[50],
                     help="subscriber count, or a comma-separated sweep")
    fan.add_argument("--lag-ms", type=float, default=1000.0,
                     help="a step whose p99 exceeds this counts as lagging and ends the sweep")
    fan.add_argument("--rate", type=float, default=1000)
    fan.add_argument("--duration", type=float, default=10)
    args = ap.parse_args()
    latency(args) if args.mode == "latency" else fanout(args)


if __name__ == "__main__":
    main()
