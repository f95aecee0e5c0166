#!/usr/bin/env bash
# tests/bench/spool.sh - the spool's benchmark (issue 13), in one command, as
# root on Debian 12, from a clone of this repository:
#
#   bash tests/bench/spool.sh
#
# Against the same upstream (tests/bench/sink: STARTTLS, any AUTH, discards):
#   no spool     loadgen -> proxy, a route without spool: the reference
#   spool up     loadgen -> proxy, a route with on_upstream_failure: spool and
#                the upstream up: each message's copy is kept while it
#                streams upstream, then dropped after the upstream's 250
#   spool down   loadgen -> proxy, the same route with its upstream down
#                (nothing listens on its port): every message is made
#                durable (fsync of the file, rename into queue/, fsync of
#                queue/) before the device gets its 250
#   postfix      loadgen -> a private Postfix relay -> verified TLS + SASL ->
#                sink, end to end: until the sink has every message (Postfix
#                always queues, so this is what a queue costs there)
# Cases: 10 KiB x 20 sessions, 10 KiB with a session per message (how
# printers send), 1 KiB x 1 session, 1 MiB x 20 sessions.
#
# The machine is shared and noisy, so "no spool" and "spool up" run
# alternately, BENCH_ROUNDS times (default 5), and their medians are
# compared; "spool down" and Postfix run BENCH_ROUNDS times too. Each run is
# bounded by BENCH_SECONDS (default 4). Targets: spool down at least 5x
# Postfix's end-to-end rate; spool up within 15% of no spool. The table goes
# to stdout and to tests/bench/last-spool-result.md, with the commit latency
# (fsync + rename + directory fsync, from the proxy's "spooled" log lines).
#
# Everything runs on 127.0.0.1 on free ports from a private temporary
# directory (the spool and Postfix's queue on the same file system);
# everything started is stopped on exit. Env: BENCH_SECONDS, BENCH_ROUNDS,
# BENCH_KEEP=1 (keep the work directory), BENCH_SKIP_INSTALL=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T_START=$(date +%s)
SECS=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-5}

# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
[ "$(id -u)" = 0 ] || die "run as root (it installs packages and runs Postfix)"

if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  pkgs="build-essential cmake pkg-config libuv1-dev libyaml-dev android-libboringssl-dev
        openssl ca-certificates postfix libsasl2-modules"
  missing=()
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    # No configuration: no system Postfix on port 25; the benchmark runs its own.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

bench_build

W=$(mktemp -d /tmp/stp-spool-bench.XXXXXX)
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

bash tests/tools/gen_certs.sh "$W/pki" >/dev/null 2>&1
chmod 755 "$W/pki"
chmod 644 "$W/pki/ca.crt"
CA=$W/pki/ca.crt
PASS=bench-upstream-secret
export BENCH_UPSTREAM_PASSWORD=$PASS

"$SINK" --cert "$W/pki/server.crt" --key "$W/pki/server.key" --stats "$W/sink.stats" \
  >"$W/sink.out" 2>"$W/sink.err" &
PIDS+=($!)
wait_for "$W/sink.out" READY || die "sink did not start: $(cat "$W/sink.err")"
SINK_PORT=$(sed -n 's/.*starttls=\([0-9]*\).*/\1/p' "$W/sink.out")
DOWN_PORT=$(free_port) # nothing listens there

# --- three proxies: no spool, spool (upstream up), spool (upstream down) ---------------
declare -A PORT PID
proxy_cfg() { # NAME UPSTREAM_PORT SPOOL(yes|no)
  local route_extra=""
  [ "$3" = yes ] && route_extra="    on_upstream_failure: spool"
  cat >"$W/$1.yaml" <<EOF
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
    port: $2
    tls: starttls
    server_name: localhost
    ca_file: $CA
    connect_timeout: 5s
    auth:
      username: bench@example.com
      password_env: BENCH_UPSTREAM_PASSWORD
spool:
  dir: $W/spool-$1
  max_size: 100GiB
  max_messages: 10000000
  retry: [1h]
  notify: postmaster@example.com
routes:
  - name: all
    upstream: sink
$route_extra
EOF
}
start_proxy() { # NAME
  "$PROXY" -c "$W/$1.yaml" 2>"$W/$1.log" &
  PID[$1]=$!
  PIDS+=("${PID[$1]}")
  wait_for "$W/$1.log" "listening listener=" || die "proxy $1 did not start: $(cat "$W/$1.log")"
  PORT[$1]=$(grep -o 'addr=127.0.0.1:[0-9]*' "$W/$1.log" | head -1 | cut -d: -f2)
}
proxy_cfg nospool "$SINK_PORT" no
proxy_cfg spoolup "$SINK_PORT" yes
proxy_cfg spooldown "$DOWN_PORT" yes
for p in nospool spoolup spooldown; do start_proxy $p; done

# --- Postfix: a private instance, relay with verified TLS and SASL (as run.sh) --------
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
message_size_limit = 0
default_process_limit = 400
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
relayhost = [localhost]:$SINK_PORT
smtp_host_lookup = native
smtp_dns_support_level = disabled
smtp_tls_security_level = verify
smtp_tls_verify_cert_match = hostname
smtp_tls_CAfile = $CA
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:$PF_ETC/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
EOF
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
say "sink :$SINK_PORT  proxies ${PORT[nospool]} ${PORT[spoolup]} ${PORT[spooldown]}  postfix :$PF_PORT  work $W"

# --- measuring ---------------------------------------------------------------------
declare -A RUNS ERRS
# one TARGET CASE SIZE SESSIONS MESSAGES CONNS: appends msg/s to RUNS[target|case]
one() {
  local t=$1 k=$2 size=$3 n=$4 m=$5 conns=$6 port args=() dur=$SECS out
  case $t in
  postfix)
    port=$PF_PORT
    args=(--sink-stats "$W/sink.stats")
    dur=$(awk -v s="$SECS" 'BEGIN { print s / 2 }') # then the queue drains
    postsuper -c "$PF_ETC" -d ALL >/dev/null 2>&1 || true
    ;;
  *) port=${PORT[$t]} ;;
  esac
  out=$("$LOADGEN" --port "$port" "${args[@]}" --sessions "$n" --messages "$m" \
    --connections "$conns" --size "$size" --duration "$dur" --timeout 240 --label "$t" \
    2>>"$W/loadgen.err" | grep '^RESULT') || true
  local r e
  r=$(sed -n 's/.* msg_per_s=\([^ ]*\).*/\1/p' <<<"$out")
  e=$(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$out")
  RUNS[$t|$k]="${RUNS[$t|$k]:-} ${r:-0}"
  ERRS[$t|$k]=$((${ERRS[$t|$k]:-0} + ${e:-1}))
  printf '   %-10s %-18s %s\n' "$t" "$k" "${out#RESULT }" >&2
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "-"; exit } print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# name:size:sessions:messages:connections (connections > 1: a session per message)
CASES="10KiB×20:10k:20:100000:1 10KiB×20/session:10k:20:1:200 1KiB×1:1k:1:100000:1 1MiB×20:1m:20:1000:1"
for c in $CASES; do
  IFS=: read -r name size n m conns <<<"$c"
  say "case $name"
  for _ in $(seq "$ROUNDS"); do
    for t in nospool spoolup spooldown postfix; do one "$t" "$name" "$size" "$n" "$m" "$conns"; done
  done
done

# the spool-down proxy's commit latency, from its "spooled" lines
commit_ms=$(grep -o 'commit_ms=[0-9]*' "$W/spooldown.log" | cut -d= -f2 | sort -n)
pct() { awk -v p="$1" '{ v[NR] = $1 } END { if (NR) print v[int((NR - 1) * p) + 1]; else print "-" }'; }
C50=$(pct 0.5 <<<"$commit_ms")
C99=$(pct 0.99 <<<"$commit_ms")
NCOMMIT=$(grep -c 'commit_ms=' "$W/spooldown.log" || true)
UPSPOOLED=$(grep -c ' spooled ' "$W/spoolup.log" || true)
ELAPSED=$(($(date +%s) - T_START))

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }
verdict() { if awk "BEGIN { exit !($1) }" 2>/dev/null; then echo met; else echo "**missed**"; fi; }
RES=$ROOT/tests/bench/last-spool-result.md
{
  echo "### Spool benchmark: $(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -r); ${SECS} s per run, median of $ROUNDS runs"
  echo
  echo "Messages per second (higher is better), medians. Same sink for every column;"
  echo "\`spool up\` and \`no spool\` ran back to back in each round, and \`up / no spool\` is"
  echo "the median of the rounds' ratios."
  echo
  echo "| case | no spool | spool, upstream up | spool, upstream down | postfix (e2e) | up / no spool | down / postfix |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for c in $CASES; do
    IFS=: read -r name _ <<<"$c"
    a=$(median <<<"${RUNS[nospool|$name]}")
    b=$(median <<<"${RUNS[spoolup|$name]}")
    d=$(median <<<"${RUNS[spooldown|$name]}")
    p=$(median <<<"${RUNS[postfix|$name]}")
    # spool up against no spool: the median of each round's ratio (the two
    # ran back to back), which the machine's drift disturbs least
    up=$(paste <(tr ' ' '\n' <<<"${RUNS[spoolup|$name]}" | grep -v '^$') \
      <(tr ' ' '\n' <<<"${RUNS[nospool|$name]}" | grep -v '^$') |
      awk '$2 > 0 { printf "%.4f ", $1 / $2 }' | median)
    up=$(awk -v u="$up" 'BEGIN { if (u + 0 > 0) printf "%.2f", u; else print "-" }')
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$a" "$b" "$d" "$p" "$up" \
      "$(ratio "$d" "$p")"
    eval "UP_${name//[^A-Za-z0-9]/_}=$up"
    eval "DOWN_${name//[^A-Za-z0-9]/_}=$(ratio "$d" "$p")"
  done
  echo
  nerr=0
  for k in "${!ERRS[@]}"; do nerr=$((nerr + ERRS[$k])); done
  echo "Errors (non-2xx final replies, broken sessions, failed runs) over all runs: $nerr$(
    for k in "${!ERRS[@]}"; do [ "${ERRS[$k]}" != 0 ] && printf ' %s=%s' "$k" "${ERRS[$k]}"; done)."
  echo
  echo "Commit latency of the spool (fsync of the file, rename, fsync of queue/, shared by the"
  echo "commits of the moment), over $NCOMMIT commits: p50 ${C50} ms, p99 ${C99} ms."
  echo "Messages the \`spool up\` proxy spooled (should be 0): $UPSPOOLED."
  echo
  echo "Targets (issue 13):"
  for c in $CASES; do
    IFS=: read -r name _ <<<"$c"
    v=${name//[^A-Za-z0-9]/_}
    up=$(eval echo "\$UP_$v")
    down=$(eval echo "\$DOWN_$v")
    echo "- $name: spool down ≥ 5× Postfix end to end: ${down}× — $(verdict "\"$down\" ~ /^[0-9.]+$/ && $down >= 5")"
    echo "- $name: spool up within 15% of no spool: ${up}× — $(verdict "\"$up\" ~ /^[0-9.]+$/ && $up >= 0.85")"
  done
  echo "- whole run: ${ELAPSED} s"
  echo
  echo "Notes: the spool and Postfix's queue sit in the same temporary directory, on"
  echo "$(df -T "$W" | awk 'NR == 2 { print $2 }'). Postfix $(postconf -d -h mail_version 2>/dev/null) is measured until the sink had every"
  echo "message; \`spool down\` until each device had its 250 (the message durable in the"
  echo "spool). A commit is two fsyncs (the file, then queue/ after the rename), so one"
  echo "session alone is bound by the disk's fsync latency, and 1 MiB messages by its"
  echo "write bandwidth; concurrent sessions share the directory's fsync."
} >"$RES"
cat "$RES"
