#!/usr/bin/python3
"""webhook_receiver.py - a local HTTPS endpoint in the shape of Slack,
Mattermost and Teams incoming webhooks, for the alert tests.

It accepts POST <any path> with Content-Type: application/json and a body
that is one JSON object holding a string "text" (what those services show):
answers 200 "ok" and records the object as one JSON line to --record.
Anything else: 400 with the reason (GET and other methods: 405). With
--fail-first N the first N valid POSTs get 503 (to test the retries).
TLS 1.2+ with --cert/--key. Prints "READY <port>"; exits on SIGTERM or
after --lifetime seconds. Loopback only.
"""

import argparse
import json
import os
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOCK = threading.Lock()
SEEN = {"n": 0}


def record(obj):
    line = json.dumps(obj, separators=(",", ":")) + "\n"
    fd = os.open(ARGS.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(405, "POST only")

    def do_POST(self):
        n = self.headers.get("Content-Length")
        if n is None or not n.isdigit() or int(n) > 65536:
            return self.answer(400, "Content-Length required (at most 64 KiB)")
        body = self.rfile.read(int(n))
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self.answer(400, "Content-Type must be application/json")
        try:
            obj = json.loads(body)
        except ValueError:
            return self.answer(400, "invalid_payload")
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"]:
            return self.answer(400, "no_text")
        with LOCK:
            SEEN["n"] += 1
            fail = SEEN["n"] <= ARGS.fail_first
        if fail:
            record({"event": "refused", "alert": obj.get("event")})
            return self.answer(503, "try later")
        obj["_path"] = self.path
        record(obj)
        self.answer(200, "ok")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--lifetime", type=float, default=120.0)
    ARGS = p.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    threading.Timer(ARGS.lifetime, lambda: os._exit(0)).start()
    sys.stdout.write("READY %d\n" % httpd.server_address[1])
    sys.stdout.flush()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
