#!/usr/bin/python3
"""jwt_server.py - a strict token endpoint for the two grants that are signed
JWTs, and the XOAUTH2 SMTP upstream of token_server.py, in one process.

  /usr/bin/python3 jwt_server.py --cert C --key K --record FILE
      [--sa-key PEM --sa-email E --kid K --subject S --scope SC]
      [--app-cert PEM --client-id ID] [--deny-subject] [--expires-in N]

Prints "READY <https_port> <smtp_port>". POST /token (HTTPS, 127.0.0.1):

* Google service account (RFC 7523 2.1, Google's "OAuth 2.0 for Server to
  Server Applications"): grant_type=urn:ietf:params:oauth:grant-type:
  jwt-bearer and assertion=JWT, nothing else needed. Header alg RS256 and
  kid = --kid; signature checked with --sa-key's public key; iss = --sa-email,
  aud = this endpoint's URL, scope = --scope, sub = --subject (domain-wide
  delegation; --deny-subject: not delegated), iat/exp within one hour and
  now. Answers as Google does: 200 {"access_token","expires_in","token_type"},
  or 400 invalid_grant ("Invalid JWT Signature.", "Invalid JWT: Failed
  audience check.", "Invalid JWT: Token must be a short-lived token (60
  minutes) and in a reasonable timeframe. ..."), 401 unauthorized_client.
* Microsoft certificate credential (RFC 7523 2.2, Entra "certificate
  credentials"): grant_type=client_credentials, client_id = --client-id,
  client_assertion_type=urn:ietf:params:oauth:client-assertion-type:
  jwt-bearer, client_assertion=JWT (also with grant_type=refresh_token and
  refresh_token = --refresh-token: a delegated app). Header PS256 with x5t#S256, or RS256
  with x5t, naming --app-cert; signature checked with its key (PSS, salt =
  digest length, for PS256); iss = sub = client id, aud = this URL, a jti
  never seen before, nbf <= now < exp, exp - nbf <= 10 minutes. Answers as
  Entra does: 200 {"token_type","expires_in","ext_expires_in","access_token"}
  or 400/401 {"error", "error_description": "AADSTSnnnn: ...", "error_codes",
  "timestamp", "trace_id", "correlation_id", "error_uri"}.

Each request appends to --record: {"event": "token_request", "n", "grant_type",
"alg", "kid", "x5t_s256_ok", "iss", "sub", "aud", "scope", "lifetime",
"has_jti", "error"} - never the JWT. The SMTP side (AUTH XOAUTH2, STARTTLS)
is token_server.py's and accepts only tokens issued here.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import token_server as ts  # noqa: E402  (its SMTP upstream and token book)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GOOGLE_TIME = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
               "reasonable timeframe. Check your iat and exp values in the JWT claim.")
GOOGLE_DWD = ("Client is unauthorized to retrieve access tokens using this method, or client "
              "not authorized for any of the scopes requested.")

ARGS = None
URL = None
SEEN_JTI = set()
KEYS = {}


class Refusal(Exception):
    def __init__(self, status, body):
        super().__init__(body.get("error"))
        self.status, self.body = status, body


def google_error(status, error, desc):
    return Refusal(status, {"error": error, "error_description": desc})


def entra_error(status, error, code, text):
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    return Refusal(status, {
        "error": error,
        "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s" % (
            code, text, trace, corr, now),
        "error_codes": [code], "timestamp": now, "trace_id": trace, "correlation_id": corr,
        "error_uri": "https://login.microsoftonline.com/error?code=%d" % code})


def b64url_decode(s):
    if not s or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                    for c in s) or len(s) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def split_jwt(jwt, bad):
    """(header, claims, signing input, signature) or raise bad."""
    parts = (jwt or "").split(".")
    if len(parts) != 3:
        raise bad
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise bad
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise bad
    return header, claims, (parts[0] + "." + parts[1]).encode(), sig


def verify(pub, alg, data, sig):
    try:
        if alg == "RS256":
            pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            pub.verify(sig, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
        else:
            return False
        return True
    except InvalidSignature:
        return False


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_service_account(form, note):
    bad_sig = google_error(400, "invalid_grant", "Invalid JWT Signature.")
    header, claims, data, sig = split_jwt(form.get("assertion"), bad_sig)
    note.update(alg=header.get("alg"), kid=header.get("kid"), iss=claims.get("iss"),
                sub=claims.get("sub"), aud=claims.get("aud"), scope=claims.get("scope"))
    if header.get("alg") != "RS256" or header.get("kid") != ARGS.kid:
        raise bad_sig
    if claims.get("iss") != ARGS.sa_email or not verify(KEYS["sa"], "RS256", data, sig):
        raise bad_sig
    iat, exp, now = claims.get("iat"), claims.get("exp"), int(time.time())
    if not is_int(iat) or not is_int(exp):
        raise google_error(400, "invalid_grant", GOOGLE_TIME)
    note["lifetime"] = exp - iat
    if exp - iat > 3600 or exp <= iat or iat > now + 300 or exp < now:
        raise google_error(400, "invalid_grant", GOOGLE_TIME)
    if claims.get("aud") != URL:
        raise google_error(400, "invalid_grant", "Invalid JWT: Failed audience check.")
    if not claims.get("scope"):
        raise google_error(400, "invalid_scope", "Empty or missing scope not allowed.")
    if ARGS.deny_subject or claims.get("sub") != ARGS.subject or claims.get("scope") != ARGS.scope:
        raise google_error(401, "unauthorized_client", GOOGLE_DWD)


def check_assertion(form, note):
    if form.get("client_id") != ARGS.client_id:
        raise entra_error(400, "unauthorized_client", 700016,
                          "Application with identifier '%s' was not found in the directory."
                          % form.get("client_id"))
    if form.get("client_secret") is not None:
        raise entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        raise entra_error(400, "invalid_request", 7000218,
                          "The request body must contain the following parameter: "
                          "'client_assertion' or 'client_secret'.")
    malformed = entra_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
    header, claims, data, sig = split_jwt(form.get("client_assertion"), malformed)
    alg = header.get("alg")
    note.update(alg=alg, iss=claims.get("iss"), sub=claims.get("sub"), aud=claims.get("aud"),
                has_jti=bool(claims.get("jti")), x5t_s256_ok=header.get("x5t#S256") == KEYS["s256"])
    named = ((alg == "PS256" and header.get("x5t#S256") == KEYS["s256"]) or
             (alg == "RS256" and header.get("x5t") == KEYS["s1"]))
    if not named:
        raise entra_error(401, "invalid_client", 700027,
                          "Client assertion contains an invalid signature. [Reason - The key was "
                          "not found.]")
    if not verify(KEYS["app"], alg, data, sig):
        raise entra_error(401, "invalid_client", 700027,
                          "Client assertion contains an invalid signature. [Reason - The provided "
                          "signature value did not match the expected signature value.]")
    if claims.get("iss") != ARGS.client_id or claims.get("sub") != ARGS.client_id:
        raise entra_error(401, "invalid_client", 700021,
                          "Client assertion application identifier doesn't match 'client_id' "
                          "parameter.")
    if claims.get("aud") != URL:
        raise entra_error(401, "invalid_client", 50027,
                          "JWT token is invalid or malformed. [Reason - The audience claim does "
                          "not match.]")
    nbf, exp, now = claims.get("nbf"), claims.get("exp"), int(time.time())
    if not is_int(exp) or (nbf is not None and not is_int(nbf)):
        raise malformed
    start = nbf if nbf is not None else claims.get("iat", now)
    note["lifetime"] = exp - start
    if exp <= now or start > now + 300 or exp - start > 600:
        raise entra_error(401, "invalid_client", 700024,
                          "Client assertion is not within its valid time range.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise malformed
    with ts.LOCK:
        replay = jti in SEEN_JTI
        SEEN_JTI.add(jti)
    if replay:
        raise entra_error(401, "invalid_client", 50027,
                          "JWT token is invalid or malformed. [Reason - jti already used.]")


def issue(note):
    tok = "at-%d-%s" % (note["n"], secrets.token_urlsafe(24))
    with ts.LOCK:
        ts.STATE["issued"][tok] = note["n"]
    return tok


class TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n).decode("ascii", "replace")
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, strict_parsing=False)
        form = {}
        dup = False
        for k, v in pairs:
            dup |= k in form
            form[k] = v
        with ts.LOCK:
            ts.STATE["n"] += 1
            note = {"event": "token_request", "n": ts.STATE["n"], "grant_type": form.get("grant_type")}
        status, resp = 200, None
        try:
            if self.path != "/token" or dup or "application/x-www-form-urlencoded" not in \
                    self.headers.get("Content-Type", ""):
                raise google_error(400, "invalid_request", "Bad Request")
            if form.get("grant_type") == JWT_BEARER and KEYS.get("sa"):
                check_service_account(form, note)
                resp = {"access_token": issue(note), "expires_in": ARGS.expires_in,
                        "token_type": "Bearer"}
            elif form.get("grant_type") == "client_credentials" and KEYS.get("app"):
                check_assertion(form, note)
                resp = {"token_type": "Bearer", "expires_in": ARGS.expires_in,
                        "ext_expires_in": ARGS.expires_in, "access_token": issue(note)}
            elif form.get("grant_type") == "refresh_token" and KEYS.get("app"):
                check_assertion(form, note)  # the client first, then its grant
                if form.get("refresh_token") != ARGS.refresh_token:
                    raise entra_error(400, "invalid_grant", 9002313,
                                      "Invalid request. Request is malformed or invalid.")
                resp = {"token_type": "Bearer", "expires_in": ARGS.expires_in,
                        "ext_expires_in": ARGS.expires_in, "access_token": issue(note)}
                if ARGS.rt_expires_in:  # as Google answers apps in "Testing"
                    resp["refresh_token_expires_in"] = ARGS.rt_expires_in
            else:
                raise google_error(400, "unsupported_grant_type",
                                   "Invalid grant_type: %s" % form.get("grant_type"))
        except Refusal as r:
            status, resp = r.status, r.body
            note["error"] = r.body["error"]
            note["error_codes"] = r.body.get("error_codes")
        ts.record(**note)
        self.answer(status, resp)


def load_keys():
    if ARGS.sa_key:
        with open(ARGS.sa_key, "rb") as f:
            KEYS["sa"] = serialization.load_pem_private_key(f.read(), None).public_key()
    if ARGS.app_cert:
        with open(ARGS.app_cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        der = cert.public_bytes(serialization.Encoding.DER)
        KEYS["app"] = cert.public_key()
        KEYS["s256"] = b64url(hashlib.sha256(der).digest())
        KEYS["s1"] = b64url(hashlib.sha1(der).digest())


def parse_args():
    p = argparse.ArgumentParser()
    for a in ("--cert", "--key", "--record"):
        p.add_argument(a, required=True)
    p.add_argument("--sa-key")
    p.add_argument("--sa-email", default="relay@proj.iam.gserviceaccount.com")
    p.add_argument("--kid", default="kid-1")
    p.add_argument("--subject", default="scanner@example.com")
    p.add_argument("--scope", default="https://mail.google.com/")
    p.add_argument("--deny-subject", action="store_true")
    p.add_argument("--app-cert")
    p.add_argument("--client-id", default="app-1")
    p.add_argument("--refresh-token", default="rt-initial")
    p.add_argument("--rt-expires-in", type=int, default=0)
    p.add_argument("--expires-in", type=int, default=3599)
    p.add_argument("--lifetime", type=float, default=120.0)
    a = p.parse_args()
    a.static_token, a.revoke_first = None, False  # what token_server's SMTP side reads
    return a


async def main():
    global ARGS, URL
    ARGS = parse_args()
    ts.ARGS = ARGS
    load_keys()
    ctx = ts.tls_context(ARGS.cert, ARGS.key)
    httpd = ts.start_https(TokenHandler, ctx)
    URL = "https://127.0.0.1:%d/token" % httpd.server_address[1]
    loop = asyncio.get_running_loop()
    await ts.serve(loop, ARGS.lifetime, httpd, await ts.start_smtp(loop, ctx))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
