#!/usr/bin/env bash
# README set-up command 1: install what is missing, build, and show the
# proxy's main job end to end on this machine, loopback only:
#   device (swaks, plain SMTP) -> smtp-tls-proxy -> STARTTLS + AUTH -> upstream
# The upstream is aiosmtpd with a certificate from a demo CA made here; what
# it received (TLS version, authenticated user, envelope, message) is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
bash .ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target smtp-tls-proxy >/dev/null

DEMO=$(mktemp -d /tmp/stp-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DEMO"
}
trap cleanup EXIT

bash tests/tools/gen_certs.sh "$DEMO" >/dev/null 2>&1
export DEMO_UPSTREAM_PASSWORD="demo-app-password"

# A real upstream: STARTTLS, AUTH required, credentials demo@example.com.
/usr/bin/python3 tests/tools/upstream.py --port 0 --tls starttls \
  --cert "$DEMO/server.crt" --key "$DEMO/server.key" --auth-require \
  --user "demo@example.com:$DEMO_UPSTREAM_PASSWORD" --record "$DEMO/upstream.jsonl" \
  --lifetime 120 >"$DEMO/upstream.out" 2>"$DEMO/upstream.err" &
pids+=($!)
for _ in $(seq 50); do grep -q READY "$DEMO/upstream.out" 2>/dev/null && break; sleep 0.1; done
UP_PORT=$(awk '/READY/ {print $2}' "$DEMO/upstream.out")
[ -n "$UP_PORT" ] || { echo "upstream did not start"; cat "$DEMO/upstream.err"; exit 1; }

sed "s/port: 587 .*/port: $UP_PORT/" config/demo.yaml >"$DEMO/proxy.yaml"
./build/smtp-tls-proxy -c "$DEMO/proxy.yaml" --check
./build/smtp-tls-proxy -c "$DEMO/proxy.yaml" 2>"$DEMO/proxy.log" &
pids+=($!)
for _ in $(seq 50); do grep -q "listening" "$DEMO/proxy.log" 2>/dev/null && break; sleep 0.1; done
LAN=$(grep -o 'addr=127.0.0.1:[0-9]*' "$DEMO/proxy.log" | head -1 | cut -d= -f2)
[ -n "$LAN" ] || { echo "proxy did not start"; cat "$DEMO/proxy.log"; exit 1; }

echo
echo "== A scanner sends plain SMTP (no TLS, no AUTH) to the proxy at $LAN =="
swaks --server "$LAN" --helo scanner-3f.lan --from scan@scanner.local --to boss@example.com \
  --header "Subject: Scanned document" --body "Scan attached (demo)." 2>&1 |
  grep -E '^ ?(<-|->) ' | grep -vE '^ -> (Date|Message-Id|X-Mailer|To|From|Subject):' |
  sed 's/^ *-> /  device: /; s/^ *<- /  proxy:  /'

echo
echo "== What the upstream received =="
/usr/bin/python3 - "$DEMO/upstream.jsonl" <<'PY'
import base64, json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    print(f"  TLS version        : {m['tls_version']}")
    print(f"  authenticated user : {m['auth_user']}")
    print(f"  HELO name          : {m['helo']}")
    print(f"  envelope sender    : {m['mail_from']}   (rewritten by route 'scanners')")
    print(f"  envelope recipients: {', '.join(m['rcpt_tos'])}")
    print(f"  message ({m['data_len']} bytes):")
    for l in base64.b64decode(m['data_b64']).decode().splitlines():
        print("    | " + l)
PY
echo
echo "== The proxy's log line for the message (no password in it) =="
grep ' message ' "$DEMO/proxy.log" | sed 's/^/  /'
if grep -q "$DEMO_UPSTREAM_PASSWORD" "$DEMO/proxy.log"; then echo "password leaked!"; exit 1; fi
