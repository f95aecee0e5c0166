#!/usr/bin/env bash
# tests/bench/api.sh - benchmark rows for the HTTP API upstreams (issue 14):
# the load generator -> smtp-tls-proxy -> Microsoft Graph / the Gmail API,
# where the APIs are the local HTTPS stand-ins tests/tools/api_fake.py (the
# real services cannot run here). Their Python HTTP servers are slower
# than the proxy, so these rows measure the pair, and the proxy's memory.
#
#   bash tests/bench/api.sh          # alone: builds build-bench/ if needed
#
# run.sh calls it with PROXY, LOADGEN and W (its work directory) set and
# appends the rows to tests/bench/last-result.md. Prints a Markdown table on
# stdout. Everything runs on 127.0.0.1 on free ports from a private
# directory; everything started here is stopped on exit.
# Environment: BENCH_QUICK=1 (small counts), BENCH_SECONDS (default 8).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${BENCH_SECONDS:-8}
[ "${BENCH_QUICK:-0}" = 1 ] && SECS=2
say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench-api: %s\n' "$*" >&2; exit 1; }

if [ -z "${PROXY:-}" ] || [ -z "${LOADGEN:-}" ]; then
  BUILD=$ROOT/build-bench
  if [ ! -x "$BUILD/smtp-tls-proxy" ] || [ ! -x "$BUILD/tests/bench/loadgen" ]; then
    say "building (Release) in build-bench/"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSTP_BENCH=ON -DSTP_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target smtp-tls-proxy bench_tools >/dev/null
  fi
  PROXY=$BUILD/smtp-tls-proxy
  LOADGEN=$BUILD/tests/bench/loadgen
fi
OWN_W=0
if [ -z "${W:-}" ]; then
  W=$(mktemp -d /tmp/stp-bench-api.XXXXXX)
  OWN_W=1
fi
A=$W/api
mkdir -p "$A"
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ "$OWN_W" = 1 ] && rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { for _ in $(seq 150); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
[ -s "$W/pki/ca.crt" ] || bash tests/tools/gen_certs.sh "$W/pki" >/dev/null 2>&1
printf 'cs-bench\n' >"$A/client-secret"
printf 'rt-initial\n' >"$A/refresh-token"
chmod 600 "$A/client-secret" "$A/refresh-token"

declare -A ROW
# one KIND: the stand-in, a proxy in front of it, the cases
bench_kind() {
  local kind=$1 fake_pid proxy_pid port pport
  /usr/bin/python3 tests/tools/api_fake.py --cert "$W/pki/server.crt" --key "$W/pki/server.key" \
    --record "$A/$kind.jsonl" --store "$A/$kind-store" --kind "$kind" \
    --client-secret cs-bench --mailbox bench@example.com --lifetime 900 \
    >"$A/$kind.out" 2>"$A/$kind.err" &
  fake_pid=$!
  PIDS+=("$fake_pid")
  wait_for "$A/$kind.out" READY || die "api_fake.py ($kind) did not start: $(cat "$A/$kind.err")"
  port=$(awk '{print $2}' "$A/$kind.out")
  local preset=google-gmail-api extra="        refresh_token_file: $A/refresh-token" mailbox=me
  if [ "$kind" = graph ]; then
    preset=microsoft365-graph extra="        tenant: bench.example" mailbox=bench@example.com
  fi
  cat >"$A/$kind.yaml" <<EOF
hostname: bench.lan
log: { level: info, format: text }
listeners:
  - name: lan
    listen: "127.0.0.1:0"
    allow: ["127.0.0.0/8"]
    max_message_size: 60MiB
    max_connections: 500
    max_connections_per_client: 500
upstreams:
  - name: api
    kind: $kind
    mailbox: $mailbox
    api_url: https://localhost:$port
    ca_file: $W/pki/ca.crt
    auth:
      oauth2:
        preset: $preset
$extra
        client_id: client-1
        client_secret_file: $A/client-secret
        token_url: https://localhost:$port/token
        ca_file: $W/pki/ca.crt
routes:
  - name: all
    upstream: api
EOF
  "$PROXY" -c "$A/$kind.yaml" 2>"$A/$kind-proxy.log" &
  proxy_pid=$!
  PIDS+=("$proxy_pid")
  wait_for "$A/$kind-proxy.log" "listening listener=" || die "proxy ($kind) did not start"
  pport=$(grep -o 'addr=127.0.0.1:[0-9]*' "$A/$kind-proxy.log" | head -1 | cut -d: -f2)
  local cases="1KiB×1:1k:1:200 1KiB×20:1k:20:20 10MiB×1:10m:1:3"
  [ "${BENCH_QUICK:-0}" = 1 ] && cases="1KiB×1:1k:1:20 1KiB×20:1k:20:2 10MiB×1:10m:1:1"
  for c in $cases; do
    IFS=: read -r name size n m <<<"$c"
    local out
    out=$("$LOADGEN" --port "$pport" --sessions "$n" --messages "$m" --size "$size" \
      --duration "$SECS" --timeout 240 --label "$kind" 2>>"$A/loadgen.err" | grep '^RESULT') || true
    printf '   %-6s %-9s %s\n' "$kind" "$name" "${out#RESULT }" >&2
    if [ -z "$out" ]; then
      ROW[$kind|$name]="fail | - | -"
      continue
    fi
    local rate p50 p99 errs
    rate=$(sed -n 's/.* msg_per_s=\([^ ]*\).*/\1/p' <<<"$out")
    p50=$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<<"$out")
    p99=$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$out")
    errs=$(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$out")
    ROW[$kind|$name]="$rate | $p50 / $p99 | $errs"
  done
  ROW[$kind|hwm]=$(rss_kib "$proxy_pid" VmHWM)
  kill "$proxy_pid" "$fake_pid" 2>/dev/null || true
  wait "$proxy_pid" "$fake_pid" 2>/dev/null || true
}

say "API upstreams against the local stand-ins"
bench_kind graph
bench_kind gmail

echo "API upstreams (issue 14): load generator -> proxy -> local HTTPS stand-ins for"
echo "Microsoft Graph and the Gmail API (tests/tools/api_fake.py, Python). A 10 MiB"
echo "message goes to Graph as a draft with an upload session (its text part is"
echo "attached), to Gmail as one media upload. The stand-ins' Python TLS is the slower"
echo "side: the rates are the pair's, not the proxy's limit."
echo
echo "| API | case | msg/s | p50 / p99 ms | errors |"
echo "|---|---|---:|---:|---:|"
for kind in graph gmail; do
  for name in 1KiB×1 1KiB×20 10MiB×1; do
    echo "| $kind | $name | ${ROW[$kind|$name]:-- | - | -} |"
  done
done
echo
echo "Peak RSS (VmHWM) of the proxy over these cases: Graph ${ROW[graph|hwm]:-?} KiB, Gmail ${ROW[gmail|hwm]:-?} KiB."
