#!/usr/bin/python3
"""token_server.py - an OAuth2 token endpoint and an XOAUTH2 SMTP upstream
for the integration tests, in one process so that the upstream knows which
access tokens the endpoint issued.

  /usr/bin/python3 token_server.py --cert C --key K --record FILE [options]

Prints "READY <https_port> <smtp_port>" (smtp_port 0 without --smtp).

The token endpoint (HTTPS on 127.0.0.1, POST /token, form-encoded):
  grant_type=refresh_token  needs refresh_token equal to the current one
                            (--refresh-token, then each rotated one);
  grant_type=client_credentials needs client_secret equal to --client-secret.
  A good request gets {"access_token": "at-<n>-<random>", "token_type":
  "Bearer", "expires_in": --expires-in}; with --rotate also a new
  "refresh_token". Otherwise 400 {"error": "invalid_grant" or
  "invalid_client", "error_description": ...}.
  --mode invalid_grant      every request gets 400 invalid_grant
  --mode http500            every request gets 500 with an HTML body
  --chunked                 answers use Transfer-Encoding: chunked
Each request appends {"event": "token_request", "grant_type", "client_id",
"scope", "has_secret", "n"} to --record (never a token or secret).

The SMTP upstream (--smtp; aiosmtpd, STARTTLS, AUTH XOAUTH2 only, required)
accepts an access token the endpoint issued (or --static-token); --revoke-first makes it refuse
the first one issued, as a provider does with a revoked token: "334 <base64
JSON error>", then 535 5.7.8 after the client's empty line. Records:
{"event": "auth", "ok", "user", "token_n"} and {"event": "message",
"mail_from", "rcpt_tos", "auth_user", "data_len"}.
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import ssl
import sys
import threading
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.smtp import SMTP, AuthResult

LOCK = threading.Lock()
STATE = {"refresh": None, "issued": {}, "n": 0, "revoked": set()}


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--refresh-token", default="rt-initial")
    p.add_argument("--client-id", default="client-1")
    p.add_argument("--client-secret", default=None)
    p.add_argument("--expires-in", type=int, default=3600)
    p.add_argument("--rotate", action="store_true")
    p.add_argument("--mode", choices=["ok", "invalid_grant", "http500"], default="ok")
    p.add_argument("--chunked", action="store_true")
    p.add_argument("--smtp", action="store_true")
    p.add_argument("--revoke-first", action="store_true")
    p.add_argument("--static-token", default=None,
                   help="also accepted by the SMTP side (for token_command tests)")
    p.add_argument("--lifetime", type=float, default=120.0)
    return p.parse_args()


ARGS = None


def record(**ev):
    line = json.dumps(ev, separators=(",", ":")) + "\n"
    with LOCK:
        fd = os.open(ARGS.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def answer(self, status, obj=None, raw=None, ctype="application/json"):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        if ARGS.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 7):
                part = body[i:i + 7]
                self.wfile.write(b"%x;ext=1\r\n" % len(part) + part + b"\r\n")
            self.wfile.write(b"0\r\nX-Trailer: y\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True)
        get = lambda k: form.get(k, [None])[0]
        grant = get("grant_type")
        with LOCK:
            STATE["n"] += 1
            req_n = STATE["n"]
        record(event="token_request", n=req_n, path=self.path, grant_type=grant,
               client_id=get("client_id"), scope=get("scope"),
               has_secret=get("client_secret") is not None,
               content_type=self.headers.get("Content-Type"))
        if ARGS.mode == "http500":
            return self.answer(500, raw=b"<html>oops</html>", ctype="text/html")
        if ARGS.mode == "invalid_grant":
            return self.answer(400, {"error": "invalid_grant",
                                     "error_description": "Token has been expired or revoked."})
        if get("client_id") != ARGS.client_id or (
                ARGS.client_secret is not None and get("client_secret") != ARGS.client_secret):
            return self.answer(401, {"error": "invalid_client",
                                     "error_description": "The OAuth client was not found."})
        resp = {"token_type": "Bearer", "expires_in": ARGS.expires_in}
        with LOCK:
            if grant == "refresh_token":
                if get("refresh_token") != STATE["refresh"]:
                    bad = True
                else:
                    bad = False
                    if ARGS.rotate:
                        STATE["refresh"] = "rt-%d-%s" % (req_n, secrets.token_hex(8))
                        resp["refresh_token"] = STATE["refresh"]
            elif grant == "client_credentials":
                bad = ARGS.client_secret is None
            else:
                bad = True
            if not bad:
                tok = "at-%d-%s" % (req_n, secrets.token_urlsafe(24))
                STATE["issued"][tok] = req_n
                if ARGS.revoke_first and len(STATE["issued"]) == 1:
                    STATE["revoked"].add(tok)
                resp["access_token"] = tok
        if bad:
            return self.answer(400, {"error": "invalid_grant",
                                     "error_description": "Bad Request"})
        return self.answer(200, resp)


class SmtpHandler:
    async def auth_XOAUTH2(self, server, args):
        if len(args) > 1:
            blob = args[1]
            try:
                raw = base64.b64decode(blob, validate=True)
            except Exception:
                return AuthResult(success=False, handled=False,
                                  message="501 5.5.2 Cannot decode")
        else:
            raw = await server.challenge_auth("")
            if not isinstance(raw, bytes):
                return AuthResult(success=False, handled=True)
        user, tok = None, None
        for part in raw.split(b"\x01"):
            if part.startswith(b"user="):
                user = part[5:].decode()
            elif part.startswith(b"auth=Bearer "):
                tok = part[12:].decode()
        with LOCK:
            n = STATE["issued"].get(tok)
            if tok is not None and tok == ARGS.static_token:
                n = 0
            ok = n is not None and tok not in STATE["revoked"]
        record(event="auth", ok=ok, user=user, token_n=n)
        if ok:
            return AuthResult(success=True, auth_data=user)
        err = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(err)  # the client answers with an empty line
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Username and Password not accepted")

    async def handle_DATA(self, server, session, envelope):
        record(event="message", mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
               auth_user=session.auth_data if session.authenticated else None,
               data_len=len(envelope.original_content or b""))
        return "250 2.0.0 Ok: queued"


# ---- what the other OAuth stand-ins (jwt_server.py, authz_server.py) share ----


def tls_context(cert, key):
    """The server side of every stand-in: the test CA's server certificate."""
    warnings.filterwarnings("ignore")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def start_https(handler_cls, ctx):
    """A threaded HTTPS server on 127.0.0.1 (a free port), serving from a daemon thread."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


async def start_smtp(loop, ctx):
    """The XOAUTH2 upstream: STARTTLS and AUTH required, LOGIN and PLAIN excluded."""
    handler = SmtpHandler()

    def factory():
        return SMTP(handler, hostname="upstream.test", decode_data=False,
                    tls_context=ctx, require_starttls=True, auth_required=True,
                    auth_require_tls=True, auth_exclude_mechanism=["LOGIN", "PLAIN"],
                    timeout=60, loop=loop)

    return await loop.create_server(factory, host="127.0.0.1", port=0)


async def serve(loop, lifetime, httpd, server):
    """Say "READY <https port> <smtp port>" (0: no SMTP side), then run until
    SIGTERM, SIGINT or `lifetime` seconds, and stop both servers."""
    smtp_port = server.sockets[0].getsockname()[1] if server else 0
    sys.stdout.write("READY %d %d\n" % (httpd.server_address[1], smtp_port))
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(lifetime, stop.set)
    await stop.wait()
    if server:
        server.close()
    httpd.shutdown()


async def main():
    global ARGS
    ARGS = parse_args()
    STATE["refresh"] = ARGS.refresh_token
    ctx = tls_context(ARGS.cert, ARGS.key)
    httpd = start_https(TokenHandler, ctx)
    loop = asyncio.get_running_loop()
    server = await start_smtp(loop, ctx) if ARGS.smtp else None
    await serve(loop, ARGS.lifetime, httpd, server)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
