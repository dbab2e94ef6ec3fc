"""Firmware download throughput over MQTT and HTTP, and the server's memory during package uploads.

Usage (the acceptance virtualenv has requests and paho-mqtt; `tests/acceptance/venv` prints its folder):
  VENV=$(tests/acceptance/venv); ACCEPTANCE_UPSTREAM_PAHO=$VENV/upstream-paho $VENV/bin/python bench/ota.py \
      --http http://127.0.0.1:18080 --mqtt-port 18830 --password ADMIN_PASSWORD --server-pid PID \
      [--image-mb 10] [--chunks 4096,16384,65536] [--window 1] [--uploads 5] [--upload-mb 50]

1. Uploads a --image-mb image (SHA256) over REST and assigns it to a new device.
2. MQTT 3.1.1 (paho-mqtt): downloads the whole image once per chunk size, `--window` requests in flight
   (1 = one request per answer, as the ThingsBoard SDK does), checks every byte, reports MB/s.
3. HTTP: GET /api/v1/{token}/firmware for the whole file (streamed) and by 65536-byte chunks, MB/s.
4. Uploads --uploads packages of --upload-mb each at once (multipart, streamed from a generator),
   reports the time and the server's peak RSS.
The server's RSS (VmRSS of --server-pid) is sampled every 50 ms during each step: before / peak.
MB = 10^6 bytes. Give the server `FERROBOARD_MQTT_MAX_PACKET_SIZE` above 65536 + 64 for 65536-byte
chunks to be served as asked (otherwise they are cut to the largest that fits, and the line says so).
"""

import argparse
import hashlib
import os
import queue
import socket
import sys
import threading
import time
import uuid

import requests

if os.environ.get("ACCEPTANCE_UPSTREAM_PAHO"):
    sys.path.insert(0, os.environ["ACCEPTANCE_UPSTREAM_PAHO"])
import paho.mqtt.client as mqtt  # noqa: E402

MB = 1_000_000


def image(size: int) -> bytes:
    block = hashlib.sha256(b"ferroboard-bench").digest() * 2048  # 64 KiB, not all zeros
    reps = size // len(block) + 1
    return (block * reps)[:size]


class Rss:
    """Samples VmRSS (KiB) of a process every 50 ms while active."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples = []
        self._stop = threading.Event()
        self._thread = None

    def read(self) -> int:
        if not self.pid:
            return 0
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def __enter__(self):
        self.before = self.read()
        self.samples = [self.before]
        self._stop.clear()

        def run():
            while not self._stop.wait(0.05):
                self.samples.append(self.read())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()
        self.samples.append(self.read())

    def text(self) -> str:
        return f"RSS before {self.before / 1024:.1f} MiB, peak {max(self.samples) / 1024:.1f} MiB"


def mqtt_download(port: int, token: str, size: int, chunk: int, window: int) -> tuple:
    """(seconds, bytes, chunk size served) for the whole file, checking the order of answers."""
    answers: "queue.Queue" = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(token)
    connected = threading.Event()

    def on_connect(client, *_):
        # paho leaves Nagle on: a PUBACK and the next request would wait for the server's delayed ACK.
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connected.set()

    c.on_connect = on_connect
    # Requests beyond paho's own in-flight window are queued by paho, which then re-sends some of
    # them (duplicate answers); the window is bounded by --window instead.
    c.max_inflight_messages_set(max(20, window + 1))
    c.on_message = lambda _c, _u, msg: answers.put((msg.topic, msg.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(10):
        sys.exit("MQTT connect failed")
    request = uuid.uuid4().int % 1_000_000
    got = bytearray()
    served = None
    start = time.perf_counter()
    # The first answer tells the chunk size actually served (it may be cut to what fits).
    c.publish(f"v2/fw/request/{request}/chunk/0", str(chunk), qos=1)
    topic, payload = answers.get(timeout=30)
    if topic == "v2/fw/error":
        sys.exit(f"chunk size {chunk}: error {payload!r}")
    served = len(payload)
    got.extend(payload)
    total = -(-size // served)
    sent = 1
    pending = {}
    nxt = 1
    while sent < min(total, 1 + window):
        c.publish(f"v2/fw/request/{request}/chunk/{sent}", b"", qos=1)
        sent += 1
    while nxt < total:
        try:
            topic, payload = answers.get(timeout=30)
        except queue.Empty:
            sys.exit(f"chunk size {chunk}: no answer within 30 s; waiting for {nxt}, "
                     f"received {sorted(pending)[:10]}, sent up to {sent - 1} of {total}")
        if topic == "v2/fw/error":
            sys.exit(f"chunk size {chunk}: error {payload!r}")
        index = int(topic.rsplit("/", 1)[1])
        pending[index] = payload
        while nxt in pending:
            got.extend(pending.pop(nxt))
            nxt += 1
        if sent < total:
            c.publish(f"v2/fw/request/{request}/chunk/{sent}", b"", qos=1)
            sent += 1
    elapsed = time.perf_counter() - start
    c.disconnect()
    c.loop_stop()
    return elapsed, bytes(got), served


def streamed_multipart(boundary: str, size: int):
    yield (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    piece = image(1 << 20)
    left = size
    while left > 0:
        n = min(left, len(piece))
        yield piece[:n]
        left -= n
    yield f"\r\n--{boundary}--\r\n".encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--server-pid", type=int, default=0)
    ap.add_argument("--image-mb", type=float, default=10)
    ap.add_argument("--chunks", default="4096,16384,65536")
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--uploads", type=int, default=5)
    ap.add_argument("--upload-mb", type=float, default=50)
    args = ap.parse_args()

    s = requests.Session()
    s.trust_env = False
    tok = s.post(f"{args.http}/api/auth/login", json={"username": "tenant@thingsboard.org", "password": args.password}).json()["token"]
    s.headers["X-Authorization"] = f"Bearer {tok}"
    profile = s.get(f"{args.http}/api/deviceProfileInfo/default").json()["id"]["id"]
    tag = uuid.uuid4().hex[:8]
    size = int(args.image_mb * MB)
    data = image(size)
    title = f"bench-fw-{tag}"
    pkg = s.post(f"{args.http}/api/otaPackage", json={
        "title": title, "version": "1", "type": "FIRMWARE",
        "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile}}).json()
    rss = Rss(args.server_pid)
    with rss:
        t = time.perf_counter()
        r = s.post(f"{args.http}/api/otaPackage/{pkg['id']['id']}", params={"checksumAlgorithm": "SHA256"},
                   files={"file": ("fw.bin", data, "application/octet-stream")})
        upload_s = time.perf_counter() - t
    if r.status_code != 200:
        sys.exit(f"upload failed: {r.status_code} {r.text[:300]}")
    print(f"upload {size / MB:.1f} MB: {upload_s:.2f} s, {size / MB / upload_s:.1f} MB/s; {rss.text()}")
    dev = s.post(f"{args.http}/api/device", json={"name": f"ota-bench-{tag}", "firmwareId": pkg["id"]}).json()
    token = s.get(f"{args.http}/api/device/{dev['id']['id']}/credentials").json()["credentialsId"]

    for chunk in [int(c) for c in args.chunks.split(",") if c]:
        with rss:
            elapsed, got, served = mqtt_download(args.mqtt_port, token, size, chunk, args.window)
        if got != data:
            sys.exit(f"MQTT {chunk}: the downloaded bytes differ")
        note = "" if served == chunk else f" (served as {served}-byte chunks)"
        print(f"MQTT chunk {chunk}{note}, window {args.window}: {elapsed:.2f} s, {size / MB / elapsed:.2f} MB/s; {rss.text()}")

    base = f"{args.http}/api/v1/{token}/firmware?title={title}&version=1"
    plain = requests.Session()
    plain.trust_env = False
    with rss:
        t = time.perf_counter()
        body = plain.get(base).content
        elapsed = time.perf_counter() - t
    if body != data:
        sys.exit("HTTP whole file: the downloaded bytes differ")
    print(f"HTTP whole file (streamed): {elapsed:.2f} s, {size / MB / elapsed:.2f} MB/s; {rss.text()}")
    with rss:
        t = time.perf_counter()
        got = bytearray()
        i = 0
        while len(got) < size:
            got.extend(plain.get(f"{base}&size=65536&chunk={i}").content)
            i += 1
        elapsed = time.perf_counter() - t
    if bytes(got) != data:
        sys.exit("HTTP chunks: the downloaded bytes differ")
    print(f"HTTP chunk 65536: {elapsed:.2f} s, {size / MB / elapsed:.2f} MB/s; {rss.text()}")

    if args.uploads > 0:
        up_size = int(args.upload_mb * 1024 * 1024)
        ids = []
        for i in range(args.uploads):
            p = s.post(f"{args.http}/api/otaPackage", json={
                "title": f"bench-big-{tag}-{i}", "version": "1", "type": "FIRMWARE",
                "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile}}).json()
            ids.append(p["id"]["id"])
        results = []

        def one(pid: str) -> None:
            boundary = uuid.uuid4().hex
            session = requests.Session()
            session.trust_env = False
            session.headers.update(s.headers)
            resp = session.post(
                f"{args.http}/api/otaPackage/{pid}?checksumAlgorithm=SHA256",
                data=streamed_multipart(boundary, up_size),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=600,
            )
            results.append(resp.status_code)

        with rss:
            t = time.perf_counter()
            threads = [threading.Thread(target=one, args=(pid,)) for pid in ids]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            elapsed = time.perf_counter() - t
        print(f"{args.uploads} concurrent uploads of {up_size / (1 << 20):.0f} MiB: statuses {sorted(results)}, "
              f"{elapsed:.1f} s, {args.uploads * up_size / MB / elapsed:.1f} MB/s total; {rss.text()}")


if __name__ == "__main__":
    main()
