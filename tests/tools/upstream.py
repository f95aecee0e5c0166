#!/usr/bin/python3
"""upstream.py - a real SMTP upstream for the integration tests.

Built on aiosmtpd (a server nobody on the team wrote), run with the Debian
interpreter: /usr/bin/python3 upstream.py --port 0 --tls starttls ...

On start it prints exactly "READY <port>\\n" to stdout and flushes. For each
accepted message it appends one JSON line to --record:

  {"event": "message", "mail_from", "rcpt_tos", "mail_options",
   "rcpt_options", "data_b64", "data_len", "data_sha256", "auth_user",
   "tls_version", "peer", "helo", "queue_id"}

data_b64 holds the exact bytes aiosmtpd received after dot-unstuffing
(null when the message is larger than --max-b64; data_len and data_sha256
are always present). The DATA reply is "250 2.0.0 Ok: queued as <queue_id>"
unless --reply-data forces another one.

--tls starttls: plain listener offering STARTTLS; implicit: TLS from the
first byte (465 style); none: no TLS. --auth-require makes AUTH mandatory
before MAIL and, with starttls, only possible after STARTTLS. --dsn offers
DSN (RFC 3461), which aiosmtpd does not: RET/ENVID on MAIL and
NOTIFY/ORCPT on RCPT are taken off before aiosmtpd's own checks and
recorded in mail_options/rcpt_options exactly as sent. Without --dsn,
aiosmtpd refuses them (555), as an upstream without DSN may.
Exits cleanly on SIGTERM/SIGINT, and by itself after --lifetime seconds.

Overlap records (the shared spool's test): every message record also has
"message_id" (its Message-ID header), "mail_at" (when MAIL came) and
"end_at" (just before the final reply goes out; --data-delay holds that
reply back, so that two deliveries of one message at once would overlap
visibly), both time.time().
"""

import argparse
import asyncio
import base64
import fnmatch
import hashlib
import itertools
import json
import logging
import os
import re
import signal
import ssl
import sys
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

_queue_ids = itertools.count(1)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls", choices=["starttls", "implicit", "none"],
                   default="starttls")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth-require", action="store_true")
    p.add_argument("--user", action="append", default=[],
                   help="NAME:PASS, repeatable")
    p.add_argument("--record", required=True)
    p.add_argument("--reply-data", help='force the DATA reply, e.g. "550 5.7.1 no"')
    p.add_argument("--reject-rcpt", action="append", default=[],
                   help="fnmatch pattern; matching RCPT gets 550 5.1.1")
    p.add_argument("--max-b64", type=int, default=1 << 20,
                   help="largest message whose bytes are recorded as base64")
    p.add_argument("--size-limit", type=int, default=64 << 20)
    p.add_argument("--lifetime", type=float, default=300.0,
                   help="exit after this many seconds whatever happens")
    p.add_argument("--hostname", default="upstream.test")
    p.add_argument("--dsn", action="store_true",
                   help="offer DSN and record its MAIL/RCPT parameters")
    p.add_argument("--data-delay", type=float, default=0.0,
                   help="seconds before the reply to the final dot")
    p.add_argument("--hang-on-reuse", action="store_true",
                   help="a connection that already carried a message never "
                        "answers again (a pooled connection gone silent)")
    return p.parse_args()


class Handler:
    def __init__(self, args):
        self.args = args
        self.users = {}
        for u in args.user:
            name, _, pw = u.partition(":")
            self.users[name.encode()] = pw.encode()

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            pw = self.users.get(auth_data.login)
            if pw is not None and pw == auth_data.password:
                return AuthResult(success=True, auth_data=auth_data.login.decode())
        return AuthResult(success=False, handled=False)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.args.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.args.hang_on_reuse and getattr(session, "stp_messages", 0) > 0:
            await asyncio.sleep(3600)
        envelope.mail_from = address
        envelope.stp_mail_at = time.time()
        envelope.mail_options.extend(mail_options + getattr(session, "dsn_mail", []))
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for pat in self.args.reject_rcpt:
            if fnmatch.fnmatchcase(address, pat):
                return "550 5.1.1 <%s>: Recipient address rejected: test" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options + getattr(session, "dsn_rcpt", []))
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        session.stp_messages = getattr(session, "stp_messages", 0) + 1
        if self.args.reply_data:
            return self.args.reply_data
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if self.args.data_delay > 0:
            await asyncio.sleep(self.args.data_delay)
        mid = re.search(rb"^Message-ID:[ \t]*(\S+)", data.split(b"\r\n\r\n", 1)[0],
                        re.IGNORECASE | re.MULTILINE)
        qid = "Q%06dT%d" % (next(_queue_ids), os.getpid())
        tls_version = None
        transport = server.transport
        if transport is not None:
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is not None:
                tls_version = sslobj.version()
        peer = session.peer
        rec = {
            "event": "message",
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "data_b64": (base64.b64encode(data).decode("ascii")
                         if len(data) <= self.args.max_b64 else None),
            "data_len": len(data),
            "data_sha256": hashlib.sha256(data).hexdigest(),
            "auth_user": session.auth_data if session.authenticated else None,
            "tls_version": tls_version,
            "peer": "%s:%s" % (peer[0], peer[1]) if peer else None,
            "helo": session.host_name,
            "queue_id": qid,
            "message_id": mid.group(1).decode("ascii", "replace") if mid else None,
            "mail_at": getattr(envelope, "stp_mail_at", None),
            "end_at": time.time(),
        }
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        # One write per record with O_APPEND: a reader never sees half a line
        # interleaved with another one.
        fd = os.open(self.args.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return "250 2.0.0 Ok: queued as %s" % qid


class DsnSMTP(SMTP):
    """aiosmtpd offering DSN: the RFC 3461 parameters are taken off MAIL and
    RCPT (kept as sent, for the record) before aiosmtpd checks the rest."""

    def _take(self, arg, keys, attr):
        head, sep, rest = arg.partition(">")
        taken, kept = [], []
        for tok in rest.split() if sep else []:
            (taken if tok.split("=", 1)[0].upper() in keys else kept).append(tok)
        setattr(self.session, attr, taken)
        return head + sep + "".join(" " + k for k in kept) if sep else arg

    async def smtp_MAIL(self, arg):
        await super().smtp_MAIL(self._take(arg, ("RET", "ENVID"), "dsn_mail") if arg else arg)

    async def smtp_RCPT(self, arg):
        await super().smtp_RCPT(self._take(arg, ("NOTIFY", "ORCPT"), "dsn_rcpt") if arg else arg)


async def main():
    args = parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # aiosmtpd warns about auth_require_tls=False, which is right for 465.
    warnings.filterwarnings("ignore", category=UserWarning)
    handler = Handler(args)
    loop = asyncio.get_running_loop()

    ctx = None
    if args.tls != "none":
        if not args.cert or not args.key:
            sys.exit("--cert and --key are needed with --tls " + args.tls)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)

    # aiosmtpd only counts STARTTLS as "TLS" for auth_require_tls; on an
    # implicit-TLS listener every connection is TLS already.
    auth_require_tls = args.tls == "starttls"

    def factory():
        return (DsnSMTP if args.dsn else SMTP)(
            handler,
            hostname=args.hostname,
            data_size_limit=args.size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=ctx if args.tls == "starttls" else None,
            require_starttls=args.tls == "starttls" and args.auth_require,
            auth_required=args.auth_require,
            auth_require_tls=auth_require_tls,
            authenticator=handler.authenticator,
            timeout=60,
            loop=loop,
        )

    server = await loop.create_server(
        factory, host=args.host, port=args.port,
        ssl=ctx if args.tls == "implicit" else None)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.lifetime, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
