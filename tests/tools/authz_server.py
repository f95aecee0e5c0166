#!/usr/bin/python3
"""authz_server.py - a strict OAuth2 authorization server for the
`oauth2 login` tests, with the XOAUTH2 SMTP upstream of token_server.py in
the same process, so that the upstream accepts exactly the access tokens
issued here.

  /usr/bin/python3 authz_server.py --cert C --key K --record FILE [options]

Prints "READY <https_port> <smtp_port>". Everything is HTTPS on 127.0.0.1.

Written from RFC 6749 (4.1, 5.2), RFC 7636 (4.1-4.6: S256 only here), RFC
8252 (7.3: loopback redirect, any port) and RFC 8628 (3.1-3.5), answering
as those documents and the providers' pages say, never more kindly:

  GET  /authorize   response_type=code, client_id, redirect_uri (must be
                    http://127.0.0.1:<port> exactly), scope (must equal
                    --scope), state (echoed), code_challenge (43 base64url
                    characters), code_challenge_method=S256 (plain or none is
                    refused); with --google also access_type=offline and
                    prompt=consent. Answers 302 to redirect_uri with code and
                    state, or error=access_denied with --deny. A request that
                    cannot be trusted to redirect (bad client or redirect_uri)
                    gets a 400 page, as RFC 6749 4.1.2.1 requires.
  POST /devicecode  client_id, scope. Answers device_code, user_code,
                    verification_uri, expires_in (--device-expires), interval
                    (--interval) and a Microsoft-style message.
  POST /token       grant_type=authorization_code: the code must be known,
                    unused (single use), for the same client_id and the same
                    redirect_uri, and SHA-256(code_verifier) must be its
                    challenge; --client-secret is then required too.
                    grant_type=urn:ietf:params:oauth:grant-type:device_code:
                    --device-mode approve (tokens after --approve-after
                    pending answers), deny (authorization_declined), expire
                    (expired_token), refuse (invalid_grant with AADSTS53003),
                    public (invalid_client AADSTS7000218); a poll sooner than
                    the interval gets slow_down and the interval grows by 5 s
                    (RFC 8628 3.5); --slow-down-first answers the first poll
                    so anyway.
                    grant_type=refresh_token: a refresh token issued here.
                    Tokens: access "at-login-<n>-...", refresh "rt-login-...";
                    --rt-expires-in N adds refresh_token_expires_in (Google,
                    app in Testing); --id-email E adds an id_token naming E.
Records one JSON line per request to --record: {"event", ...} without any
token, code or verifier (only whether they were right).
"""

import argparse
import asyncio
import base64
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import types
import urllib.parse
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, __import__("os").path.dirname(__file__))
import token_server  # noqa: E402  (its XOAUTH2 SMTP handler and record())

LOCK = threading.Lock()
CODES = {}      # code -> {client_id, redirect_uri, challenge, used}
DEVICE = {}     # device_code -> {polls, last, interval}
REFRESH = set()
N = {"n": 0}
REDIRECT_RE = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}$")
B64URL43 = re.compile(r"^[A-Za-z0-9_-]{43}$")
VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--client-id", default="client-1")
    p.add_argument("--client-secret", default=None)
    p.add_argument("--scope", default="https://mail.google.com/")
    p.add_argument("--google", action="store_true")
    p.add_argument("--deny", action="store_true")
    p.add_argument("--device-mode", default="approve",
                   choices=["approve", "deny", "expire", "refuse", "public"])
    p.add_argument("--approve-after", type=int, default=2)
    p.add_argument("--interval", type=int, default=1)
    p.add_argument("--device-expires", type=int, default=900)
    p.add_argument("--slow-down-first", action="store_true")
    p.add_argument("--rt-expires-in", type=int, default=None)
    p.add_argument("--id-email", default=None)
    p.add_argument("--expires-in", type=int, default=3600)
    p.add_argument("--lifetime", type=float, default=120.0)
    return p.parse_args()


ARGS = None


def record(**ev):
    token_server.record(**ev)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def send(self, status, body, ctype="application/json", headers=()):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def oauth_error(self, error, desc, status=400):
        self.send(status, {"error": error, "error_description": desc})

    # ---- authorization endpoint (browser) ----
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/authorize":
            return self.send(404, b"not found", "text/plain")
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if any(len(v) != 1 for v in q.values()):
            return self.send(400, b"a parameter given twice", "text/plain")
        g = {k: v[0] for k, v in q.items()}
        redirect = g.get("redirect_uri", "")
        ok_client = g.get("client_id") == ARGS.client_id
        ok_redirect = bool(REDIRECT_RE.match(redirect))
        record(event="authorize", client_ok=ok_client, redirect_ok=ok_redirect,
               method=g.get("code_challenge_method"), has_state="state" in g,
               access_type=g.get("access_type"), prompt=g.get("prompt"), scope=g.get("scope"))
        if not ok_client or not ok_redirect:
            return self.send(400, b"invalid client_id or redirect_uri", "text/plain")
        state = g.get("state")
        err = None
        if g.get("response_type") != "code":
            err = "unsupported_response_type"
        elif not state:
            err = "invalid_request"
        elif g.get("code_challenge_method") != "S256" or not B64URL43.match(
                g.get("code_challenge", "")):
            err = "invalid_request"
        elif g.get("scope") != ARGS.scope:
            err = "invalid_scope"
        elif ARGS.google and (g.get("access_type") != "offline" or g.get("prompt") != "consent"):
            err = "invalid_request"
        elif ARGS.deny:
            err = "access_denied"
        params = {"state": state} if state else {}
        if err:
            params["error"] = err
        else:
            code = "code-" + secrets.token_urlsafe(24)
            with LOCK:
                CODES[code] = {"client_id": g["client_id"], "redirect_uri": redirect,
                               "challenge": g["code_challenge"], "used": False}
            params["code"] = code
        loc = redirect + "?" + urllib.parse.urlencode(params)
        self.send(302, b"", "text/plain", headers=[("Location", loc)])

    # ---- device and token endpoints ----
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n).decode()
        form = urllib.parse.parse_qs(raw, keep_blank_values=True)
        if self.headers.get("Content-Type") != "application/x-www-form-urlencoded" or any(
                len(v) != 1 for v in form.values()):
            return self.oauth_error("invalid_request", "form-encoded body, each parameter once")
        f = {k: v[0] for k, v in form.items()}
        if self.path == "/devicecode":
            return self.devicecode(f)
        if self.path == "/token":
            return self.token(f)
        self.send(404, {"error": "not_found"})

    def devicecode(self, f):
        record(event="devicecode", client_ok=f.get("client_id") == ARGS.client_id,
               scope=f.get("scope"))
        if f.get("client_id") != ARGS.client_id:
            return self.oauth_error("invalid_client", "AADSTS700016: Application not found.")
        if f.get("scope") != ARGS.scope:
            return self.oauth_error("invalid_scope", "AADSTS70011: bad scope")
        dc = "dc-" + secrets.token_urlsafe(24)
        with LOCK:
            DEVICE[dc] = {"polls": 0, "last": None, "interval": ARGS.interval,
                          "expires": time.monotonic() + ARGS.device_expires}
        port = self.server.server_address[1]
        uri = "https://127.0.0.1:%d/device" % port
        self.send(200, {"device_code": dc, "user_code": "WDJB-MJHT", "verification_uri": uri,
                        "expires_in": ARGS.device_expires, "interval": ARGS.interval,
                        "message": "To sign in, use a web browser to open the page %s and "
                                   "enter the code WDJB-MJHT to authenticate." % uri})

    def issue(self, scope):
        with LOCK:
            N["n"] += 1
            n = N["n"]
            at = "at-login-%d-%s" % (n, secrets.token_urlsafe(16))
            token_server.STATE["issued"][at] = n
        resp = {"token_type": "Bearer", "access_token": at, "expires_in": ARGS.expires_in,
                "scope": scope}
        return resp

    def tokens(self, first):
        resp = self.issue(ARGS.scope)
        if first:
            rt = "rt-login-" + secrets.token_urlsafe(24)
            with LOCK:
                REFRESH.add(rt)
            resp["refresh_token"] = rt
            if ARGS.rt_expires_in is not None:
                resp["refresh_token_expires_in"] = ARGS.rt_expires_in
            if ARGS.id_email:
                claims = {"iss": "https://127.0.0.1", "aud": ARGS.client_id,
                          "email": ARGS.id_email, "iat": int(time.time())}
                resp["id_token"] = "%s.%s.%s" % (
                    b64url(b'{"alg":"RS256","typ":"JWT"}'),
                    b64url(json.dumps(claims).encode()), b64url(b"not-checked"))
        return self.send(200, resp)

    def client_ok(self, f):
        if f.get("client_id") != ARGS.client_id:
            return False
        if ARGS.client_secret is not None and f.get("client_secret") != ARGS.client_secret:
            return False
        return True

    def token(self, f):
        grant = f.get("grant_type")
        if grant == "authorization_code":
            return self.code_grant(f)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            return self.device_grant(f)
        if grant == "refresh_token":
            ok = self.client_ok(f) and f.get("refresh_token") in REFRESH
            record(event="token", grant_type=grant, ok=ok, scope=f.get("scope"))
            if not ok:
                return self.oauth_error("invalid_grant", "Bad refresh token")
            return self.tokens(False)
        record(event="token", grant_type=grant, ok=False)
        return self.oauth_error("unsupported_grant_type", "no such grant")

    def code_grant(self, f):
        code, verifier = f.get("code", ""), f.get("code_verifier", "")
        with LOCK:
            c = CODES.get(code)
            reused = bool(c and c["used"])
            if c:
                c["used"] = True
        checks = {
            "code_known": c is not None,
            "code_unused": c is not None and not reused,
            "client_ok": self.client_ok(f) and c is not None and c["client_id"] == f.get(
                "client_id"),
            "redirect_ok": c is not None and f.get("redirect_uri") == c["redirect_uri"],
            "verifier_ok": c is not None and bool(VERIFIER_RE.match(verifier)) and b64url(
                hashlib.sha256(verifier.encode()).digest()) == c["challenge"],
        }
        record(event="token", grant_type="authorization_code", **checks)
        if not checks["client_ok"]:
            return self.oauth_error("invalid_client", "The OAuth client was not found.", 401)
        if not all(checks.values()):
            return self.oauth_error("invalid_grant", "Bad Request")
        return self.tokens(True)

    def device_grant(self, f):
        now = time.monotonic()
        with LOCK:
            d = DEVICE.get(f.get("device_code", ""))
            if d:
                d["polls"] += 1
                gap = None if d["last"] is None else now - d["last"]
                d["last"] = now
                polls, interval = d["polls"], d["interval"]
        if not d or not self.client_ok(f):
            record(event="token", grant_type="device_code", ok=False)
            return self.oauth_error("invalid_grant", "AADSTS70000: unknown device code")
        record(event="poll", n=polls, gap_ms=None if gap is None else int(gap * 1000),
               interval=interval)
        early = gap is not None and gap < interval - 0.2
        if early or (ARGS.slow_down_first and polls == 1):
            with LOCK:
                d["interval"] += 5
            return self.oauth_error("slow_down", "polling too fast")
        if now > d["expires"] or ARGS.device_mode == "expire" and polls > ARGS.approve_after:
            return self.oauth_error("expired_token", "AADSTS70019: Verification code expired.")
        if ARGS.device_mode == "refuse":
            return self.oauth_error(
                "invalid_grant", "AADSTS53003: Access has been blocked by Conditional Access "
                "policies. The access policy does not allow token issuance.")
        if ARGS.device_mode == "public":
            return self.oauth_error(
                "invalid_client", "AADSTS7000218: The request body must contain the following "
                "parameter: 'client_assertion' or 'client_secret'.", 401)
        if polls <= ARGS.approve_after:
            return self.oauth_error(
                "authorization_pending", "AADSTS70016: OAuth 2.0 device flow error. "
                "Authorization is pending. Continue polling.")
        if ARGS.device_mode == "deny":
            return self.oauth_error("authorization_declined",
                                    "AADSTS70000: the user declined the request")
        with LOCK:
            del DEVICE[f["device_code"]]  # a device code is good for one set of tokens
        return self.tokens(True)


async def main():
    global ARGS
    ARGS = parse_args()
    token_server.ARGS = types.SimpleNamespace(record=ARGS.record, static_token=None,
                                              revoke_first=False)
    ctx = token_server.tls_context(ARGS.cert, ARGS.key)
    httpd = token_server.start_https(Handler, ctx)
    loop = asyncio.get_running_loop()
    await token_server.serve(loop, ARGS.lifetime, httpd,
                             await token_server.start_smtp(loop, ctx))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
