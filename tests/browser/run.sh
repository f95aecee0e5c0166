#!/usr/bin/env bash
# run.sh [BUILD_DIR] - the admin page in a real browser (admin_page.mjs).
# Installs puppeteer-core from package-lock.json (npm ci, never a browser:
# PUPPETEER_SKIP_DOWNLOAD=1; Debian's /usr/bin/chromium is used), starts
# tests/tools/upstream.py (aiosmtpd) and the proxy on loopback ports the
# kernel picks, sends one message that is delivered and, with the upstream
# gone, one that is spooled, brings the upstream back on its port, and runs
# the browser. Screenshots go to BUILD_DIR/browser/ (paths printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
bin=$build/smtp-tls-proxy
out=$build/browser
[ -x "$bin" ] || { echo "run.sh: build first ($bin missing)" >&2; exit 2; }
[ -x /usr/bin/chromium ] || { echo "run.sh: install chromium (.ci/install-deps)" >&2; exit 2; }
command -v node >/dev/null || { echo "run.sh: install nodejs and npm (.ci/install-deps)" >&2; exit 2; }
if [ ! -d "$here/node_modules/puppeteer-core" ]; then
  (cd "$here" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
rm -rf "$out" && mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # wait_for FILE REGEX: the first match (bounded: 10 s)
  for _ in $(seq 1 100); do
    if grep -Eo "$2" "$1" 2>/dev/null | head -1 | grep .; then return 0; fi
    sleep 0.1
  done
  echo "run.sh: no '$2' in $1" >&2; cat "$1" >&2; return 1
}

upstream() { # upstream PORT: aiosmtpd on that port (0: any); echoes the port
  /usr/bin/python3 "$root/tests/tools/upstream.py" --port "$1" --tls none \
    --record "$work/record.jsonl" --lifetime 120 >"$work/up.$1.out" 2>"$work/up.$1.err" &
  pids+=($!)
  echo $! >"$work/up.pid"
  wait_for "$work/up.$1.out" 'READY [0-9]+' | awk '{print $2}'
}

up_port=$(upstream 0)
pass="browser-Pa55word"
hash=$(openssl passwd -6 "$pass")
cat >"$work/proxy.yaml" <<YAML
hostname: admin-demo.lan
log: { level: info }
listeners:
  - name: lan
    listen: "127.0.0.1:0"
upstreams:
  - name: up
    host: 127.0.0.1
    port: $up_port
    tls: none
    insecure: true
    connect_timeout: 2s
routes:
  - name: default
    upstream: up
    on_upstream_failure: spool
spool:
  dir: $work/spool
  retry: [1h]
admin:
  listen: "127.0.0.1:0"
  users: { admin: "$hash" }
YAML
"$bin" -c "$work/proxy.yaml" 2>"$work/proxy.log" &
proxy_pid=$!
pids+=($proxy_pid)
lan=$(wait_for "$work/proxy.log" 'listener=lan addr=127.0.0.1:[0-9]+' | sed 's/.*://')
adm=$(wait_for "$work/proxy.log" 'admin-listening addr=127.0.0.1:[0-9]+' | sed 's/.*://')

send() { # send SUBJECT: one message through the proxy; prints the DATA reply
  /usr/bin/python3 - "$lan" "$1" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.sendmail("scanner@printers.lan", ["office@example.com", "archive@example.com"],
           "Subject: %s\r\nFrom: scanner@printers.lan\r\n\r\nscan attached\r\n" % sys.argv[2])
s.quit()
PY
}
send "delivered scan"
kill "$(cat "$work/up.pid")"; sleep 0.3
/usr/bin/python3 - "$lan" >"$work/spooled.txt" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.ehlo()
s.mail("scanner@printers.lan"); s.rcpt("office@example.com")
code, msg = s.data(b"Subject: spooled scan\r\nFrom: scanner@printers.lan\r\n\r\nscan attached\r\n")
print(code, msg.decode())
s.quit()
PY
id=$(grep -Eo 'queued locally as [0-9a-f]{16}' "$work/spooled.txt" | awk '{print $4}')
[ -n "$id" ] || { echo "run.sh: the message was not spooled: $(cat "$work/spooled.txt")" >&2; exit 1; }
upstream "$up_port" >/dev/null

ADMIN_URL="http://127.0.0.1:$adm/" ADMIN_USER=admin ADMIN_PASS="$pass" SPOOL_ID="$id" \
  RECORD="$work/record.jsonl" SHOT_DIR="$out" node "$here/admin_page.mjs"
# The proxy must stop cleanly (under ASan: without a leak or error report).
kill -TERM "$proxy_pid"
rc=0; wait "$proxy_pid" || rc=$?
cp "$work/proxy.log" "$out/proxy.log"
if [ "$rc" -ne 0 ] || grep -q 'Sanitizer' "$work/proxy.log"; then
  echo "run.sh: the proxy stopped uncleanly (exit $rc), see $out/proxy.log" >&2; exit 1
fi
echo "browser test passed; screenshots in $out"
