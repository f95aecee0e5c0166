#!/usr/bin/python3
"""api_fake.py - local HTTPS stand-ins for Microsoft Graph's mail API and
the Gmail API, with an OAuth2 token endpoint, for the integration tests.

These are STAND-INS for services that cannot run here (no Internet, and no
Microsoft or Google server software exists to run locally). They implement
the request and response formats from the providers' documentation, and
they are strict about them, so that the proxy cannot pass by being lax:

Microsoft Graph (learn.microsoft.com/graph: user-sendmail, user-post-messages,
message-post-attachments, attachment-createuploadsession,
outlook-large-attachments, message-send, resources/uploadsession):
  POST /v1.0/users/{mailbox}/sendMail
      Content-Type: text/plain -> the body must be strict base64 (no line
      breaks) of a MIME message: else 400 ErrorMimeContentInvalidBase64String
      "Invalid base64 string for MIME content."; application/json -> a
      {"message": {...}, "saveToSentItems": bool} object. Any other type: 415.
      Request over 4 MiB: 413. Answer: 202, no body, a request-id header.
  POST /v1.0/users/{mailbox}/messages (application/json) -> 201 with the
      whole message resource as Graph documents it (the request's fields,
      body included, with "@odata.context", "@odata.etag", "id",
      "createdDateTime", "changeKey", "isDraft": true, ...).
  POST .../messages/{id}/attachments (application/json): a
      #microsoft.graph.fileAttachment with strict base64 contentBytes of at
      most 3 MiB decoded -> 201 with the attachment resource, contentBytes
      included (as documented: the echo is as large as the request).
  POST .../messages/{id}/attachments/createUploadSession (application/json):
      {"AttachmentItem": {"attachmentType": "file", "name", "size" <= 150 MB}}
      -> 201 {"uploadUrl", "expirationDateTime", "nextExpectedRanges": ["0"]}
      The uploadUrl is on ANOTHER host than the API (Graph's is
      outlook.office.com): a second listener, named 127.0.0.1 where the
      API is reached as localhost; the API's own listener does not serve it.
  PUT {uploadUrl}: no Authorization header (the URL is pre-authenticated;
      one is refused with 401), Content-Range "bytes a-b/total" where
      total is the declared size, a continues the previous chunk, b < total,
      Content-Length == b - a + 1, at most 4 MiB, a multiple of 320 KiB
      unless it is the last chunk -> 200 {"nextExpectedRanges": ["b+1"]}, or
      201 with a Location header after the last byte. Anything else: 400/416.
  POST .../messages/{id}/send: Content-Length 0, every upload complete
      -> 202. DELETE .../messages/{id} -> 204.
  Every request needs "Authorization: Bearer <token>" with a token the
  token endpoint issued and that is younger than --token-ttl: else 401
  InvalidAuthenticationToken. A mailbox other than --mailbox: 404
  ErrorInvalidUser. Errors are {"error": {"code", "message", "innerError":
  {"request-id", "date"}}}.
Gmail API (developers.google.com/gmail/api: users.messages.send, uploads):
  POST /upload/gmail/v1/users/{me|mailbox}/messages/send?uploadType=media
      Content-Type: message/rfc822, at most 35 MiB (413 above), a message
      with a recipient header (else 400 invalidArgument "Recipient address
      required") -> 200 {"id", "threadId", "labelIds": ["SENT"]}. Errors are
      {"error": {"code", "message", "errors": [{"message", "domain",
      "reason"}], "status"}}.
  GET /gmail/v1/users/{me|mailbox}/profile -> 200 {"emailAddress",
      "messagesTotal", "threadsTotal", "historyId"} (users.getProfile: the probe).
Token endpoint: POST /token, tests/tools/token_server.py's handler (the same
grants, secrets and records).

Modes (--mode): ok; throttle-first (the first sending request gets 429 with
Retry-After: --retry-after); sendas-denied (Graph 403 ErrorSendAsDenied);
no-readwrite (Graph: creating a draft is 403 ErrorAccessDenied); error500
(sending requests get 503); delay (sending requests are answered after
--delay seconds).
Graph's documented temporary answers, on demand: --consistency-404 N (the
first N requests on each new draft get 404 ErrorItemNotFound: eventual
consistency); --expire-upload N (the first N upload sessions expire after
their first chunk: 404 ErrorItemNotFound on the next PUT); --fail-send
STATUS (the first /send gets 409 ErrorIrresolvableConflict, 412
ErrorIncorrectUpdatePropertyCount or 423 ErrorItemLocked... as STATUS
says); --close-on-send (the first /send: the connection is closed without
an answer); --revoke-after-draft (once a draft exists, every token issued
so far is refused with 401 and the next token request fails with 500).

Prints "READY <port>". Records one flat JSON line per request to --record
(never a token or secret; a sent message's attachments follow it, one
"attachment" line each) and keeps received messages and attachments as
files under --store. Exits on SIGTERM or after --lifetime seconds.
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import types
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import token_server  # noqa: E402  (the token endpoint is shared with the SMTP tests)

KIB = 1024
MIB = 1024 * KIB
GRAPH_REQUEST_MAX = 4 * MIB
GRAPH_INLINE_MAX = 3 * MIB
GRAPH_CHUNK_MAX = 4 * MIB
GRAPH_CHUNK_UNIT = 320 * KIB
GRAPH_ATTACH_MAX = 150 * 1000 * 1000
GMAIL_MAX = 36700160  # the discovery document's maxSize for media uploads

ARGS = None
LOCK = threading.Lock()
ISSUED_AT = {}          # token -> time it was issued
DRAFTS = {}             # id -> {"json", "attachments": [...]}
SESSIONS = {}           # session id -> {"draft", "name", "size", "got", "file", "chunks", ...}
COUNTERS = {"n": 0, "sends": 0, "expired": 0, "fail_send": 0, "closed": 0}
REVOKED = set()         # tokens refused from now on (--revoke-after-draft)
FLAGS = {"fail_token": False}
UPLOAD_PORT = [0]
B64_RE = re.compile(rb"\A[A-Za-z0-9+/]*={0,2}\Z")


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--kind", choices=["graph", "gmail"], required=True)
    p.add_argument("--mailbox", default="scanner@contoso.example")
    p.add_argument("--client-id", default="client-1")
    p.add_argument("--client-secret", default=None)
    p.add_argument("--refresh-token", default="rt-initial")
    p.add_argument("--expires-in", type=int, default=3600)
    p.add_argument("--token-ttl", type=float, default=1e9,
                   help="seconds a token is accepted (shorter than expires-in: expiry mid-run)")
    p.add_argument("--mode", default="ok",
                   choices=["ok", "throttle-first", "sendas-denied", "no-readwrite", "error500",
                            "delay"])
    p.add_argument("--retry-after", default="2")
    p.add_argument("--delay", type=float, default=2.0)
    p.add_argument("--lifetime", type=float, default=120.0)
    p.add_argument("--consistency-404", type=int, default=0)
    p.add_argument("--expire-upload", type=int, default=0)
    p.add_argument("--fail-send", type=int, default=0, choices=[0, 409, 412, 423])
    p.add_argument("--close-on-send", action="store_true")
    p.add_argument("--revoke-after-draft", action="store_true")
    p.add_argument("--self-test", metavar="CA",
                   help="send the requests a lax client might send, over TLS checked against CA, "
                        "check that each is refused as documented, print SELFTEST OK, exit")
    return p.parse_args()


def record(**ev):
    token_server.record(**ev)


def strict_b64(data):
    if len(data) % 4 or not B64_RE.match(data):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def keep(name, data):
    path = os.path.join(ARGS.store, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


class Handler(token_server.TokenHandler):
    protocol_version = "HTTP/1.1"
    upload_host = False  # UploadHandler: the upload URLs' own host
    disable_nagle_algorithm = True  # a head and a body in two writes: no delayed-ACK stall

    # ---- plumbing ----------------------------------------------------------
    def log_message(self, fmt, *a):
        pass

    def rid(self):
        with LOCK:
            COUNTERS["n"] += 1
            return "req-%d-%s" % (COUNTERS["n"], secrets.token_hex(4))

    def reply(self, status, obj=None, headers=None, raw=None):
        body = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(status)
        rid = self.rid()
        self.send_header("request-id", rid)
        self.send_header("client-request-id", rid)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
        return rid

    def graph_error(self, status, code, message, headers=None):
        rid = "err-" + secrets.token_hex(4)
        record(event="error", status=status, code=code, path=self.path_only)
        return self.reply(status, {"error": {"code": code, "message": message,
                                             "innerError": {"request-id": rid,
                                                            "date": "2026-11-30T10:00:00"}}},
                          headers)

    def gmail_error(self, status, reason, message, st, headers=None):
        record(event="error", status=status, code=reason, path=self.path_only)
        return self.reply(status, {"error": {"code": status, "message": message,
                                             "errors": [{"message": message, "domain": "global",
                                                         "reason": reason}],
                                             "status": st}}, headers)

    def error(self, status, code, message, headers=None):
        if ARGS.kind == "gmail":
            st = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
                  503: "UNAVAILABLE"}.get(status, "UNKNOWN")
            return self.gmail_error(status, code, message, st, headers)
        return self.graph_error(status, code, message, headers)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            return None
        n = self.headers.get("Content-Length")
        if n is None and self.command in ("DELETE", "GET"):
            return b""  # RFC 9112 6.3: no Content-Length, no body (POST and PUT: 411)
        if n is None or not n.isdigit():
            return None
        return self.rfile.read(int(n))

    def bearer_ok(self):
        """A token the endpoint issued, not older than --token-ttl."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return "missing"
        tok = auth[7:]
        with LOCK:
            at = ISSUED_AT.get(tok)
            if at is None and tok in token_server.STATE["issued"]:
                # issued just now: its answer went out before do_POST noted the time
                at = ISSUED_AT[tok] = time.time()
        if at is None:
            return "unknown"
        if tok in REVOKED:
            return "revoked"
        if time.time() - at > ARGS.token_ttl:
            return "expired"
        return None

    def unauthorized(self, why):
        record(event="unauthorized", why=why, path=self.path_only)
        if ARGS.kind == "gmail":
            return self.gmail_error(401, "authError", "Request had invalid authentication "
                                    "credentials.", "UNAUTHENTICATED",
                                    {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return self.graph_error(401, "InvalidAuthenticationToken",
                                "Lifetime validation failed, the token is expired."
                                if why == "expired" else "Access token is empty or invalid.")

    def throttled(self):
        """throttle-first: one 429 for the first sending request."""
        if ARGS.mode != "throttle-first":
            return False
        with LOCK:
            COUNTERS["sends"] += 1
            first = COUNTERS["sends"] == 1
        if not first:
            return False
        if ARGS.kind == "gmail":
            self.gmail_error(429, "rateLimitExceeded", "Rate Limit Exceeded",
                             "RESOURCE_EXHAUSTED", {"Retry-After": ARGS.retry_after})
        else:
            self.graph_error(429, "ApplicationThrottled",
                             "Application is over its MailboxConcurrency limit.",
                             {"Retry-After": ARGS.retry_after})
        return True

    def sending_fault(self):
        if ARGS.mode == "delay":
            time.sleep(ARGS.delay)
        if ARGS.mode == "error500":
            self.error(503, "serviceNotAvailable" if ARGS.kind == "gmail" else "ServiceNotAvailable",
                       "The service is temporarily unavailable.")
            return True
        return self.throttled()

    # ---- dispatch ----------------------------------------------------------
    def do_POST(self):
        self.path_only = urllib.parse.urlsplit(self.path).path
        if self.path_only == "/token":
            with LOCK:
                before = set(token_server.STATE["issued"])
                fail, FLAGS["fail_token"] = FLAGS["fail_token"], False
            if fail:  # --revoke-after-draft: this refresh fails (the next one works)
                token_server.ARGS.mode = "http500"
                try:
                    return token_server.TokenHandler.do_POST(self)
                finally:
                    token_server.ARGS.mode = "ok"
            token_server.TokenHandler.do_POST(self)
            with LOCK:
                for t in set(token_server.STATE["issued"]) - before:
                    ISSUED_AT.setdefault(t, time.time())
            return
        self.dispatch("POST")

    def do_PUT(self):
        self.path_only = urllib.parse.urlsplit(self.path).path
        self.dispatch("PUT")

    def do_DELETE(self):
        self.path_only = urllib.parse.urlsplit(self.path).path
        self.dispatch("DELETE")

    def do_GET(self):
        self.path_only = urllib.parse.urlsplit(self.path).path
        self.read_body()
        why = self.bearer_ok()
        if why:
            return self.unauthorized(why)
        self.probe_get()

    def probe_get(self):
        """The probes' cheap authenticated reads: Graph GET /users/{id}
        ($select=id: {"id"} only), Gmail users.getProfile."""
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if ARGS.kind == "gmail":
            m = re.fullmatch(r"/gmail/v1/users/([^/]+)/profile", self.path_only)
            if not m:
                return self.error(404, "notFound", "Not Found")
            user = urllib.parse.unquote(m.group(1))
            if user != "me" and user.lower() != ARGS.mailbox.lower():
                return self.error(403, "forbidden", "Delegation denied for " + user)
            record(event="probe_get", user=user)
            return self.reply(200, {"emailAddress": ARGS.mailbox, "messagesTotal": 0,
                                    "threadsTotal": 0, "historyId": "1"})
        m = re.fullmatch(r"/v1\.0/users/([^/]+)", self.path_only)
        if not m:
            return self.error(404, "ResourceNotFound", "Resource not found for the segment.")
        user = urllib.parse.unquote(m.group(1))
        if user.lower() != ARGS.mailbox.lower():
            return self.error(404, "Request_ResourceNotFound",
                              "Resource '%s' does not exist or one of its queried reference-"
                              "property objects are not present." % user)
        if q.get("$select") != ["id"]:
            return self.error(400, "BadRequest", "the probe asks for $select=id")
        record(event="probe_get", user=user)
        self.reply(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users"
                         "(id)/$entity", "id": "0f8fad5b-d9cb-469f-a165-70867728950e"})

    def dispatch(self, method):
        body = self.read_body()
        if body is None:
            return self.error(411, "lengthRequired", "Content-Length is required")
        if self.upload_host:
            if ARGS.kind == "graph" and method == "PUT" and self.path_only.startswith("/upload/"):
                return self.graph_upload(body)  # pre-authenticated URL
            return self.error(404, "ResourceNotFound", "Only upload URLs are served here.")
        if self.path_only.startswith("/upload/") and ARGS.kind == "graph":
            return self.error(404, "ResourceNotFound", "Upload URLs are on their own host.")
        why = self.bearer_ok()
        if why:
            return self.unauthorized(why)
        if ARGS.kind == "gmail":
            return self.gmail(method, body)
        return self.graph(method, body)

    # ---- Gmail -------------------------------------------------------------
    def gmail(self, method, body):
        m = re.fullmatch(r"/upload/gmail/v1/users/([^/]+)/messages/send", self.path_only)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if method != "POST" or not m:
            return self.error(404, "notFound", "Not Found")
        user = urllib.parse.unquote(m.group(1))
        if user != "me" and user.lower() != ARGS.mailbox.lower():
            return self.error(403, "forbidden", "Delegation denied for " + user)
        if q.get("uploadType") != ["media"]:
            return self.error(400, "invalidArgument", "uploadType must be media here")
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "message/rfc822":
            return self.error(400, "invalidArgument",
                              "Media type '%s' is not supported." % ctype)
        if len(body) > GMAIL_MAX:
            return self.error(413, "uploadTooLarge", "Request Entity Too Large")
        head = body.split(b"\r\n\r\n", 1)[0]
        if not re.search(rb"(?im)^(to|cc|bcc):", head):
            return self.error(400, "invalidArgument", "Recipient address required")
        if self.sending_fault():
            return
        mid = "%x" % (0x18c0000000000000 + COUNTERS["n"])
        path = keep("gmail-%s.eml" % mid, body)
        record(event="gmail_send", user=user, size=len(body), file=path,
               sha256=hashlib.sha256(body).hexdigest(), content_type=ctype)
        self.reply(200, {"id": mid, "threadId": mid, "labelIds": ["SENT"]})

    # ---- Graph -------------------------------------------------------------
    def graph(self, method, body):
        m = re.fullmatch(r"/v1\.0/users/([^/]+)(/.*)", self.path_only)
        if not m:
            return self.error(404, "ResourceNotFound", "Resource not found for the segment.")
        user, rest = urllib.parse.unquote(m.group(1)), m.group(2)
        if user.lower() != ARGS.mailbox.lower():
            return self.error(404, "ErrorInvalidUser",
                              "The requested user '%s' is invalid." % user)
        if len(body) > GRAPH_REQUEST_MAX:
            return self.error(413, "RequestBodyTooLarge", "The request body is too large.")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if method == "POST" and rest == "/sendMail":
            return self.graph_sendmail(ctype, body)
        if method == "POST" and rest == "/messages":
            return self.graph_draft(ctype, body)
        m = re.fullmatch(r"/messages/([^/]+)(/.*)?", rest)
        if not m:
            return self.error(404, "ResourceNotFound", "Resource not found for the segment.")
        mid, tail = urllib.parse.unquote(m.group(1)), m.group(2) or ""
        with LOCK:
            draft = DRAFTS.get(mid)
        if draft is None:
            return self.error(404, "ErrorItemNotFound", "The specified object was not found.")
        with LOCK:
            miss = tail != "" and draft["misses"] > 0
            if miss:
                draft["misses"] -= 1
        if miss:  # --consistency-404: the new draft is not visible on this replica yet
            record(event="consistency_404", id=mid, tail=tail)
            return self.error(404, "ErrorItemNotFound", "The specified object was not found in "
                              "the store.")
        if method == "DELETE" and tail == "":
            with LOCK:
                DRAFTS.pop(mid, None)
            record(event="graph_delete", id=mid)
            return self.reply(204)
        if method == "POST" and tail == "/attachments":
            return self.graph_attach(draft, ctype, body)
        if method == "POST" and tail == "/attachments/createUploadSession":
            return self.graph_session(mid, draft, ctype, body)
        if method == "POST" and tail == "/send":
            return self.graph_send(mid, draft, body)
        return self.error(400, "BadRequest", "Unsupported request")

    def json_body(self, ctype, body):
        if ctype != "application/json":
            self.error(415, "UnsupportedMediaType", "Content-Type must be application/json")
            return None
        try:
            return json.loads(body)
        except ValueError:
            self.error(400, "BadRequest", "Unable to read JSON request payload.")
            return None

    def graph_sendmail(self, ctype, body):
        if ctype == "text/plain":
            mime = strict_b64(body)
            if mime is None:
                return self.error(400, "ErrorMimeContentInvalidBase64String",
                                  "Invalid base64 string for MIME content.")
            if self.sending_fault():
                return
            if ARGS.mode == "sendas-denied":
                return self.sendas_denied()
            path = keep("sendmail-%d.eml" % COUNTERS["n"], mime)
            record(event="graph_sendmail", format="mime", size=len(mime), file=path,
                   sha256=hashlib.sha256(mime).hexdigest(), request_size=len(body))
            return self.reply(202)
        if ctype == "application/json":
            obj = self.json_body(ctype, body)
            if obj is None:
                return
            msg = obj.get("message") if isinstance(obj, dict) else None
            if not isinstance(msg, dict) or not self.recipients_ok(msg):
                return self.error(400, "ErrorInvalidRecipients",
                                  "At least one recipient is not valid.")
            if self.sending_fault():
                return
            if ARGS.mode == "sendas-denied":
                return self.sendas_denied()
            atts = []
            for a in msg.get("attachments", []):
                data = strict_b64(a.get("contentBytes", "").encode())
                if a.get("@odata.type") != "#microsoft.graph.fileAttachment" or data is None:
                    return self.error(400, "ErrorInvalidAttachment", "Invalid attachment.")
                atts.append(self.keep_attachment(a, data, "inline"))
            content = msg.get("body", {}).get("content", "")
            body_file = keep("body-%s.txt" % secrets.token_hex(4), content.encode())
            record(event="graph_sendmail", format="json", body_file=body_file,
                   saveToSentItems=obj.get("saveToSentItems", True), attachments=len(atts),
                   request_size=len(body), **summary(msg))
            for a in atts:
                record(event="attachment", **a)
            return self.reply(202)
        return self.error(415, "UnsupportedMediaType",
                          "Content-Type must be text/plain (MIME) or application/json")

    def sendas_denied(self):
        return self.error(403, "ErrorSendAsDenied",
                          "The user account which was used to submit this request does not have "
                          "the right to send mail on behalf of the specified sending account., "
                          "Cannot submit message.")

    def recipients_ok(self, msg):
        n = 0
        for key in ("toRecipients", "ccRecipients", "bccRecipients"):
            for r in msg.get(key, []):
                addr = r.get("emailAddress", {}).get("address", "")
                if "@" not in addr:
                    return False
                n += 1
        return n > 0

    def keep_attachment(self, a, data, via, chunks=None):
        path = keep("att-%s-%s" % (secrets.token_hex(4), re.sub(r"[^A-Za-z0-9._-]", "_",
                                                        a.get("name", "x"))), data)
        return {"name": a.get("name"), "contentType": a.get("contentType"),
                "isInline": a.get("isInline", False), "contentId": a.get("contentId"),
                "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "file": path,
                "via": via, "chunks": chunks}

    def graph_draft(self, ctype, body):
        obj = self.json_body(ctype, body)
        if obj is None:
            return
        if ARGS.mode == "no-readwrite":
            return self.error(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                              "and try again.")
        if not isinstance(obj, dict) or "body" not in obj or not self.recipients_ok(obj):
            return self.error(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
        mid = "AAMkAD%s=" % secrets.token_hex(8)
        with LOCK:
            DRAFTS[mid] = {"json": obj, "attachments": [], "misses": ARGS.consistency_404}
            if ARGS.revoke_after_draft and not REVOKED:
                REVOKED.update(ISSUED_AT)
                REVOKED.update(token_server.STATE["issued"])
                FLAGS["fail_token"] = True
        record(event="graph_draft", id=mid, **summary(obj))
        # The documented 201: the whole message resource, the body echoed.
        echo = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('%s')/"
                                  "messages/$entity" % ARGS.mailbox,
                "@odata.etag": 'W/"CQAAABYAAAC4ofQHEIqCSbQPot83AFcbAAAW/IUy"',
                "id": mid, "createdDateTime": "2026-11-30T10:00:00Z",
                "lastModifiedDateTime": "2026-11-30T10:00:00Z",
                "changeKey": "CQAAABYAAAC4ofQHEIqCSbQPot83AFcbAAAW/IUy", "categories": [],
                "receivedDateTime": "2026-11-30T10:00:00Z", "sentDateTime": None,
                "hasAttachments": False, "internetMessageId": obj.get("internetMessageId"),
                "bodyPreview": obj.get("body", {}).get("content", "")[:255],
                "importance": "normal", "parentFolderId": "AQMkADYAAAIBDwAAAA==",
                "conversationId": "AAQkAD" + secrets.token_hex(8), "isDeliveryReceiptRequested":
                False, "isReadReceiptRequested": False, "isRead": True, "isDraft": True,
                "webLink": "https://outlook.office365.com/owa/?ItemID=%s" % mid,
                "inferenceClassification": "focused"}
        for k, v in obj.items():
            echo.setdefault(k, v)
        self.reply(201, echo)

    def graph_attach(self, draft, ctype, body):
        a = self.json_body(ctype, body)
        if a is None:
            return
        data = strict_b64(a.get("contentBytes", "").encode()) if isinstance(a, dict) else None
        if a.get("@odata.type") != "#microsoft.graph.fileAttachment" or data is None \
                or not a.get("name"):
            return self.error(400, "ErrorInvalidAttachment", "Invalid fileAttachment.")
        if len(data) > GRAPH_INLINE_MAX:
            return self.error(413, "ErrorAttachmentSizeLimitExceeded",
                              "Attachments over 3 MB need an upload session.")
        att = self.keep_attachment(a, data, "inline")
        with LOCK:
            draft["attachments"].append(att)
        record(event="graph_attachment", name=att["name"], size=att["size"])
        # The documented 201: the attachment resource, contentBytes included.
        self.reply(201, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('%s')"
                                           "/messages('%s')/attachments/$entity" % (
                                               ARGS.mailbox, "x"),
                         "@odata.type": "#microsoft.graph.fileAttachment",
                         "id": "AAMkADA1M-att-%d" % len(draft["attachments"]),
                         "lastModifiedDateTime": "2026-11-30T10:00:00Z", "name": att["name"],
                         "contentType": a.get("contentType"), "size": len(data),
                         "isInline": a.get("isInline", False), "contentId": a.get("contentId"),
                         "contentLocation": None, "contentBytes": a["contentBytes"]})

    def graph_session(self, mid, draft, ctype, body):
        obj = self.json_body(ctype, body)
        if obj is None:
            return
        item = obj.get("AttachmentItem") if isinstance(obj, dict) else None
        if not isinstance(item, dict) or item.get("attachmentType") != "file" \
                or not item.get("name") or not isinstance(item.get("size"), int) \
                or not 0 < item["size"] <= GRAPH_ATTACH_MAX:
            return self.error(400, "ErrorInvalidRequest", "Invalid AttachmentItem.")
        sid = secrets.token_hex(8)
        with LOCK:
            SESSIONS[sid] = {"draft": mid, "item": item, "size": item["size"], "got": 0,
                             "data": bytearray(), "chunks": [], "done": False}
            draft["attachments"].append({"session": sid})
        record(event="graph_session", name=item["name"], size=item["size"])
        url = "https://127.0.0.1:%d/upload/%s?authtoken=%s" % (
            UPLOAD_PORT[0], sid, secrets.token_urlsafe(12))
        self.reply(201, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata"
                                           "#microsoft.graph.uploadSession",
                         "uploadUrl": url, "expirationDateTime": "2026-12-01T10:00:00Z",
                         "nextExpectedRanges": ["0"]})

    def graph_upload(self, body):
        sid = self.path_only[len("/upload/"):]
        with LOCK:
            s = SESSIONS.get(sid)
        if s is None or s.get("expired"):
            return self.error(404, "ErrorItemNotFound", "Upload session not found or expired.")
        if "Authorization" in self.headers:
            return self.graph_error(401, "InvalidAuthenticationToken",
                                    "Do not send an Authorization header to the upload URL.")
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", self.headers.get("Content-Range", ""))
        if not m:
            return self.error(400, "InvalidContentRange", "Content-Range is missing or invalid.")
        a, b, total = int(m.group(1)), int(m.group(2)), int(m.group(3))
        n = len(body)
        last = b == total - 1
        bad = None
        if total != s["size"]:
            bad = "the total does not match the declared size %d" % s["size"]
        elif a != s["got"]:
            bad = "the range does not continue at %d" % s["got"]
        elif b >= total or b < a:
            bad = "the range goes past the declared size"
        elif n != b - a + 1:
            bad = "Content-Length does not match the range"
        elif n > GRAPH_CHUNK_MAX:
            bad = "a chunk over 4 MiB"
        elif not last and n % GRAPH_CHUNK_UNIT:
            bad = "a chunk that is not a multiple of 320 KiB"
        if bad:
            record(event="upload_refused", why=bad, range=self.headers.get("Content-Range"))
            return self.error(416 if "past" in bad else 400, "InvalidContentRange", bad)
        with LOCK:
            s["data"] += body
            s["got"] = b + 1
            s["chunks"].append(n)
        record(event="graph_chunk", start=a, end=b, total=total, size=n)
        with LOCK:
            expire = not last and COUNTERS["expired"] < ARGS.expire_upload
            if expire:  # --expire-upload: the session expires after this chunk
                COUNTERS["expired"] += 1
                s["expired"] = True
                d = DRAFTS.get(s["draft"])
                if d:
                    d["attachments"] = [x for x in d["attachments"] if x.get("session") != sid]
        if expire:
            record(event="upload_expired", session=sid)
        if not last:
            return self.reply(200, {"expirationDateTime": "2026-12-01T10:00:00Z",
                                    "nextExpectedRanges": [str(b + 1)]})
        with LOCK:
            s["done"] = True
        self.reply(201, headers={"Location": "https://127.0.0.1/attachments/%s" % sid})

    def graph_send(self, mid, draft, body):
        if body or self.headers.get("Content-Length") != "0":
            return self.error(400, "BadRequest", "send takes no body (Content-Length: 0)")
        with LOCK:
            close = ARGS.close_on_send and not COUNTERS["closed"]
            COUNTERS["closed"] += close
            fail = ARGS.fail_send and not COUNTERS["fail_send"]
            COUNTERS["fail_send"] += bool(fail)
        if close:  # --close-on-send: the connection drops before any answer
            record(event="closed_on_send", id=mid)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fail:
            code = {409: "ErrorIrresolvableConflict", 412: "ErrorIncorrectUpdatePropertyCount",
                    423: "ErrorItemLocked"}[ARGS.fail_send]
            return self.error(ARGS.fail_send, code, "The send operation could not be completed "
                              "now.")
        with LOCK:  # (never answer while holding it: rid() takes it too)
            unfinished = any("session" in a and not SESSIONS[a["session"]]["done"]
                             for a in draft["attachments"])
            parts = list(draft["attachments"])
        if unfinished:
            return self.error(400, "ErrorInvalidAttachment", "An upload is unfinished.")
        atts = []
        for a in parts:
            if "session" in a:
                s = SESSIONS[a["session"]]
                atts.append(self.keep_attachment(s["item"], bytes(s["data"]), "session",
                                                 s["chunks"]))
                s["data"] = bytearray()
            else:
                atts.append(a)
        if self.sending_fault():
            return
        if ARGS.mode == "sendas-denied":
            return self.sendas_denied()
        with LOCK:
            DRAFTS.pop(mid, None)
        record(event="graph_send", id=mid, attachments=len(atts), **summary(draft["json"]))
        for a in atts:
            record(event="attachment", **a)
        self.reply(202)


class UploadHandler(Handler):
    """The upload URLs' host (Graph's is outlook.office.com, not
    graph.microsoft.com): PUT to an upload URL, nothing else."""
    upload_host = True

    def do_POST(self):
        self.path_only = urllib.parse.urlsplit(self.path).path
        self.dispatch("POST")


def summary(msg):
    """What a test checks of a Graph message resource."""
    def addrs(key):
        return [r.get("emailAddress", {}).get("address") for r in msg.get(key, [])]
    body = msg.get("body", {})
    content = body.get("content", "")
    return {"subject": msg.get("subject"), "bodyType": body.get("contentType"),
            "body": content if len(content) < 2000 else None,
            "body_sha256": hashlib.sha256(content.encode()).hexdigest(),
            "from": msg.get("from", {}).get("emailAddress", {}).get("address"),
            "to": addrs("toRecipients"), "cc": addrs("ccRecipients"),
            "bcc": addrs("bccRecipients"), "internetMessageId": msg.get("internetMessageId")}


def self_test(port):
    """The stand-in refuses what the documentation does not allow (run by
    tests/integration/test_api.c): each case is (what, request, status)."""
    import http.client
    ctx = ssl.create_default_context(cafile=ARGS.self_test)

    def req(method, path, body=b"", headers=None, host="localhost", to_port=None):
        c = http.client.HTTPSConnection(host, to_port or port, context=ctx, timeout=10)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    st, data = req("POST", "/token", urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": ARGS.client_id,
         "client_secret": ARGS.client_secret, "scope": "x"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"})
    tok = json.loads(data)["access_token"]
    auth = {"Authorization": "Bearer " + tok}
    mb = "/v1.0/users/" + urllib.parse.quote(ARGS.mailbox)
    fails = []

    def expect(what, got, want):
        if got != want:
            fails.append("%s: %s, expected %s" % (what, got, want))

    if ARGS.kind == "gmail":
        path = "/upload/gmail/v1/users/me/messages/send?uploadType=media"
        msg = b"To: a@b.example\r\nSubject: x\r\n\r\nhi\r\n"
        expect("no bearer token", req("POST", path, msg, {"Content-Type": "message/rfc822"})[0], 401)
        expect("a token never issued", req("POST", path, msg, {
            "Authorization": "Bearer at-forged", "Content-Type": "message/rfc822"})[0], 401)
        expect("wrong Content-Type", req("POST", path, msg, dict(auth, **{
            "Content-Type": "text/plain"}))[0], 400)
        expect("no uploadType=media", req("POST", path.split("?")[0], msg, dict(auth, **{
            "Content-Type": "message/rfc822"}))[0], 400)
        expect("no recipient", req("POST", path, b"Subject: x\r\n\r\nhi\r\n", dict(auth, **{
            "Content-Type": "message/rfc822"}))[0], 400)
        expect("a good one", req("POST", path, msg, dict(auth, **{
            "Content-Type": "message/rfc822"}))[0], 200)
    else:
        raw = base64.b64encode(b"To: a@b.example\r\n\r\nhi\r\n")
        expect("no bearer token", req("POST", mb + "/sendMail", raw,
                                      {"Content-Type": "text/plain"})[0], 401)
        expect("wrong Content-Type", req("POST", mb + "/sendMail", raw, dict(auth, **{
            "Content-Type": "text/html"}))[0], 415)
        expect("base64 with line breaks", req("POST", mb + "/sendMail", raw[:8] + b"\r\n" + raw[8:],
                                              dict(auth, **{"Content-Type": "text/plain"}))[0], 400)
        expect("another mailbox", req("POST", "/v1.0/users/other@x.example/sendMail", raw, dict(
            auth, **{"Content-Type": "text/plain"}))[0], 404)
        js = {"Content-Type": "application/json"}
        st, data = req("POST", mb + "/messages", json.dumps({
            "subject": "s", "body": {"contentType": "text", "content": "b"},
            "toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}).encode(),
            dict(auth, **js))
        expect("a draft", st, 201)
        echo = json.loads(data)
        mid = echo["id"]
        expect("the draft's 201 echoes the message", (echo.get("body", {}).get("content"),
                                                        echo.get("isDraft")), ("b", True))
        st, data = req("POST", mb + "/messages/%s/attachments" % mid, json.dumps({
            "@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt",
            "contentType": "text/plain", "contentBytes": "aGVsbG8="}).encode(), dict(auth, **js))
        expect("an attachment's 201 echoes contentBytes",
               (st, json.loads(data).get("contentBytes")), (201, "aGVsbG8="))
        st, data = req("POST", mb + "/messages/%s/attachments/createUploadSession" % mid,
                       json.dumps({"AttachmentItem": {"attachmentType": "file", "name": "a.pdf",
                                                      "size": 1000000}}).encode(), dict(auth, **js))
        expect("an upload session", st, 201)
        up = urllib.parse.urlsplit(json.loads(data)["uploadUrl"])
        upath = up.path + "?" + up.query
        unit = GRAPH_CHUNK_UNIT
        expect("the upload URL on another host than the API",
               (up.hostname != "localhost", up.port != port), (True, True))

        def put(a, b, n, extra=None, on_api_host=False):
            h = {"Content-Range": "bytes %d-%d/1000000" % (a, b),
                 "Content-Type": "application/octet-stream"}
            h.update(extra or {})
            if on_api_host:
                return req("PUT", upath, b"x" * n, h)[0]
            return req("PUT", upath, b"x" * n, h, host=up.hostname, to_port=up.port)[0]

        expect("the upload URL's path on the API's host", put(0, unit - 1, unit, None, True), 404)
        expect("an API request on the upload host",
               req("POST", mb + "/messages", b"{}", dict(auth, **js), host=up.hostname,
                   to_port=up.port)[0], 404)
        expect("a chunk not a multiple of 320 KiB", put(0, 99999, 100000), 400)
        expect("an Authorization header to the upload URL", put(0, unit - 1, unit, auth), 401)
        expect("Content-Length not the range's", put(0, unit - 1, unit - 1), 400)
        expect("the first chunk", put(0, unit - 1, unit), 200)
        expect("a range that does not continue", put(0, unit - 1, unit), 400)
        expect("past the declared size", put(unit, 4 * unit - 1, 3 * unit), 416)
        expect("the send before the upload is complete",
               req("POST", mb + "/messages/%s/send" % mid, b"", auth)[0], 400)
        expect("the last chunk", put(unit, 999999, 1000000 - unit), 201)
        expect("send with a body", req("POST", mb + "/messages/%s/send" % mid, b"x", auth)[0], 400)
        expect("send", req("POST", mb + "/messages/%s/send" % mid, b"", auth)[0], 202)
        st, data = req("POST", mb + "/messages", json.dumps({
            "subject": "s", "body": {"contentType": "text", "content": "b"},
            "toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}).encode(),
            dict(auth, **js))
        c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        c.putrequest("DELETE", mb + "/messages/" + json.loads(data)["id"])
        c.putheader("Authorization", auth["Authorization"])
        c.endheaders()  # no Content-Length: no body (RFC 9112 6.3)
        expect("DELETE without a body", c.getresponse().status, 204)
        c.close()
    for f in fails:
        print("SELFTEST FAIL " + f)
    print("SELFTEST OK" if not fails else "SELFTEST FAILED")
    return not fails


def main():
    global ARGS
    ARGS = parse_args()
    os.makedirs(ARGS.store, exist_ok=True)
    token_server.ARGS = types.SimpleNamespace(
        record=ARGS.record, refresh_token=ARGS.refresh_token, client_id=ARGS.client_id,
        client_secret=ARGS.client_secret, expires_in=ARGS.expires_in, rotate=False, mode="ok",
        chunked=False, revoke_first=False, static_token=None)
    token_server.STATE["refresh"] = ARGS.refresh_token
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    uploads = ThreadingHTTPServer(("127.0.0.1", 0), UploadHandler)
    uploads.daemon_threads = True
    uploads.socket = ctx.wrap_socket(uploads.socket, server_side=True)
    UPLOAD_PORT[0] = uploads.server_address[1]
    threading.Thread(target=uploads.serve_forever, daemon=True).start()
    if ARGS.self_test:
        ok = self_test(httpd.server_address[1])
        httpd.shutdown()
        sys.exit(0 if ok else 1)
    sys.stdout.write("READY %d\n" % httpd.server_address[1])
    sys.stdout.flush()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait(ARGS.lifetime)
    httpd.shutdown()


if __name__ == "__main__":
    main()
