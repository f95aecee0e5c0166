#!/usr/bin/env bash
# tests/bench/replicas.sh - throughput with one and with three replicas of
# the proxy behind HAProxy (issue 21), in one command, from a clone:
#
#   bash tests/bench/replicas.sh
#
# Against the same upstream (tests/bench/sink: STARTTLS, any AUTH, discards):
#   direct       loadgen -> one proxy, no balancer: the reference
#   1 replica    loadgen -> haproxy (send-proxy-v2) -> one proxy
#   3 replicas   loadgen -> haproxy (send-proxy-v2, roundrobin) -> three proxies
# Each proxy lists 127.0.0.1 in proxy_protocol, so every connection through
# HAProxy carries a v2 header that the proxy reads before its greeting.
# Cases: 10 KiB x 20 sessions (lock-step, like devices) and 10 KiB with a
# session per message (how printers send: connection set-up dominates).
# The machine is shared and noisy: the three setups run in turn,
# BENCH_ROUNDS times (default 3), and the medians are compared. Not a timed
# assertion: the table (msg/s, p50, p99, ratio 3/1) goes to stdout and to
# tests/bench/last-replicas-result.md.
#
# Everything runs on 127.0.0.1 on free ports from a private temporary
# directory and is stopped on exit. Needs haproxy (apt-get install haproxy)
# and the bench build (made here in build-bench/ if missing). Env:
# BENCH_SECONDS (default 4), BENCH_ROUNDS, BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-3}

# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
command -v haproxy >/dev/null || die "haproxy is not installed (apt-get install haproxy)"

bench_build

W=$(mktemp -d /tmp/stp-replicas-bench.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # haproxy cannot bind port 0: one the kernel just gave out
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() { # FILE PATTERN
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

bash tests/tools/gen_certs.sh "$W/pki" >/dev/null 2>&1
CA=$W/pki/ca.crt
export BENCH_UPSTREAM_PASSWORD=bench-upstream-secret
"$SINK" --cert "$W/pki/server.crt" --key "$W/pki/server.key" >"$W/sink.out" 2>"$W/sink.err" &
PIDS+=($!)
SINK_PID=$!
wait_for "$W/sink.out" READY || die "sink did not start: $(cat "$W/sink.err")"
SINK_PORT=$(sed -n 's/.*starttls=\([0-9]*\).*/\1/p' "$W/sink.out")

PORTS=()
declare -A R_PID HAP_PID
for i in 1 2 3; do
  cat >"$W/r$i.yaml" <<EOF
hostname: replica$i.bench.lan
log: { level: info, format: text }
shutdown_grace: 2s
listeners:
  - name: lan
    listen: "127.0.0.1:0"
    allow: ["127.0.0.0/8"]
    proxy_protocol: ["127.0.0.1/32"]
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
  "$PROXY" -c "$W/r$i.yaml" 2>"$W/r$i.log" &
  PIDS+=($!)
  R_PID[$i]=$!
  wait_for "$W/r$i.log" "listening" || true
  for _ in $(seq 50); do
    port=$(grep -o 'addr=127.0.0.1:[0-9]*' "$W/r$i.log" | head -1 | cut -d: -f2)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || die "replica $i did not start: $(cat "$W/r$i.log")"
  PORTS+=("$port")
done
# A direct reference needs no header: a fourth proxy without proxy_protocol.
sed -e '/proxy_protocol/d' -e 's/replica1/direct/' "$W/r1.yaml" >"$W/direct.yaml"
"$PROXY" -c "$W/direct.yaml" 2>"$W/direct.log" &
PIDS+=($!)
DIRECT_PID=$!

hap() { # NAME BACKEND_PORTS...: HAP_PORT[NAME]; retried if the port was taken meanwhile
  local name=$1 port
  shift
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    hap_once "$name" "$port" "$@" && { HAP_PORT[$name]=$port; return 0; }
  done
  die "haproxy $name did not start: $(cat "$W/$name.log")"
}
hap_once() { # NAME PORT BACKEND_PORTS...
  local name=$1 port=$2
  shift 2
  {
    printf 'global\n  maxconn 4000\n'
    printf 'defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n'
    printf 'frontend f\n  bind 127.0.0.1:%s\n  default_backend b\n' "$port"
    printf 'backend b\n  balance roundrobin\n'
    local i=0
    for p in "$@"; do
      i=$((i + 1))
      printf '  server r%d 127.0.0.1:%s send-proxy-v2\n' "$i" "$p"
    done
  } >"$W/$name.cfg"
  haproxy -db -f "$W/$name.cfg" >"$W/$name.log" 2>&1 &
  PIDS+=($!)
  HAP_PID[$name]=$!
  for _ in $(seq 50); do
    kill -0 "${HAP_PID[$name]}" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
declare -A HAP_PORT
hap one "${PORTS[0]}"
hap three "${PORTS[@]}"
H1=${HAP_PORT[one]}
H3=${HAP_PORT[three]}
wait_for "$W/direct.log" "listening" || true
DIRECT=$(grep -o 'addr=127.0.0.1:[0-9]*' "$W/direct.log" | head -1 | cut -d: -f2)
[ -n "$DIRECT" ] || die "direct proxy did not start: $(cat "$W/direct.log")"

# What bounds it: CPU seconds each part spends per 1000 messages, from
# /proc/PID/stat (utime + stime) before and after a run; loadgen's own from
# bash's `time`; and how busy the whole machine was (/proc/stat), since the
# cores are shared with everything else running.
HZ=$(getconf CLK_TCK)
ticks() { # PID...: their utime + stime, in clock ticks
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
machine() { awk '/^cpu / {print $2 + $3 + $4 + $6 + $7 + $8, $5}' /proc/stat; } # busy idle
run() { # LABEL PORT ARGS...: a RESULT line with cpu_* fields added
  local label=$1 port=$2 prox bal
  shift 2
  case $label in
  direct) prox="$DIRECT_PID" bal="" ;;
  one) prox="${R_PID[1]}" bal="${HAP_PID[one]}" ;;
  three) prox="${R_PID[1]} ${R_PID[2]} ${R_PID[3]}" bal="${HAP_PID[three]}" ;;
  esac
  # shellcheck disable=SC2086
  local p0 b0 s0 m0 line
  p0=$(ticks $prox) b0=$(ticks $bal) s0=$(ticks "$SINK_PID") m0=$(machine)
  TIMEFORMAT='%3U %3S'
  { time "$LOADGEN" --port "$port" --mode plain --size 10k --duration "$SECS" --timeout 30 \
    --label "$label" "$@" 2>>"$W/loadgen.err" >"$W/run.out"; } 2>"$W/run.time"
  line=$(grep '^RESULT' "$W/run.out") || line="RESULT label=$label msg_per_s=0 msgs=0 errors=run-failed"
  # shellcheck disable=SC2086
  local p1 b1 s1 m1
  p1=$(ticks $prox) b1=$(ticks $bal) s1=$(ticks "$SINK_PID") m1=$(machine)
  awk -v line="$line" -v hz="$HZ" -v p="$((p1 - p0))" -v b="$((b1 - b0))" -v s="$((s1 - s0))" \
    -v lg="$(cat "$W/run.time")" -v m0="$m0" -v m1="$m1" 'BEGIN {
      match(line, / msgs=[0-9]+/); n = substr(line, RSTART + 6, RLENGTH - 6) + 0
      split(lg, t, " "); split(m0, a, " "); split(m1, z, " ")
      k = n > 0 ? 1000 / n : 0
      busy = (z[1] - a[1]) / ((z[1] - a[1]) + (z[2] - a[2]) + 1e-9) * 100
      printf "%s cpu_proxy=%.3f cpu_haproxy=%.3f cpu_sink=%.3f cpu_loadgen=%.3f machine_busy=%.0f\n",
        line, p / hz * k, b / hz * k, s / hz * k, (t[1] + t[2]) * k, busy }'
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }

declare -A RATE P50 P99 ERR CPU
cases=("20 sessions:--sessions 20 --messages 1000000" "session per message:--sessions 20 --messages 1 --connections 1000000")
for c in "${cases[@]}"; do
  cname=${c%%:*}
  cargs=${c#*:}
  for r in $(seq "$ROUNDS"); do
    for setup in direct one three; do
      case $setup in direct) port=$DIRECT ;; one) port=$H1 ;; three) port=$H3 ;; esac
      # shellcheck disable=SC2086
      line=$(run "$setup" "$port" $cargs)
      say "$cname round $r $setup: $(echo "$line" | field msg_per_s) msg/s"
      echo "$line" >>"$W/$setup-$cname.results"
    done
  done
  for setup in direct one three; do
    f="$W/$setup-$cname.results"
    RATE[$setup,$cname]=$(field msg_per_s <"$f" | median)
    P50[$setup,$cname]=$(field p50_ms <"$f" | median)
    P99[$setup,$cname]=$(field p99_ms <"$f" | median)
    ERR[$setup,$cname]=$(field errors <"$f" | paste -sd+ | bc 2>/dev/null || echo "?")
    CPU[$setup,$cname]="$(field cpu_proxy <"$f" | median) / $(field cpu_haproxy <"$f" | median) / $(field cpu_sink <"$f" | median) / $(field cpu_loadgen <"$f" | median) | $(field machine_busy <"$f" | median)%"
  done
done

OUT=$ROOT/tests/bench/last-replicas-result.md
{
  echo "# Replicas behind HAProxy ($(date -u +%Y-%m-%d), $(nproc) cores, ${SECS}s x $ROUNDS rounds, medians)"
  echo
  echo "10 KiB messages, plain SMTP from loadgen; each proxy relays with STARTTLS + AUTH to the sink."
  echo
  echo "| case | direct msg/s | 1 replica msg/s (p50/p99 ms) | 3 replicas msg/s (p50/p99 ms) | 3 / 1 | errors |"
  echo "|---|---|---|---|---|---|"
  for c in "${cases[@]}"; do
    cname=${c%%:*}
    ratio=$(awk -v a="${RATE[three,$cname]}" -v b="${RATE[one,$cname]}" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}')
    printf '| %s | %s | %s (%s/%s) | %s (%s/%s) | %s | %s / %s / %s |\n' "$cname" \
      "${RATE[direct,$cname]}" "${RATE[one,$cname]}" "${P50[one,$cname]}" "${P99[one,$cname]}" \
      "${RATE[three,$cname]}" "${P50[three,$cname]}" "${P99[three,$cname]}" "$ratio" \
      "${ERR[direct,$cname]}" "${ERR[one,$cname]}" "${ERR[three,$cname]}"
  done
  echo
  echo "CPU seconds per 1000 messages (proxies / haproxy / sink / loadgen) and how busy both cores were:"
  echo
  echo "| case | setup | proxies / haproxy / sink / loadgen | machine busy |"
  echo "|---|---|---|---|"
  for c in "${cases[@]}"; do
    cname=${c%%:*}
    for setup in direct one three; do
      printf '| %s | %s | %s |\n' "$cname" "$setup" "${CPU[$setup,$cname]}"
    done
  done
} | tee "$OUT"
