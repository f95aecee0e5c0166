#!/usr/bin/python3
"""fault_upstream.py - the project's own fault-injecting SMTP upstream.

For what no real server does on purpose. Plain sockets + ssl + one thread
per connection (no aiosmtpd): every byte and every timing is under the
test's control. Run with /usr/bin/python3.

  --mode ok                 220, EHLO (STARTTLS, AUTH PLAIN LOGIN, ...),
                            STARTTLS, AUTH accepted, MAIL/RCPT/DATA 250
         no-starttls        EHLO lacks STARTTLS (but tempts with AUTH)
         starttls-454       STARTTLS answered 454 4.7.0
         starttls-extra     "220 go ahead\\r\\n250 injected\\r\\n" in one write
         no-greeting        accepts, never speaks
         no-reply-after-dot all fine until the final dot, then silence
         reset-after-354    RST right after sending 354
         tarpit             the greeting is sent 1 byte per second
         greeting-421       421 greeting, then close
         auth-fail          AUTH answered 535 5.7.8
         tls-garbage-after-354  after TLS and the 354, raw non-TLS bytes are
                            written on the socket under the TLS layer
                            (breaks the record layer), then silence
         tls-alert-after-354    the same with a plaintext fatal TLS alert
                            record (internal_error) instead of garbage
         chaos              like ok, but per RCPT / per message a seeded
                            RNG (--seed, per connection) picks: 451 to RCPT,
                            RST after 354, RST after the final dot without
                            a reply, 451 to the final dot, a 0-500 ms delay
                            before the 250, or a plain 250. Message records
                            get "outcome": accepted | vanished | rejected
         dot-451-then-ok    like ok, but the final dot of the first
                            --fail-count messages (over all connections)
                            is answered 451 4.3.0; later ones get 250.
                            Message records get "outcome": "deferred" |
                            "accepted"
  --seed N                  chaos: base seed (default 1)
  --fail-count N            dot-451-then-ok: how many (default 1)
  --tls starttls|implicit   implicit: TLS from the first byte
  --cert/--key              the certificate it presents (tests pass the
                            wrong-name/expired/self-signed ones with mode ok)
  --record FILE             one JSON line per event (see below)

AUTH is advertised before TLS too, on purpose: a proxy that would use it in
plaintext gets caught, because every command line is recorded with whether
it arrived in plaintext.

Record events (compact JSON, one line each, appended with O_APPEND):
  {"event":"connect","conn":N,"peer":"ip:port"}
  {"event":"command","conn":N,"tls":false,"verb":"EHLO","arg":"..."}
        (for AUTH, arg is only the mechanism: credentials are not recorded)
  {"event":"plaintext_after_starttls","conn":N,"data_b64":"..."}
  {"event":"tls","conn":N,"version":"TLSv1.3"}
  {"event":"tls_failed","conn":N,"error":"..."}
  {"event":"auth","conn":N,"tls":true,"mechanism":"PLAIN","auth_user":"u","ok":true}
  {"event":"rst","conn":N}
  {"event":"tls_broken","conn":N,"mode":"tls-garbage-after-354","bytes":N}
  {"event":"chaos","conn":N,"action":"rcpt-451"|"rst-after-354"|"vanish"|
   "dot-451"|"delay"|"normal"}
  {"event":"message","conn":N,"mail_from":..,"rcpt_tos":[..],"mail_options":[..],
   "rcpt_options":[..],"data_b64":..,"data_len":..,"auth_user":..,
   "tls_version":..,"peer":..,"helo":..,"replied":true}
        (mode chaos adds "outcome": "accepted" | "vanished" | "rejected")
  {"event":"close","conn":N,"plaintext_commands":["EHLO",..],
   "tls_commands":[..],"auth_seen":bool,"auth_in_plaintext":bool,
   "mail_in_plaintext":bool}
Prints "READY <port>" when listening. Exits 0 on SIGTERM/SIGINT and after
--lifetime seconds.
"""

import argparse
import base64
import itertools
import json
import os
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time

MODES = ["ok", "no-starttls", "starttls-454", "starttls-extra", "no-greeting",
         "no-reply-after-dot", "reset-after-354", "tarpit", "greeting-421",
         "auth-fail", "tls-garbage-after-354", "tls-alert-after-354",
         "chaos", "dot-451-then-ok"]

_conn_ids = itertools.count(1)
_dot_lock = threading.Lock()
_dots_refused = 0
_record_lock = threading.Lock()
_stop = threading.Event()


class Closed(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=MODES, default="ok")
    p.add_argument("--tls", choices=["starttls", "implicit"], default="starttls")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--lifetime", type=float, default=300.0)
    p.add_argument("--io-timeout", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fail-count", type=int, default=1)
    return p.parse_args()


ARGS = None


def record(**ev):
    line = (json.dumps(ev, separators=(",", ":")) + "\n").encode()
    with _record_lock:
        fd = os.open(ARGS.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class Session:
    def __init__(self, sock, peer, ctx):
        self.sock = sock
        self.peer = "%s:%s" % peer[:2]
        self.ctx = ctx
        self.id = next(_conn_ids)
        self.buf = b""
        self.tls = False
        self.tls_version = None
        self.helo = None
        self.auth_user = None
        self.plaintext_commands = []
        self.tls_commands = []
        self.auth_seen = False
        self.rng = random.Random(ARGS.seed * 1000003 + self.id)
        self.reset_envelope()

    def reset_envelope(self):
        self.mail_from = None
        self.mail_options = []
        self.rcpt_tos = []
        self.rcpt_options = []

    # --- io -----------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self, *lines):
        out = []
        for i, l in enumerate(lines):
            code, text = l[:3], l[4:]
            sep = " " if i == len(lines) - 1 else "-"
            out.append("%s%s%s\r\n" % (code, sep, text))
        self.send("".join(out))

    def readline(self, limit=1 << 20):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise Closed("line too long")
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLError, OSError) as e:
                raise Closed(str(e))
            if not chunk:
                raise Closed("eof")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    # --- tls ----------------------------------------------------------------
    def handshake(self):
        try:
            self.sock = self.ctx.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            record(event="tls_failed", conn=self.id, error=str(e))
            raise Closed("tls failed")
        self.tls = True
        self.tls_version = self.sock.version()
        record(event="tls", conn=self.id, version=self.tls_version)

    # --- protocol -----------------------------------------------------------
    def run(self):
        mode = ARGS.mode
        record(event="connect", conn=self.id, peer=self.peer)
        try:
            if ARGS.tls == "implicit":
                self.handshake()
            if mode == "no-greeting":
                self.swallow()
                return
            if mode == "greeting-421":
                self.reply("421 4.3.2 fault.test service not available (test)")
                return
            greeting = "220 fault.test ESMTP fault-upstream\r\n"
            if mode == "tarpit":
                for ch in greeting:
                    if _stop.is_set():
                        return
                    self.send(ch)
                    time.sleep(1.0)
            else:
                self.send(greeting)
            while True:
                line = self.readline()
                if not self.command(line):
                    return
        except Closed:
            pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            record(event="close", conn=self.id,
                   plaintext_commands=self.plaintext_commands,
                   tls_commands=self.tls_commands,
                   auth_seen=self.auth_seen,
                   auth_in_plaintext="AUTH" in self.plaintext_commands,
                   mail_in_plaintext="MAIL" in self.plaintext_commands)
            try:
                self.sock.close()
            except OSError:
                pass

    def swallow(self):
        """Never speak; record whatever arrives as commands."""
        while True:
            line = self.readline()
            self.note(line)

    def note(self, line):
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        shown = arg.split(" ")[0] if verb == "AUTH" else arg  # never credentials
        (self.tls_commands if self.tls else self.plaintext_commands).append(verb)
        record(event="command", conn=self.id, tls=self.tls, verb=verb, arg=shown[:200])
        return verb, arg

    def command(self, line):
        mode = ARGS.mode
        verb, arg = self.note(line)
        if verb in ("EHLO", "HELO"):
            self.helo = arg
            self.reset_envelope()
            if verb == "HELO":
                self.reply("250 fault.test")
                return True
            caps = ["250 fault.test greets %s" % arg]
            if not self.tls and ARGS.tls == "starttls" and mode != "no-starttls":
                caps.append("250 STARTTLS")
            caps += ["250 AUTH PLAIN LOGIN", "250 SIZE 104857600",
                     "250 8BITMIME", "250 ENHANCEDSTATUSCODES", "250 SMTPUTF8"]
            self.reply(*caps)
        elif verb == "STARTTLS":
            if self.tls or ARGS.tls != "starttls" or mode == "no-starttls":
                self.reply("502 5.5.1 STARTTLS not offered")
                return True
            if mode == "starttls-454":
                self.reply("454 4.7.0 TLS not available (test)")
                return True
            if mode == "starttls-extra":
                self.send("220 go ahead\r\n250 injected\r\n")
            else:
                self.reply("220 2.0.0 Ready to start TLS")
            if self.buf:
                record(event="plaintext_after_starttls", conn=self.id,
                       data_b64=base64.b64encode(self.buf).decode())
                self.buf = b""
            self.handshake()
            self.helo = None
            self.auth_user = None
            self.reset_envelope()
        elif verb == "AUTH":
            self.auth(arg)
        elif verb == "MAIL":
            parts = arg.split(" ")
            self.mail_from = parts[0][5:].strip("<>") if parts[0].upper().startswith("FROM:") else parts[0]
            self.mail_options = [p for p in parts[1:] if p]
            self.rcpt_tos = []
            self.rcpt_options = []
            self.reply("250 2.1.0 Ok")
        elif verb == "RCPT":
            if mode == "chaos" and self.rng.random() < 0.08:
                record(event="chaos", conn=self.id, action="rcpt-451")
                self.reply("451 4.3.0 chaos: recipient deferred (test)")
                return True
            parts = arg.split(" ")
            self.rcpt_tos.append(parts[0][3:].strip("<>") if parts[0].upper().startswith("TO:") else parts[0])
            self.rcpt_options += [p for p in parts[1:] if p]
            self.reply("250 2.1.5 Ok")
        elif verb == "DATA":
            if not self.rcpt_tos:
                self.reply("503 5.5.1 need RCPT")
                return True
            action = self.chaos_action() if mode == "chaos" else None
            self.reply("354 End data with <CR><LF>.<CR><LF>")
            if mode == "reset-after-354" or action == "rst-after-354":
                self.rst()
            if mode in ("tls-garbage-after-354", "tls-alert-after-354"):
                self.break_tls(mode)
            data = self.read_data()
            replied = mode != "no-reply-after-dot" and action != "vanish"
            extra = {}
            if mode == "chaos":
                extra["outcome"] = {"vanish": "vanished",
                                    "dot-451": "rejected"}.get(action, "accepted")
            if mode == "dot-451-then-ok":
                global _dots_refused
                with _dot_lock:
                    refuse = _dots_refused < ARGS.fail_count
                    _dots_refused += 1 if refuse else 0
                if refuse:
                    action = "dot-451"
                extra["outcome"] = "deferred" if refuse else "accepted"
            record(event="message", conn=self.id, mail_from=self.mail_from,
                   rcpt_tos=self.rcpt_tos, mail_options=self.mail_options,
                   rcpt_options=self.rcpt_options,
                   data_b64=base64.b64encode(data).decode(), data_len=len(data),
                   auth_user=self.auth_user, tls_version=self.tls_version,
                   peer=self.peer, helo=self.helo, replied=replied, **extra)
            self.reset_envelope()
            if action == "vanish":
                self.rst()
            if not replied:
                self.swallow()
            if action == "dot-451":
                self.reply("451 4.3.0 chaos: message deferred (test)")
                return True
            if action == "delay":
                time.sleep(self.rng.random() * 0.5)
            self.reply("250 2.0.0 Ok: queued as F%d" % self.id)
        elif verb == "RSET":
            self.reset_envelope()
            self.reply("250 2.0.0 Ok")
        elif verb == "NOOP":
            self.reply("250 2.0.0 Ok")
        elif verb == "QUIT":
            self.reply("221 2.0.0 Bye")
            return False
        else:
            self.reply("500 5.5.1 unknown command")
        return True

    def rst(self):
        """Abort the connection with a TCP RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        record(event="rst", conn=self.id)
        self.sock.close()
        raise Closed("rst")

    def chaos_action(self):
        r = self.rng.random()
        if r < 0.08:
            action = "rst-after-354"
        elif r < 0.16:
            action = "vanish"      # RST after the final dot, no reply
        elif r < 0.22:
            action = "dot-451"
        elif r < 0.45:
            action = "delay"
        else:
            action = "normal"
        record(event="chaos", conn=self.id, action=action)
        return action

    def break_tls(self, mode):
        """Write bytes under the TLS layer, straight onto the TCP socket:
        the peer's record layer sees a non-TLS record mid-stream."""
        if mode == "tls-alert-after-354":
            junk = b"\x15\x03\x03\x00\x02\x02\x50"  # plaintext fatal alert
        else:
            junk = b"this is not a TLS record\r\n" * 8
        try:
            os.write(self.sock.fileno(), junk)
        except OSError as e:
            raise Closed(str(e))
        record(event="tls_broken", conn=self.id, mode=mode, bytes=len(junk))
        self.swallow()

    def read_data(self):
        out = []
        while True:
            line = self.readline()
            if line == b".\r\n":
                return b"".join(out)
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)

    def auth(self, arg):
        self.auth_seen = True
        parts = arg.split(" ")
        mech = parts[0].upper()
        ir = parts[1] if len(parts) > 1 else None
        user = None
        try:
            if mech == "PLAIN":
                if ir is None:
                    self.send("334 \r\n")
                    ir = self.readline().decode().strip()
                if ir == "*":
                    self.reply("501 5.7.0 cancelled")
                    return
                fields = base64.b64decode(ir + "==="[: (4 - len(ir) % 4) % 4]).split(b"\0")
                user = fields[1].decode("utf-8", "replace") if len(fields) == 3 else None
            elif mech == "LOGIN":
                if ir is None:
                    self.send("334 VXNlcm5hbWU6\r\n")
                    ir = self.readline().decode().strip()
                if ir == "*":
                    self.reply("501 5.7.0 cancelled")
                    return
                user = base64.b64decode(ir).decode("utf-8", "replace")
                self.send("334 UGFzc3dvcmQ6\r\n")
                pw = self.readline().decode().strip()
                if pw == "*":
                    self.reply("501 5.7.0 cancelled")
                    return
            else:
                self.reply("504 5.5.4 mechanism not supported")
                return
        except (ValueError, UnicodeDecodeError):
            self.reply("501 5.5.2 cannot decode")
            return
        ok = ARGS.mode != "auth-fail" and user is not None
        record(event="auth", conn=self.id, tls=self.tls, mechanism=mech,
               auth_user=user, ok=ok)
        if ok:
            self.auth_user = user
            self.reply("235 2.7.0 Authentication successful")
        else:
            self.reply("535 5.7.8 Authentication credentials invalid (test)")


def serve(conn, peer, ctx):
    conn.settimeout(ARGS.io_timeout)
    Session(conn, peer, ctx).run()


def main():
    global ARGS
    ARGS = parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)

    def on_signal(signum, frame):
        _stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((ARGS.host, ARGS.port))
    lsock.listen(64)
    lsock.settimeout(0.2)
    sys.stdout.write("READY %d\n" % lsock.getsockname()[1])
    sys.stdout.flush()

    deadline = time.monotonic() + ARGS.lifetime
    while not _stop.is_set() and time.monotonic() < deadline:
        try:
            conn, peer = lsock.accept()
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        t = threading.Thread(target=serve, args=(conn, peer, ctx), daemon=True)
        t.start()
    lsock.close()
    # Daemon threads die with the process; sessions are not waited for.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
