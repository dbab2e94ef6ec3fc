"""A stand-in OTLP/HTTP collector for benchmarks: accepts POST /v1/traces (and any other path),
answers 200 with an empty protobuf body, and discards the payload.

Usage: python bench/otlp_sink.py PORT STATS_FILE
Listens on 127.0.0.1:PORT until killed; after every request it rewrites STATS_FILE with
{"requests": N, "bytes": B}, so that the caller can tell how much the server exported.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, STATS = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
totals = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        with lock:
            totals["requests"] += 1
            totals["bytes"] += length
            with open(STATS, "w") as f:
                json.dump(totals, f)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Sink).serve_forever()
