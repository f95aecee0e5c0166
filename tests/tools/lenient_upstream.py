#!/usr/bin/python3
"""lenient_upstream.py - an SMTP receiver that ends DATA on any look-alike.

The "email service B" of SMTP smuggling (SEC Consult, 2023): a next hop
that takes malformed end-of-data sequences for the real one. No real
server here does that on purpose (aiosmtpd and Postfix are strict now),
so this stand-in is lenient by design, to show that what the proxy sends
upstream holds nothing such a server could end DATA on. Plain TCP, no TLS,
no AUTH. Run with /usr/bin/python3:

  lenient_upstream.py --port 0 --record FILE [--lifetime 120]

DATA ends at the first match of
    (CR | LF | CRLF | start of data) NUL* "." NUL* (CR | LF | CRLF)
and what follows is read as commands again (so a smuggled MAIL/RCPT/DATA
becomes a second transaction). Command lines end in CRLF, LF or CR; NULs
in them are dropped. Lines of the message are not unstuffed: data_b64 holds
the raw bytes before the end sequence.

Prints "READY <port>" when listening. Records compact JSON lines,
appended with O_APPEND (one write each):
  {"event":"connect","conn":N}
  {"event":"command","conn":N,"line":"MAIL FROM:<a@b>"}
  {"event":"message","conn":N,"helo":..,"mail_from":..,"rcpt_tos":[..],
   "data_b64":..,"data_len":N,"end_b64":..}     (one per accepted DATA)
  {"event":"aborted","conn":N,"data_len":N}     (closed inside DATA)
  {"event":"close","conn":N}
Exits 0 on SIGTERM/SIGINT and after --lifetime seconds.
"""

import argparse
import asyncio
import base64
import itertools
import json
import os
import re
import signal
import sys

# Any line-end look-alike, then NULs, a dot, NULs, any line end. The start
# of data counts as a line end (the DATA command's own).
END_MID = re.compile(rb"(?:\r\n|\r|\n)\x00*\.\x00*(?:\r\n|\r|\n)")
END_START = re.compile(rb"\x00*\.\x00*(?:\r\n|\r|\n)")
CMD_END = re.compile(rb"\r\n|\r|\n")

MAX_DATA = 32 << 20
MAX_LINE = 4096

_conn_ids = itertools.count(1)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--record", required=True)
    p.add_argument("--lifetime", type=float, default=300.0)
    p.add_argument("--hostname", default="lenient.test")
    return p.parse_args()


ARGS = None


def record(**ev):
    line = (json.dumps(ev, separators=(",", ":")) + "\n").encode()
    fd = os.open(ARGS.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def find_end(data, eof):
    """(start, stop) of the first end-of-data look-alike, or None. A match
    whose last byte is a CR at the end of what has arrived is not final
    yet: an LF may follow and belong to it."""
    m = END_START.match(data)
    if not m:
        m = END_MID.search(data)
    if not m:
        return None
    if m.end() == len(data) and data[-1:] == b"\r" and not eof:
        return None
    return m.start(), m.end()


def next_line(buf, eof):
    """(line, rest) for the first command line, or None."""
    m = CMD_END.search(buf)
    if not m:
        return None
    if m.group() == b"\r" and m.end() == len(buf) and not eof:
        return None  # CR LF may be split across reads
    return buf[: m.start()].replace(b"\x00", b""), buf[m.end():]


class Session:
    def __init__(self, writer):
        self.w = writer
        self.id = next(_conn_ids)
        self.helo = None
        self.in_data = False
        self.data = b""
        self.quit = False
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpt_tos = []

    def reply(self, text):
        self.w.write(text.encode() + b"\r\n")

    def command(self, raw):
        line = raw.decode("utf-8", "surrogateescape")
        record(event="command", conn=self.id, line=line)
        verb = line[:4].upper()
        arg = line[4:].strip()
        if verb in ("EHLO", "HELO"):
            self.helo = arg
            self.reset()
            if verb == "EHLO":
                self.reply("250-%s\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE %d"
                           % (ARGS.hostname, MAX_DATA))
            else:
                self.reply("250 %s" % ARGS.hostname)
        elif verb == "MAIL" and arg.upper().startswith("FROM:"):
            self.reset()
            self.mail_from = addr(arg[5:])
            self.reply("250 2.1.0 Ok")
        elif verb == "RCPT" and arg.upper().startswith("TO:"):
            if self.mail_from is None:
                self.reply("503 5.5.1 need MAIL")
                return
            self.rcpt_tos.append(addr(arg[3:]))
            self.reply("250 2.1.5 Ok")
        elif verb == "DATA":
            if not self.rcpt_tos:
                self.reply("503 5.5.1 need RCPT")
                return
            self.in_data = True
            self.data = b""
            self.reply("354 go ahead")
        elif verb == "RSET":
            self.reset()
            self.reply("250 2.0.0 Ok")
        elif verb == "NOOP":
            self.reply("250 2.0.0 Ok")
        elif verb == "QUIT":
            self.reply("221 2.0.0 Bye")
            self.quit = True
        else:
            self.reply("500 5.5.2 unrecognized")

    def end_data(self, start, stop):
        body = self.data[:start]
        record(event="message", conn=self.id, helo=self.helo,
               mail_from=self.mail_from, rcpt_tos=list(self.rcpt_tos),
               data_b64=base64.b64encode(body).decode("ascii"),
               data_len=len(body),
               end_b64=base64.b64encode(self.data[start:stop]).decode("ascii"))
        rest = self.data[stop:]
        self.in_data = False
        self.data = b""
        self.reset()
        self.reply("250 2.0.0 Ok: queued")
        return rest

    def feed(self, buf, eof):
        """Consume what can be decided; return the undecided rest."""
        while buf and not self.quit:
            if self.in_data:
                self.data += buf
                buf = b""
                end = find_end(self.data, eof)
                if end is None:
                    if len(self.data) > MAX_DATA:
                        self.reply("552 5.3.4 too big")
                        self.quit = True
                    break
                buf = self.end_data(*end)
                continue
            got = next_line(buf, eof)
            if got is None:
                if len(buf) > MAX_LINE:
                    self.reply("500 5.5.2 line too long")
                    self.quit = True
                break
            line, buf = got
            self.command(line)
        return buf


def addr(s):
    s = s.strip()
    if s.startswith("<"):
        close = s.find(">")
        return s[1:close] if close >= 0 else s[1:]
    return s.split(" ")[0]


async def handle(reader, writer):
    s = Session(writer)
    record(event="connect", conn=s.id)
    s.reply("220 %s ESMTP lenient" % ARGS.hostname)
    buf = b""
    try:
        while not s.quit:
            await writer.drain()
            chunk = await asyncio.wait_for(reader.read(65536), timeout=60)
            eof = not chunk
            buf = s.feed(buf + chunk, eof)
            if eof:
                break
        await writer.drain()
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        if s.in_data:
            record(event="aborted", conn=s.id, data_len=len(s.data))
        record(event="close", conn=s.id)
        writer.close()


async def main():
    global ARGS
    ARGS = parse_args()
    server = await asyncio.start_server(handle, ARGS.host, ARGS.port)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(ARGS.lifetime, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
