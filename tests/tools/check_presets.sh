#!/usr/bin/env bash
# Validate every shipped configuration with the real binary:
#   smtp-tls-proxy -c FILE --check
# for config/examples/*.yaml and the proxy.yaml embedded in docker/k8s.yaml.
#
# Usage: tests/tools/check_presets.sh [PATH/TO/smtp-tls-proxy]
#   (default: $STP_BIN, else the first of build-ci/, build/, build-deploy/)
#
# What a preset references is supplied here, never taken from the machine:
#   - every `password_env: NAME` gets a dummy value in the environment;
#   - every absolute `token_file:` / `password_file:` that does not exist
#     (e.g. /var/lib/smtp-tls-proxy/m365-access-token) is created as a dummy
#     file in a temporary directory, and the preset is checked as a copy
#     pointing at it (errors are reported against the copy's line numbers,
#     which are the same as the original's).
# On top of --check, each preset must: print no warning (so no inline
# `password:`), never allow 0.0.0.0/0 or ::/0, and start with a comment block.
# A negative control first proves that --check does reject a broken file.
# Exits non-zero if anything fails.
set -uo pipefail
BIN=${1:-${STP_BIN:-}}
[ -n "$BIN" ] && [ -e "$BIN" ] && BIN=$(realpath "$BIN")   # before the cd below
cd "$(dirname "$0")/../.." || exit 2

if [ -z "$BIN" ]; then
  for b in build-ci/smtp-tls-proxy build/smtp-tls-proxy build-deploy/smtp-tls-proxy; do
    [ -x "$b" ] && { BIN=$b; break; }
  done
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "check_presets: smtp-tls-proxy binary not found (pass it as \$1)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/stp-presets.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
checked=0

# check_one LABEL FILE
check_one() {
  local label=$1 f=$2 target=$2 out rc env=()
  local -a vars
  mapfile -t vars < <(sed -nE 's/^[^#]*(password_env|client_secret_env):[[:space:]]*"?([A-Za-z_][A-Za-z0-9_]*)"?.*/\2/p' "$f" | sort -u)
  for v in "${vars[@]}"; do env+=("$v=dummy-secret-for-check"); done

  # Absolute secret files that do not exist here: point a copy at dummies.
  local -a files
  mapfile -t files < <(sed -nE 's/^[^#]*(token_file|password_file|refresh_token_file|client_secret_file):[[:space:]]*"?(\/[^" #]+)"?.*/\2/p' "$f" | sort -u)
  local copy="" i=0 p dummy
  for p in "${files[@]}"; do
    [ -e "$p" ] && continue
    if [ -z "$copy" ]; then
      copy="$TMP/$(basename "$f")"
      cp "$f" "$copy"
    fi
    i=$((i + 1))
    dummy="$TMP/secret-$i"
    printf 'dummy-token-for-check\n' >"$dummy"
    chmod 600 "$dummy"
    # '|' cannot occur in the paths matched above.
    sed -i "s|$p|$dummy|g" "$copy"
  done
  [ -n "$copy" ] && target=$copy

  out=$(env "${env[@]}" "$BIN" -c "$target" --check 2>&1)
  rc=$?
  checked=$((checked + 1))
  local bad=""
  [ "$rc" -eq 0 ] || bad="--check exited $rc"
  if [ -z "$bad" ] && grep -q 'warning:' <<<"$out"; then bad="--check printed a warning"; fi
  if [ -z "$bad" ] && grep -qE '^[^#]*"(0\.0\.0\.0/0|::/0)"' "$f"; then bad="allows the whole Internet"; fi
  if [ -z "$bad" ] && [ "$(head -c1 "$f")" != "#" ]; then bad="does not start with a comment block"; fi
  if [ -n "$bad" ]; then
    printf 'FAIL %s: %s\n' "$label" "$bad"
    sed 's/^/     /' <<<"$out"
    fails=$((fails + 1))
  else
    printf 'ok   %s%s\n' "$label" "${copy:+ (secret files replaced by dummies)}"
  fi
}

# Negative control: a preset with an unknown key must be refused.
first=$(find config/examples -maxdepth 1 -name '*.yaml' | sort | head -1)
[ -n "$first" ] || { echo "check_presets: no config/examples/*.yaml" >&2; exit 1; }
printf 'no_such_key: 1\n' >"$TMP/broken.yaml"
cat "$first" >>"$TMP/broken.yaml"
if "$BIN" -c "$TMP/broken.yaml" --check >/dev/null 2>&1; then
  echo "FAIL negative control: --check accepted a file with an unknown key"
  fails=$((fails + 1))
else
  echo "ok   negative control (--check rejects an unknown key)"
fi

for f in config/examples/*.yaml; do
  check_one "$f" "$f"
done

# The ConfigMap's proxy.yaml in docker/k8s.yaml: the block scalar under
# "proxy.yaml: |", de-indented.
if [ -f docker/k8s.yaml ]; then
  awk '
    /^[[:space:]]*proxy\.yaml:[[:space:]]*\|/ { match($0, /^[[:space:]]*/); ind = RLENGTH; on = 1; next }
    on {
      if ($0 ~ /^[[:space:]]*$/) { print ""; next }
      match($0, /^[[:space:]]*/)
      if (RLENGTH <= ind) { on = 0; next }
      if (!body) { cut = RLENGTH; body = 1 }
      print substr($0, cut + 1)
    }' docker/k8s.yaml >"$TMP/k8s-proxy.yaml"
  if [ -s "$TMP/k8s-proxy.yaml" ]; then
    check_one "docker/k8s.yaml (ConfigMap proxy.yaml)" "$TMP/k8s-proxy.yaml"
  else
    echo "FAIL docker/k8s.yaml: no 'proxy.yaml: |' block found"
    fails=$((fails + 1))
  fi
fi

echo "check_presets: $checked checked, $fails failed"
[ "$fails" -eq 0 ]
