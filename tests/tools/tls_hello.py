#!/usr/bin/python3
"""tls_hello.py - send one hand-made TLS ClientHello and report the answer.

A strict stand-in client for cipher suites no client on this machine can
offer any more: Debian's OpenSSL 3 is built without 3DES, RC4 and export
suites, so `openssl s_client -cipher DES-CBC3-SHA` fails before it sends
anything and proves nothing about the server. This tool puts the raw suite
numbers on the wire, as an old device (or a scanner) would, and prints one
line about what came back:

  CHOSEN 0x000a       a ServerHello that picked that suite
  ALERT 2 40          a TLS alert record: level, description (40 = handshake_failure)
  CLOSED              the server closed without a record
  OTHER <hex>         anything else (the first bytes)

  --port P            127.0.0.1:P (loopback only)
  --starttls          speak SMTP first: greeting, EHLO, STARTTLS, 220
  --version 1.0|1.1|1.2   ClientHello.legacy_version (no TLS 1.3 offer)
  --suites 0x000a,0x0005  the cipher suites offered, in order

Bounded: every socket operation times out after 5 s.
"""
import argparse
import socket
import struct
import sys

VERSIONS = {"1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303}


def ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(version, suites):
    groups = struct.pack("!HHHH", 6, 0x001D, 0x0017, 0x0018)  # x25519, P-256, P-384
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0201, 0x0203]
    exts = ext(0x000A, groups)  # supported_groups
    exts += ext(0x000B, b"\x01\x00")  # ec_point_formats: uncompressed
    exts += ext(0x000D, struct.pack("!H", 2 * len(sigalgs)) + b"".join(struct.pack("!H", s) for s in sigalgs))
    exts += ext(0xFF01, b"\x00")  # renegotiation_info (empty)
    cs = b"".join(struct.pack("!H", s) for s in suites)
    body = struct.pack("!H", version) + bytes(range(32))  # random: fixed is fine here
    body += b"\x00"  # no session id
    body += struct.pack("!H", len(cs)) + cs
    body += b"\x01\x00"  # compression: null only
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16" + struct.pack("!HH", 0x0301, len(hs)) + hs


def smtp_reply(f):
    while True:
        line = f.readline(1024)
        if not line:
            raise SystemExit("CLOSED before an SMTP reply")
        if line[3:4] != b"-":
            return line


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--version", choices=sorted(VERSIONS), default="1.2")
    ap.add_argument("--suites", required=True)
    a = ap.parse_args()
    suites = [int(x, 16) for x in a.suites.split(",")]
    s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    if a.starttls:
        f = s.makefile("rb")
        smtp_reply(f)
        s.sendall(b"EHLO hello.test\r\n")
        smtp_reply(f)
        s.sendall(b"STARTTLS\r\n")
        r = smtp_reply(f)
        if not r.startswith(b"220"):
            raise SystemExit("STARTTLS refused: %r" % r)
        # makefile() may not have read past the 220: it is line-buffered
        # and the server sends nothing more before our ClientHello.
    s.sendall(client_hello(VERSIONS[a.version], suites))
    hdr = read_exact(s, 5)
    if len(hdr) < 5:
        print("CLOSED")
        return 0
    kind, _, length = struct.unpack("!BHH", hdr)
    rec = read_exact(s, min(length, 16384))
    if kind == 21 and len(rec) >= 2:
        print("ALERT %d %d" % (rec[0], rec[1]))
    elif kind == 22 and len(rec) >= 39 and rec[0] == 2:
        sid_len = rec[38]
        off = 39 + sid_len
        print("CHOSEN 0x%04x" % struct.unpack("!H", rec[off:off + 2])[0])
    else:
        print("OTHER " + (hdr + rec[:16]).hex())
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
