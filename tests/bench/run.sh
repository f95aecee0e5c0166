#!/usr/bin/env bash
# tests/bench/run.sh - the benchmark of issue 6, in one command, as root on
# Debian 12, from a clone of this repository:
#
#   bash tests/bench/run.sh
#
# It installs what is missing (build deps, postfix, stunnel4), builds the
# proxy and the bench tools (Release), makes a test CA and then, in one run
# and against the same upstream (tests/bench/sink: STARTTLS, any AUTH,
# discards), measures:
#   plain direct   loadgen -> sink, plain SMTP (the limit)
#   TLS direct     loadgen -> sink, STARTTLS + AUTH PLAIN (the upstream leg alone)
#   proxy          loadgen -> smtp-tls-proxy -> STARTTLS (verified) + AUTH -> sink
#   postfix        loadgen -> Postfix relay (private instance) -> verified TLS +
#                  SASL -> sink, end to end: until the sink has every message
#   stunnel        loadgen -> stunnel client, protocol = smtp -> STARTTLS
#                  (verified) -> sink; stunnel cannot inject AUTH, so the
#                  load generator sends AUTH PLAIN through the tunnel itself
# Cases: 1 KiB, 10 KiB, 10 MiB messages x 1, 20, 200 sessions; one 50 MiB
# message at a time (five in a row, the median compared); 2 000 idle sessions (RSS per session of the proxy and stunnel);
# one 100 MiB message through a fresh proxy (its VmHWM).
# Every run is bounded by a message count and by BENCH_SECONDS (default 8:
# no new message is started after that). The table goes to stdout and to
# tests/bench/last-result.md.
#
# Peers run from a private temporary directory, on 127.0.0.1 only, on free
# high ports; no system-wide configuration is read or written beyond the
# package installation itself, and everything started here is stopped on
# exit, failure or Ctrl-C.
#
# Environment: BENCH_SECONDS (default 8), BENCH_QUICK=1 (a smoke run: 1 s
# per case, small counts), BENCH_KEEP=1 (keep the work directory),
# BENCH_SKIP_INSTALL=1, BENCH_BASELINE=REV (also build the proxy of git
# revision REV and measure it in the same run, right before or after this
# tree's proxy in every case, the order alternating; the table gets a
# baseline section: is a change within noise of an older build?),
# BENCH_CASES="NAME ..." (only these rows of the matrix, e.g. "10KiB×200").
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T_START=$(date +%s)
SECS=${BENCH_SECONDS:-8}
QUICK=${BENCH_QUICK:-0}
[ "$QUICK" = 1 ] && SECS=1

# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
[ "$(id -u)" = 0 ] || die "run as root (it installs packages and runs Postfix)"

# --- install ------------------------------------------------------------------
if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  pkgs="build-essential cmake pkg-config libuv1-dev libyaml-dev android-libboringssl-dev
        openssl ca-certificates postfix libsasl2-modules stunnel4"
  missing=()
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    # No configuration: the package must not set up (or start) a system
    # Postfix on port 25; the benchmark runs its own private instance.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# --- build --------------------------------------------------------------------
bench_build
BASE_REV=${BENCH_BASELINE:-}
if [ -n "$BASE_REV" ]; then
  say "building the baseline $BASE_REV (Release) in build-bench-base/"
  BASE_SRC=$ROOT/build-bench-base/src
  rm -rf "$BASE_SRC" && mkdir -p "$BASE_SRC"
  git -C "$ROOT" archive "$BASE_REV" | tar -x -C "$BASE_SRC"
  cmake -S "$BASE_SRC" -B "$ROOT/build-bench-base/build" -DCMAKE_BUILD_TYPE=Release \
    -DSTP_TESTS=OFF >/dev/null
  cmake --build "$ROOT/build-bench-base/build" -j"$(nproc)" --target smtp-tls-proxy >/dev/null
  BASE_PROXY=$ROOT/build-bench-base/build/smtp-tls-proxy
  BASE_REV=$(git -C "$ROOT" rev-parse --short "$BASE_REV")
fi

# --- private work area and clean-up -------------------------------------------
W=$(mktemp -d /tmp/stp-bench.XXXXXX)
chmod 755 "$W" # Postfix's unprivileged daemons read the CA and maps here
PIDS=()
PF_ETC=$W/postfix/etc
cleanup() {
  set +e
  if [ -f "$PF_ETC/main.cf" ]; then
    postfix -c "$PF_ETC" stop >/dev/null 2>&1
    pf_master=$(head -1 "$W/postfix/queue/pid/master.pid" 2>/dev/null | tr -d ' ')
    [ -n "$pf_master" ] && kill "$pf_master" 2>/dev/null
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 2 000 idle sessions need more than the usual 1 024 descriptors
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
wait_for() { # FILE PATTERN
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

bash tests/tools/gen_certs.sh "$W/pki" >/dev/null 2>&1
chmod 755 "$W/pki"
chmod 644 "$W/pki/ca.crt"
CA=$W/pki/ca.crt
PASS=bench-upstream-secret
export BENCH_UPSTREAM_PASSWORD=$PASS

# --- the upstream ---------------------------------------------------------------
"$SINK" --cert "$W/pki/server.crt" --key "$W/pki/server.key" --stats "$W/sink.stats" \
  >"$W/sink.out" 2>"$W/sink.err" &
PIDS+=($!)
wait_for "$W/sink.out" READY || die "sink did not start: $(cat "$W/sink.err")"
SINK_PORT=$(sed -n 's/.*starttls=\([0-9]*\).*/\1/p' "$W/sink.out")

# --- smtp-tls-proxy ---------------------------------------------------------------
write_proxy_cfg() {
  cat >"$W/proxy.yaml" <<EOF
hostname: bench.lan
log: { level: info, format: text }
shutdown_grace: 2s
listeners:
  - name: lan
    listen: "127.0.0.1:0"
    allow: ["127.0.0.0/8"]
    max_message_size: 200MiB
    max_connections: 5000
    max_connections_per_client: 5000
upstreams:
  - name: sink
    host: 127.0.0.1
    port: $SINK_PORT
    tls: starttls
    server_name: localhost
    ca_file: $CA
    auth:
      username: bench@example.com
      password_env: BENCH_UPSTREAM_PASSWORD
routes:
  - name: all
    upstream: sink
EOF
}
PROXY_PID=
PROXY_PORT=
start_proxy() { # LOGNAME [BINARY]
  "${2:-$PROXY}" -c "$W/proxy.yaml" 2>"$W/$1" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_for "$W/$1" "listening listener=" || die "proxy did not start: $(cat "$W/$1")"
  PROXY_PORT=$(grep -o 'addr=127.0.0.1:[0-9]*' "$W/$1" | head -1 | cut -d: -f2)
}
stop_proxy() {
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
}
write_proxy_cfg
if [ -n "$BASE_REV" ]; then
  start_proxy proxy-base.log "$BASE_PROXY"
  BASE_PID=$PROXY_PID BASE_PORT=$PROXY_PORT
fi
start_proxy proxy.log
PROXY_MAIN_PID=$PROXY_PID

# --- stunnel: client mode, protocol = smtp, verified ------------------------------
STUNNEL_PORT=$(free_port)
cat >"$W/stunnel.conf" <<EOF
foreground = yes
pid =
syslog = no
output = $W/stunnel.log
debug = warning
[smtp]
client = yes
accept = 127.0.0.1:$STUNNEL_PORT
connect = 127.0.0.1:$SINK_PORT
protocol = smtp
sni = localhost
verifyChain = yes
CAfile = $CA
checkHost = localhost
EOF
stunnel4 "$W/stunnel.conf" >/dev/null 2>&1 &
STUNNEL_PID=$!
PIDS+=("$STUNNEL_PID")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$STUNNEL_PORT") 2>/dev/null && break; sleep 0.1; done

# --- Postfix: a private instance, relay with verified TLS and SASL -------------------
PF_PORT=$(free_port)
mkdir -p "$PF_ETC" "$W/postfix/queue" "$W/postfix/data"
chown postfix "$W/postfix/data"
echo "[localhost]:$SINK_PORT bench@example.com:$PASS" >"$PF_ETC/sasl_passwd"
chmod 640 "$PF_ETC/sasl_passwd"
cat >"$PF_ETC/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $W/postfix/queue
data_directory = $W/postfix/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $W/postfix/maillog
maillog_file_prefixes = $W
myhostname = bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled
alias_maps =
alias_database =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# an admin would lift these for a busy LAN relay, so they are lifted here
message_size_limit = 0
default_process_limit = 400
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
# the relay: verified TLS (chain and name) and SASL, like the proxy
relayhost = [localhost]:$SINK_PORT
smtp_host_lookup = native
smtp_dns_support_level = disabled
smtp_tls_security_level = verify
smtp_tls_verify_cert_match = hostname
smtp_tls_CAfile = $CA
smtp_tls_loglevel = 1
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:$PF_ETC/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
EOF
# chroot off: a private queue directory has no copy of /etc/services etc.
cat >"$PF_ETC/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
postfix -c "$PF_ETC" start >/dev/null 2>&1 ||
  die "postfix did not start: $(tail -5 "$W/postfix/maillog" 2>/dev/null)"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null && break; sleep 0.1; done

say "sink :$SINK_PORT  proxy :$PROXY_PORT  stunnel :$STUNNEL_PORT  postfix :$PF_PORT  work $W"

# --- running one measurement ----------------------------------------------------------
declare -A RATE P50 P99 BPS ERRS AUTHS
sink_auths() { awk '{ print $3 }' "$W/sink.stats" 2>/dev/null || echo 0; }
# run TARGET CASE SIZE SESSIONS MESSAGES
run() {
  local target=$1 case=$2 size=$3 n=$4 m=$5 port args=() dur=$SECS out
  case $target in
  plain) port=$SINK_PORT ;;
  tls) port=$SINK_PORT args=(--mode starttls --auth "bench@example.com:$PASS") ;;
  proxy) port=$PROXY_PORT ;;
  base) port=$BASE_PORT ;;
  stunnel) port=$STUNNEL_PORT args=(--auth "bench@example.com:$PASS") ;;
  postfix)
    port=$PF_PORT
    args=(--sink-stats "$W/sink.stats")
    # store and forward: half the submission time, then the queue drains
    dur=$(awk -v s="$SECS" 'BEGIN { print s / 2 }')
    postsuper -c "$PF_ETC" -d ALL >/dev/null 2>&1 || true
    ;;
  esac
  local a0
  a0=$(sink_auths)
  out=$("$LOADGEN" --port "$port" "${args[@]}" --sessions "$n" --messages "$m" \
    --connections "${CONNS:-1}" --size "$size" \
    --duration "$dur" --timeout 240 --label "$target" 2>>"$W/loadgen.err" | grep '^RESULT') || true
  local k="$target|$case"
  AUTHS[$target]=$((${AUTHS[$target]:-0} + $(sink_auths) - a0))
  if [ -z "$out" ]; then
    RATE[$k]=fail; ERRS[$k]=fail
    return
  fi
  RATE[$k]=$(sed -n 's/.* msg_per_s=\([^ ]*\).*/\1/p' <<<"$out")
  P50[$k]=$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<<"$out")
  P99[$k]=$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$out")
  BPS[$k]=$(sed -n 's/.* bytes_per_s=\([^ ]*\).*/\1/p' <<<"$out")
  ERRS[$k]=$(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$out")
  printf '   %-8s %-14s %s\n' "$target" "$case" "${out#RESULT }" >&2
}

# case name, size, sessions, messages per session (the count bound; the
# time bound is BENCH_SECONDS)
# A case ending in ":Cc" makes every session reconnect C times with one
# message each: printers open a session per scan, so this is the case where
# a TLS handshake and AUTH per message (stunnel, Postfix) show.
if [ "$QUICK" = 1 ]; then
  CASES="10KiB×20/session:10k:20:1:50c 1KiB×1:1k:1:200 1KiB×20:1k:20:20 1KiB×200:1k:200:2 10KiB×1:10k:1:200
         10KiB×20:10k:20:20 10KiB×200:10k:200:2 10MiB×1:10m:1:2 10MiB×20:10m:20:1
         10MiB×200:10m:200:1 50MiB×1:50m:1:2"
else
  CASES="10KiB×20/session:10k:20:1:1000c 1KiB×1:1k:1:20000 1KiB×20:1k:20:2000 1KiB×200:1k:200:200 10KiB×1:10k:1:20000
         10KiB×20:10k:20:2000 10KiB×200:10k:200:200 10MiB×1:10m:1:20 10MiB×20:10m:20:2
         10MiB×200:10m:200:1 50MiB×1:50m:1:5"
fi
if [ -n "${BENCH_CASES:-}" ]; then
  keep=
  for c in $CASES; do
    for want in $BENCH_CASES; do [ "${c%%:*}" = "$want" ] && keep+=" $c"; done
  done
  [ -n "$keep" ] || die "BENCH_CASES matches no case (the names are those of the table)"
  CASES=$keep
fi
TARGETS="plain tls proxy postfix stunnel"
i=0
for c in $CASES; do
  IFS=: read -r name size n m conns <<<"$c"
  say "case $name"
  order=$TARGETS
  if [ -n "$BASE_REV" ]; then # the baseline next to the proxy, first every other case
    if [ $((i % 2)) = 0 ]; then order=${TARGETS/proxy/proxy base}; else order=${TARGETS/proxy/base proxy}; fi
  fi
  i=$((i + 1))
  for t in $order; do CONNS=${conns%c} run "$t" "$name" "$size" "$n" "$m"; done
done
PROXY_MATRIX_HWM=$(rss_kib "$PROXY_MAIN_PID" VmHWM)

# the peers really did verified TLS and AUTH
grep -q "Verified TLS connection established" "$W/postfix/maillog" ||
  say "WARNING: Postfix did not log a verified TLS connection"
grep -qE "warning: .*SASL|status=deferred|status=bounced" "$W/postfix/maillog" &&
  say "WARNING: Postfix logged SASL warnings or deferrals (see maillog)"

# --- idle sessions: RSS per session ------------------------------------------------------
IDLE_N=2000
[ "$QUICK" = 1 ] && IDLE_N=200
idle_kib() { # PID PORT [loadgen args...]: KiB of RSS per idle session
  local pid=$1 port=$2 before after
  shift 2
  before=$(rss_kib "$pid" VmRSS)
  "$LOADGEN" --port "$port" "$@" --sessions "$IDLE_N" --idle 4 --timeout 120 --label idle \
    >"$W/idle.out" 2>>"$W/loadgen.err" &
  local lg=$!
  if wait_for "$W/idle.out" IDLE_READY; then
    sleep 1
    after=$(rss_kib "$pid" VmRSS)
  fi
  wait "$lg" || true
  local ready
  ready=$(sed -n 's/IDLE_READY n=//p' "$W/idle.out")
  if [ -z "${after:-}" ] || [ "${ready:-0}" -lt "$IDLE_N" ]; then
    echo "fail(${ready:-0}/$IDLE_N)"
    return
  fi
  awk -v a="$after" -v b="$before" -v n="$IDLE_N" 'BEGIN { printf "%.1f", (a - b) / n }'
}
say "idle: $IDLE_N sessions"
stop_proxy
start_proxy proxy-idle.log
IDLE_PROXY=$(idle_kib "$PROXY_PID" "$PROXY_PORT")
IDLE_STUNNEL=$(idle_kib "$STUNNEL_PID" "$STUNNEL_PORT")
if [ -n "$BASE_REV" ]; then
  kill "$BASE_PID" 2>/dev/null; wait "$BASE_PID" 2>/dev/null || true
  stop_proxy # one idle proxy at a time; the 100 MiB step stops the baseline's
  start_proxy proxy-base-idle.log "$BASE_PROXY"
  IDLE_BASE=$(idle_kib "$PROXY_PID" "$PROXY_PORT")
fi
say "   proxy ${IDLE_PROXY} KiB/session, stunnel ${IDLE_STUNNEL} KiB/session"

# --- one 100 MiB message through a fresh proxy: peak RSS --------------------------------------
say "100 MiB message through a fresh proxy"
stop_proxy
start_proxy proxy-100m.log
out=$("$LOADGEN" --port "$PROXY_PORT" --sessions 1 --messages 1 --size 100m --timeout 240 \
  --label proxy-100m 2>>"$W/loadgen.err" | grep '^RESULT') || true
HWM_100M=$(rss_kib "$PROXY_PID" VmHWM)
ERR_100M=$(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$out")
SECS_100M=$(sed -n 's/.* seconds=\([^ ]*\).*/\1/p' <<<"$out")
[ -n "$out" ] || ERR_100M=fail
stop_proxy

# --- the API upstreams (issue 14): tests/bench/api.sh ------------------------------------------
API_ROWS=$(PROXY=$PROXY LOADGEN=$LOADGEN W=$W BENCH_SECONDS=$SECS BENCH_QUICK=$QUICK \
  bash tests/bench/api.sh) || API_ROWS="API upstreams: tests/bench/api.sh failed (see above)"
ELAPSED=$(($(date +%s) - T_START))

# --- the table ---------------------------------------------------------------------------------
ratio() { # A B: A/B, or "-"
  awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'
}
cell() { # KEY: rate, marked when there were errors
  local r=${RATE[$1]:-} e=${ERRS[$1]:-}
  [ -z "$r" ] && { echo "-"; return; }
  [ "$r" = fail ] && { echo "fail"; return; }
  if [ "${e:-0}" != 0 ]; then echo "$r (${e} err)"; else echo "$r"; fi
}
verdict() { # OK-CONDITION
  if awk "BEGIN { exit !($1) }" 2>/dev/null; then echo met; else echo "**missed**"; fi
}
RES=$ROOT/tests/bench/last-result.md
{
  echo "### Benchmark: $(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -r); ${SECS} s per run"
  echo
  echo "Messages per second (higher is better). Same sink for every column."
  echo
  echo "| case | plain direct | TLS direct | proxy | postfix (e2e) | stunnel | proxy/postfix | proxy/stunnel | proxy/plain direct | proxy/TLS direct |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for c in $CASES; do
    IFS=: read -r name _ <<<"$c"
    k=$name
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" \
      "$(cell "plain|$k")" "$(cell "tls|$k")" "$(cell "proxy|$k")" "$(cell "postfix|$k")" \
      "$(cell "stunnel|$k")" \
      "$(ratio "${RATE[proxy|$k]:-}" "${RATE[postfix|$k]:-}")" \
      "$(ratio "${RATE[proxy|$k]:-}" "${RATE[stunnel|$k]:-}")" \
      "$(ratio "${RATE[proxy|$k]:-}" "${RATE[plain|$k]:-}")" \
      "$(ratio "${RATE[proxy|$k]:-}" "${RATE[tls|$k]:-}")"
  done
  echo
  echo "Latency per message, MAIL to the final reply, p50 / p99 in ms (postfix: until its"
  echo "250 queued, not until delivery)."
  echo
  echo "| case | plain direct | TLS direct | proxy | postfix | stunnel |"
  echo "|---|---:|---:|---:|---:|---:|"
  for c in $CASES; do
    IFS=: read -r name _ <<<"$c"
    row="| $name"
    for t in $TARGETS; do row+=" | ${P50[$t|$name]:--} / ${P99[$t|$name]:--}"; done
    echo "$row |"
  done
  echo
  echo "| memory | proxy | stunnel |"
  echo "|---|---:|---:|"
  echo "| RSS per idle session ($IDLE_N sessions after EHLO), KiB | $IDLE_PROXY | $IDLE_STUNNEL |"
  echo "| peak RSS (VmHWM) of a fresh proxy after one 100 MiB message, KiB | $HWM_100M | |"
  echo "| peak RSS (VmHWM) of the proxy over the whole matrix above, KiB | $PROXY_MATRIX_HWM | |"
  echo
  big="50MiB×1"
  echo "Targets (issue 6). The issue's peers figures (Postfix ~130/s, stunnel ~90/s) are"
  echo "for a fresh session and TLS handshake per message, which is how printers send:"
  echo "that is the /session case. The long-session case (2000 messages per session) is"
  echo "shown too: there stunnel's one handshake is amortised and it only copies bytes."
  echo
  for k in "10KiB×20/session" "10KiB×20"; do
    echo "- $k: proxy ≥ 10× Postfix end to end: $(ratio "${RATE[proxy|$k]:-}" "${RATE[postfix|$k]:-}")× — $(verdict "$(ratio "${RATE[proxy|$k]:-}" "${RATE[postfix|$k]:-}" | tr -d -) + 0 >= 10")"
    echo "- $k: proxy ≥ 5× stunnel: $(ratio "${RATE[proxy|$k]:-}" "${RATE[stunnel|$k]:-}")× — $(verdict "$(ratio "${RATE[proxy|$k]:-}" "${RATE[stunnel|$k]:-}" | tr -d -) + 0 >= 5")"
    echo "- $k: proxy ≥ ¼ of plain direct: $(ratio "${RATE[proxy|$k]:-}" "${RATE[plain|$k]:-}")× — $(verdict "$(ratio "${RATE[proxy|$k]:-}" "${RATE[plain|$k]:-}" | tr -d -) + 0 >= 0.25")"
  done
  big_r=$(ratio "${P50[proxy|$big]:-}" "${P50[stunnel|$big]:-}")
  echo "- one 50 MiB message: proxy no slower than 1.2× stunnel: median time proxy ${P50[proxy|$big]:-?} ms, stunnel ${P50[stunnel|$big]:-?} ms = ${big_r}× — $(verdict "\"$big_r\" ~ /^[0-9.]+$/ && $big_r <= 1.2")"
  echo "- ≤ 32 KiB per idle session: $IDLE_PROXY KiB — $(verdict "\"$IDLE_PROXY\" ~ /^[0-9.]+$/ && $IDLE_PROXY <= 32")"
  echo "- 100 MiB message in < 32 MiB RSS: $HWM_100M KiB (${SECS_100M:-?} s, errors ${ERR_100M:-?}) — $(verdict "\"$HWM_100M\" ~ /^[0-9]+$/ && $HWM_100M < 32768 && \"${ERR_100M:-x}\" == \"0\"")"
  echo "- whole run: ${ELAPSED} s (target < 600 s) — $(verdict "$ELAPSED < 600")"
  echo
  echo "$API_ROWS"
  echo
  if [ -n "$BASE_REV" ]; then
    echo "Against the baseline $BASE_REV, measured in this run next to this tree's proxy"
    echo "(the order alternating case by case), messages per second:"
    echo
    echo "| case | proxy | baseline $BASE_REV | proxy/baseline | p50 ms proxy / baseline |"
    echo "|---|---:|---:|---:|---:|"
    for c in $CASES; do
      IFS=: read -r name _ <<<"$c"
      printf '| %s | %s | %s | %s | %s / %s |\n' "$name" "$(cell "proxy|$name")" \
        "$(cell "base|$name")" "$(ratio "${RATE[proxy|$name]:-}" "${RATE[base|$name]:-}")" \
        "${P50[proxy|$name]:--}" "${P50[base|$name]:--}"
    done
    echo
    echo "RSS per idle session: proxy $IDLE_PROXY KiB, baseline $IDLE_BASE KiB."
    echo
  fi
  echo "Notes: *plain direct* is the load generator straight into the sink without TLS (the"
  echo "limit); *TLS direct* adds STARTTLS and AUTH, the work of the proxy's upstream leg."
  echo "*postfix (e2e)* is Postfix $(postconf -d -h mail_version 2>/dev/null) as a relay with"
  echo "verified TLS and SASL, measured until the sink had every message (half the"
  echo "submission time, then the queue drains). *stunnel* is stunnel $(stunnel4 -version 2>&1 | awk '/^stunnel/ {print $2; exit}')"
  echo "in client mode with \`protocol = smtp\` and a verified certificate; it cannot add"
  echo "credentials, so the load generator sends AUTH PLAIN through the tunnel itself."
  echo "Postfix's memory per idle session is not measured: it runs one smtpd process per"
  echo "session. Load generator, sink and peer share the machine's cores. The 50 MiB case"
  echo "sends its messages one after the other on one session. Upstream AUTHs the sink saw:"
  echo "proxy ${AUTHS[proxy]:-0}, postfix ${AUTHS[postfix]:-0}, stunnel ${AUTHS[stunnel]:-0} (sent by the client), TLS direct ${AUTHS[tls]:-0}."
} >"$RES"
cat "$RES"
