#!/usr/bin/env bash
# run.sh [SECONDS] - build the libFuzzer targets (clang, build-fuzz/) and run
# each for SECONDS (default 30) on a temporary copy of its seed corpus, so
# the repository is never modified. Prints one line per target:
#   fuzz_<target>: execs=N execs_per_s=N cov=N
# and exits non-zero if any target crashed, leaked or timed out; the crash
# input is kept under build-fuzz/artifacts/ and its path printed.
# Env: BUILD_DIR (default <repo>/build-fuzz), TARGETS (default: all),
#      FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build-fuzz}
targets=${TARGETS:-command reply data config sasl address oauth2 session http1 spool mime jwt admin oauthq proxyproto}

# Only the fuzz targets are built (no Criterion suite).
mkdir -p "$build"
CC=clang cmake -S "$root" -B "$build" -DFUZZ=ON -DSTP_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
  >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; echo "run.sh: cmake configure failed" >&2; exit 2; }
cmake --build "$build" --target fuzz -j"$(nproc)" >"$build/build.log" 2>&1 ||
  { tail -40 "$build/build.log"; echo "run.sh: build failed" >&2; exit 2; }

artifacts="$build/artifacts"
mkdir -p "$artifacts"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
for t in $targets; do
  exe="$build/fuzz_$t"
  mkdir -p "$tmp/$t"
  cp -R "$root/tests/fuzz/corpus/$t/." "$tmp/$t/" 2>/dev/null || true
  log="$tmp/$t.log"
  # shellcheck disable=SC2086
  (cd "$tmp" && "$exe" "$tmp/$t" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$artifacts/$t-" ${FUZZ_ARGS:-}) >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  echo "fuzz_$t: execs=${execs:-0} execs_per_s=${eps:-0} cov=${cov:-0}"
  if [ $rc -ne 0 ]; then
    failed=1
    echo "fuzz_$t: FAILED (exit $rc)"
    grep -E 'invariant failed|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$log" |
      head -5 | sed "s/^/  /"
    grep -E 'Test unit written to' "$log" | sed "s/^/  /"
    cp "$log" "$artifacts/$t.log" && echo "  full log: $artifacts/$t.log"
  fi
done
exit $failed
