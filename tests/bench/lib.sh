# tests/bench/lib.sh - what the bench scripts share (run.sh, spool.sh,
# replicas.sh): their log and error lines and the Release build of the
# proxy and the bench tools. Sourced (after `cd` to the repository and
# ROOT=$PWD), never run.

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# Build (Release) in $ROOT/build-bench; sets BUILD, PROXY, LOADGEN and SINK.
bench_build() {
  say "building (Release) in build-bench/"
  BUILD=$ROOT/build-bench
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSTP_BENCH=ON -DSTP_TESTS=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target smtp-tls-proxy bench_tools >/dev/null
  PROXY=$BUILD/smtp-tls-proxy
  LOADGEN=$BUILD/tests/bench/loadgen
  SINK=$BUILD/tests/bench/sink
}
