#!/usr/bin/python3
"""pp_tls_client.py PORT CA_FILE - a balancer's connection to an implicit-TLS
listener: a PROXY v1 header and the TLS ClientHello in one send() (one
segment), then the TLS handshake, the greeting and EHLO over TLS.

Prints "OK <greeting line>" and exits 0, or "FAIL <why>" and exits 1. Every
wait is bounded (10 s); loopback only.
"""
import socket
import ssl
import sys

HEADER = b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 465\r\n"


def main():
    port, ca = int(sys.argv[1]), sys.argv[2]
    ctx = ssl.create_default_context(cafile=ca)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    sock.sendall(HEADER + out.read())  # header and ClientHello together

    def pump():
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        inc.write(data)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            pump()
    sock.sendall(out.read())

    def line():
        buf = b""
        while not buf.endswith(b"\r\n"):
            try:
                buf += tls.read(1)
            except ssl.SSLWantReadError:
                pump()
        return buf.decode()

    greeting = line()
    tls.write(b"EHLO balancer\r\n")
    sock.sendall(out.read())
    ehlo = line()
    if not greeting.startswith("220") or not ehlo.startswith("250"):
        print("FAIL", greeting.strip(), ehlo.strip())
        return 1
    print("OK", greeting.strip())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - report any failure as one line
        print("FAIL", type(e).__name__, e)
        sys.exit(1)
