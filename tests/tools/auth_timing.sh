#!/usr/bin/env bash
# auth_timing.sh - how long `auth: users` takes to answer AUTH PLAIN for a
# configured user (wrong password) and for a user name that does not exist,
# through the real binary. A measurement to read, not a test: it prints
# medians and fails only when it cannot measure.
#
# Usage: tests/tools/auth_timing.sh [PATH/TO/smtp-tls-proxy] [TRIES] [PREFIX]
#   binary  default $STP_BIN, else build/smtp-tls-proxy
#   TRIES   per case, default 20
#   PREFIX  crypt_gensalt prefix of the user's hash: '$y$' (default,
#           yescrypt), '$6$', '$2b$', ... (libcrypt's default cost)
#
# The proxy allows 5 AUTH failures per client address in 10 minutes
# (limits.h), and the client is 127.0.0.1 only, so the tries run in
# batches of 4 against a fresh proxy each. Each try is one connection:
# greeting, EHLO, then the time from sending "AUTH PLAIN <base64>" to the
# 535 reply. The hash is made with libcrypt through ctypes (no mkpasswd
# needed). Loopback only; every proxy started is stopped on exit.
set -euo pipefail
BIN=${1:-${STP_BIN:-build/smtp-tls-proxy}}
TRIES=${2:-20}
PREFIX=${3:-'$y$'}
[ -x "$BIN" ] || { echo "auth_timing: binary $BIN not found" >&2; exit 2; }
BIN=$(realpath "$BIN")
W=$(mktemp -d /tmp/stp-auth-timing.XXXXXX)
trap 'rm -rf "$W"' EXIT

exec /usr/bin/python3 - "$BIN" "$TRIES" "$PREFIX" "$W" <<'EOF'
import base64, ctypes, os, re, signal, socket, statistics, subprocess, sys, time

binary, tries, prefix, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lib = ctypes.CDLL("libcrypt.so.1")
lib.crypt_gensalt_rn.restype = ctypes.c_char_p
lib.crypt_gensalt_rn.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_char_p, ctypes.c_int]
lib.crypt.restype = ctypes.c_char_p
lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
buf = ctypes.create_string_buffer(256)
setting = lib.crypt_gensalt_rn(prefix.encode(), 0, None, 0, buf, 256)
if not setting:
    sys.exit("libcrypt cannot make a %s salt" % prefix)
hashed = lib.crypt(b"right-Pw-1", setting).decode()
if hashed.startswith("*"):
    sys.exit("crypt failed for " + prefix)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

cfg = os.path.join(work, "proxy.yaml")
with open(cfg, "w") as f:
    f.write(f"""hostname: proxy.test
log: {{ level: info, format: text }}
listeners:
  - name: lan
    listen: "127.0.0.1:0"
    auth: users
    users: {{ scanner1: "{hashed}" }}
upstreams:
  - name: up
    host: 127.0.0.1
    port: {free_port()}
routes:
  - name: default
    upstream: up
""")

def start():
    errpath = os.path.join(work, "proxy.err")
    p = subprocess.Popen([binary, "-c", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(errpath, "w"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(r"listening listener=lan addr=127\.0\.0\.1:(\d+)", open(errpath).read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            sys.exit("proxy exited:\n" + open(errpath).read())
        time.sleep(0.02)
    p.kill(); sys.exit("proxy did not start:\n" + open(errpath).read())

def reply(f):
    while True:
        l = f.readline(4096)
        if not l:
            raise SystemExit("connection closed")
        if l[3:4] != b"-":
            return l

def one(port, user, pw):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO timing.test\r\n"); reply(f)
    arg = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode())
    t0 = time.perf_counter()
    s.sendall(b"AUTH PLAIN " + arg + b"\r\n")
    r = reply(f)
    dt = time.perf_counter() - t0
    s.close()
    if not r.startswith(b"535"):
        raise SystemExit("expected 535, got %r" % r)
    return dt * 1000

def batch(user, n, out):
    p, port = start()
    try:
        for _ in range(n):
            out.append(one(port, user, "wrong-Pw-2"))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()

# Batches alternate between the cases, so drift in machine load hits both.
known, unknown = [], []
while len(known) < tries:
    n = min(4, tries - len(known))
    batch("scanner1", n, known)
    batch("no-such-user", n, unknown)


def fmt(v):
    return "median %6.2f ms  min %6.2f  max %6.2f  (n=%d)" % (
        statistics.median(v), min(v), max(v), len(v))


# method and cost only (the salt and hash are throw-away but need not show)
params = hashed[:7] if prefix.startswith("$2") else hashed.rsplit("$", 2)[0] + "$"
print("user's hash   " + params)
print("known user    " + fmt(known))
print("unknown user  " + fmt(unknown))
print("ratio unknown/known  %.2f" % (statistics.median(unknown) / statistics.median(known)))
EOF
