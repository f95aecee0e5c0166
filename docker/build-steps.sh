#!/usr/bin/env bash
# The steps of docker/Dockerfile, run for real on a Debian 12 host without a
# Docker engine (CI). Same package lists (docker/packages-*.txt), same CMake
# flags and uid (read from the Dockerfile's ARG lines), same HEALTHCHECK
# command (read from the Dockerfile), so the mirror cannot drift.
#
#   build stage   : install packages-build.txt, configure + build, install
#                   into a staging DESTDIR (stripped), run --version
#   runtime stage : install packages-runtime.txt, copy the binary into a
#                   runtime prefix, check that every shared library resolves
#                   and comes from a runtime package (or what those depend
#                   on), never from a build-only package
#   run           : as the unprivileged user smtp-proxy (created with the
#                   image's uid if possible, removed again afterwards):
#                   --version, --check on the container config, start it,
#                   read the SMTP banner, run the HEALTHCHECK command, SIGTERM
#                   and expect exit 0
#
# Usage: bash docker/build-steps.sh        (as root to install packages and
#        create the user; as another user it uses what is installed and runs
#        as itself). Set STP_REQUIRE_HEALTHZ=1 to fail when the proxy does not
#        answer /healthz (the metrics endpoint); by default that is a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKERFILE=docker/Dockerfile

step() { printf '\n==== %s ====\n' "$*"; }
die() { echo "build-steps: FAIL: $*" >&2; exit 1; }

pkgs() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1"; }
arg_default() { # ARG NAME="value" or ARG NAME=value from the Dockerfile
  sed -nE "s/^ARG $1=\"?([^\"]*)\"?$/\1/p" "$DOCKERFILE" | head -1
}
mapfile -t BUILD_PKGS < <(pkgs docker/packages-build.txt)
mapfile -t RUNTIME_PKGS < <(pkgs docker/packages-runtime.txt)
CMAKE_FLAGS=$(arg_default STP_CMAKE_FLAGS)
STP_UID=$(arg_default STP_UID)
HEALTH_CMD=$(sed -n 's/^HEALTHCHECK .* CMD //p' "$DOCKERFILE")
[ ${#BUILD_PKGS[@]} -gt 0 ] && [ ${#RUNTIME_PKGS[@]} -gt 0 ] || die "empty package list"
[ -n "$CMAKE_FLAGS" ] && [ -n "$STP_UID" ] && [ -n "$HEALTH_CMD" ] || die "could not read ARGs/HEALTHCHECK from $DOCKERFILE"

install_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { echo "all installed: $*"; return 0; }
  [ "$(id -u)" -eq 0 ] || die "missing packages and not root: ${missing[*]}"
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

STAGE=$(mktemp -d /tmp/stp-docker-steps.XXXXXX)
chmod 0755 "$STAGE"
PROXY_PID=""
STUB_PID=""
CREATED_USER=""
cleanup() {
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
  [ -n "$STUB_PID" ] && kill "$STUB_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$CREATED_USER" ] && { userdel smtp-proxy 2>/dev/null || true; groupdel smtp-proxy 2>/dev/null || true; }
  rm -rf "$STAGE"
}
trap cleanup EXIT

# --- build stage ---------------------------------------------------------------
step "build stage: packages (docker/packages-build.txt)"
install_pkgs "${BUILD_PKGS[@]}"

step "build stage: cmake $CMAKE_FLAGS"
# The Dockerfile copies only CMakeLists.txt, include/ and proxy/: do the same,
# so a build that silently needs anything else fails here too.
mkdir -p "$STAGE/src"
cp -a CMakeLists.txt include proxy "$STAGE/src/"
# shellcheck disable=SC2086  # word splitting of the flags is intended
cmake -S "$STAGE/src" -B "$STAGE/build" $CMAKE_FLAGS >"$STAGE/cmake.log" 2>&1 ||
  { cat "$STAGE/cmake.log"; die "cmake configure"; }
cmake --build "$STAGE/build" -j"$(nproc)" --target smtp-tls-proxy >"$STAGE/build.log" 2>&1 ||
  { cat "$STAGE/build.log"; die "build"; }
grep -E 'warning:' "$STAGE/build.log" || echo "no compiler warnings"
DESTDIR="$STAGE/staging" cmake --install "$STAGE/build" --prefix /usr/local --strip >/dev/null
"$STAGE/staging/usr/local/bin/smtp-tls-proxy" --version

# --- runtime stage -------------------------------------------------------------
step "runtime stage: packages (docker/packages-runtime.txt)"
install_pkgs "${RUNTIME_PKGS[@]}"
RT="$STAGE/runtime"
install -D -m 0755 "$STAGE/staging/usr/local/bin/smtp-tls-proxy" "$RT/usr/local/bin/smtp-tls-proxy"
BIN="$RT/usr/local/bin/smtp-tls-proxy"
install -d -m 0755 "$RT/etc/smtp-tls-proxy"
install -m 0644 config/examples/docker.yaml "$RT/etc/smtp-tls-proxy/proxy.yaml"
# The password file a container gets at /run/secrets (compose secret or a
# read-only bind mount), staged under the runtime prefix.
SECRET="$RT/run/secrets/smarthost_password"
install -D -m 0600 /dev/null "$SECRET"
printf 'dummy\n' >"$SECRET"
sed -i "s|/run/secrets/smarthost_password|$SECRET|" "$RT/etc/smtp-tls-proxy/proxy.yaml"

step "runtime stage: shared libraries"
ldd "$BIN" | tee "$STAGE/ldd.txt"
if grep -q 'not found' "$STAGE/ldd.txt"; then die "unresolved shared library"; fi
# Packages a runtime image would hold: the runtime list and its Depends closure.
mapfile -t CLOSURE < <(apt-cache depends --recurse --installed --no-recommends --no-suggests \
  --no-conflicts --no-breaks --no-replaces --no-enhances "${RUNTIME_PKGS[@]}" 2>/dev/null |
  sed -n 's/^\([a-z0-9][^ <>]*\)$/\1/p' | sed 's/:.*//' | sort -u)
owner_of() { # the package owning a library path (usrmerge: try both spellings)
  local p=$1 r c
  r=$(readlink -f "$p")
  for c in "$p" "$r" "${p#/usr}" "${r#/usr}" "/usr$p" "/usr$r"; do
    dpkg -S "$c" 2>/dev/null | head -1 | cut -d: -f1 && return 0
  done
  return 1
}
bad=0
while read -r lib; do
  pkg=$(owner_of "$lib") || { echo "  $lib: owned by no package"; bad=1; continue; }
  if printf '%s\n' "${CLOSURE[@]}" | grep -qx "$pkg"; then
    printf '  %-55s %s\n' "$lib" "$pkg"
  else
    echo "  $lib: from $pkg, which is not a runtime package"; bad=1
  fi
done < <(awk '/=>/ { print $3 } /^[[:space:]]*\/.*\(0x/ { print $1 }' "$STAGE/ldd.txt")
[ "$bad" -eq 0 ] || die "a library comes from outside docker/packages-runtime.txt"
echo "every library comes from the runtime packages or their dependencies"

# --- run as the unprivileged user ----------------------------------------------
step "run as a non-root user"
if [ "$(id -u)" -ne 0 ]; then
  AS=()
  echo "not root: running as $(id -un)"
else
  if ! id smtp-proxy >/dev/null 2>&1; then
    if command -v useradd >/dev/null && ! getent passwd "$STP_UID" >/dev/null &&
       ! getent group "$STP_UID" >/dev/null; then
      groupadd --system --gid "$STP_UID" smtp-proxy
      useradd --system --uid "$STP_UID" --gid smtp-proxy --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin smtp-proxy
      CREATED_USER=1
      echo "created user smtp-proxy (uid $STP_UID), removed again at the end"
    elif command -v useradd >/dev/null; then
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin smtp-proxy
      CREATED_USER=1
      echo "created user smtp-proxy (uid $STP_UID taken here: $(id -u smtp-proxy))"
    fi
  fi
  id smtp-proxy >/dev/null 2>&1 || die "could not create the user smtp-proxy"
  # setpriv execs the program itself (runuser would stay in between and turn
  # SIGTERM into its own exit status 143).
  AS=(setpriv --reuid=smtp-proxy --regid=smtp-proxy --init-groups --)
fi
"${AS[@]}" id
[ "$("${AS[@]}" id -u)" -ne 0 ] || die "still root"
# The secret is the container user's, as the compose header says (chown 10025).
[ "$(id -u)" -ne 0 ] || chown smtp-proxy "$SECRET" "$(dirname "$SECRET")"
"${AS[@]}" "$BIN" --version
# The container config, as the Dockerfile expects it mounted, with its secret
# from the mounted file (password_file: /run/secrets/smarthost_password).
"${AS[@]}" "$BIN" -c "$RT/etc/smtp-tls-proxy/proxy.yaml" --check

# Every shipped preset, with the staged binary.
bash tests/tools/check_presets.sh "$BIN"

# The HEALTHCHECK command must fail when nothing answers, and pass on a 200.
step "HEALTHCHECK command from the Dockerfile"
echo "$HEALTH_CMD"
port_busy() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
HEALTH_LIVE=1
if port_busy 9587; then
  echo "port 9587 is in use on this host: HEALTHCHECK tests skipped"
  HEALTH_LIVE=0
else
  if sh -c "$HEALTH_CMD" 2>/dev/null; then die "HEALTHCHECK passed with nothing listening"; fi
  echo "ok: fails with nothing listening"
  if command -v python3 >/dev/null; then
    python3 - <<'PY' >"$STAGE/stub.out" 2>&1 &
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/healthz" else 404
        self.send_response(code); self.end_headers(); self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", 9587), H).serve_forever()
PY
    STUB_PID=$!
    for _ in $(seq 50); do port_busy 9587 && break; sleep 0.1; done
    sh -c "$HEALTH_CMD" || die "HEALTHCHECK failed against a stub answering 200"
    echo "ok: passes against a stub answering 200 on /healthz"
    kill "$STUB_PID"; wait "$STUB_PID" 2>/dev/null || true; STUB_PID=""
    for _ in $(seq 50); do port_busy 9587 || break; sleep 0.1; done
  fi
fi

step "compose.yaml and k8s.yaml"
# YAML syntax, and the compose healthcheck is the Dockerfile's command.
if /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  HEALTH_CMD="$HEALTH_CMD" /usr/bin/python3 - <<'PY' || die "compose.yaml / k8s.yaml"
import os, re, sys, yaml
c = yaml.safe_load(open("docker/compose.yaml"))
svc = c["services"]["smtp-tls-proxy"]
test = svc["healthcheck"]["test"]
m = re.fullmatch(r"bash -c '(.*)'", os.environ["HEALTH_CMD"])
# CMD-SHELL with the Dockerfile's own "bash -c '...'": /dev/tcp needs bash,
# and podman-compose runs the list form without a shell (issue 21).
assert m and test == ["CMD-SHELL", os.environ["HEALTH_CMD"]], "compose healthcheck differs from the Dockerfile's"
assert "25:2525" in svc["ports"], "compose: no 25:2525 mapping"
# The long env_file form ({path:, required:}) needs Compose >= 2.24.
envf = svc.get("env_file", [])
assert all(isinstance(e, str) for e in ([envf] if isinstance(envf, str) else envf)), \
    "compose: env_file must use the short form (the long one needs Compose 2.24)"
assert "smarthost_password" in svc["secrets"], "compose: the password comes from a secret"
print("compose.yaml: healthcheck = CMD-SHELL + the Dockerfile's HEALTHCHECK, ports", svc["ports"])
PY
/usr/bin/python3 tests/tools/check_k8s.py docker/k8s.yaml || die "k8s.yaml"
else
  echo "python3-yaml not installed: YAML syntax of compose.yaml/k8s.yaml not checked"
fi

step "secrets stay out of git and out of the image"
# compose.yaml's header makes docker/proxy.env, docker/proxy.yaml and
# docker/secrets/ next to it; the build context is the repository root.
for f in docker/proxy.env docker/proxy.yaml docker/secrets/smarthost_password; do
  if command -v git >/dev/null && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git check-ignore -q --no-index "$f" || die "$f is not git-ignored"
  fi
  /usr/bin/python3 - "$f" <<'PY' || die "$f is not docker-ignored"
import fnmatch, sys
path = sys.argv[1]
pats = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
# Docker's rule: a pattern matches the path or one of its parent directories.
parts = path.split("/")
cands = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
ok = any(fnmatch.fnmatch(c, p.rstrip("/")) for p in pats for c in cands)
sys.exit(0 if ok else 1)
PY
  echo "ignored by git and docker: $f"
done

step "start the proxy, banner, /healthz, SIGTERM"
# As in the container, except the LAN port (the kernel's choice, not 2525)
# and loopback added to `allow` (in Docker, clients never come from it).
sed -e 's/listen: ":2525"/listen: "127.0.0.1:0"/' -e 's/allow: \[/allow: ["127.0.0.0\/8", /' \
  "$RT/etc/smtp-tls-proxy/proxy.yaml" >"$STAGE/run.yaml"
grep -q '"127.0.0.1:0"' "$STAGE/run.yaml" && grep -q '"127.0.0.0/8"' "$STAGE/run.yaml" ||
  die "could not adapt config/examples/docker.yaml for the test run"
chmod 0644 "$STAGE/run.yaml"
: >"$STAGE/proxy.log"
"${AS[@]}" "$BIN" -c "$STAGE/run.yaml" 2>>"$STAGE/proxy.log" &
PROXY_PID=$!
LAN=""
for _ in $(seq 50); do
  LAN=$(grep '"listener":"lan"' "$STAGE/proxy.log" | grep -o '"addr":"127.0.0.1:[0-9]*"' | head -1 | cut -d'"' -f4 || true)
  [ -n "$LAN" ] && break
  sleep 0.1
done
[ -n "$LAN" ] || { cat "$STAGE/proxy.log"; die "the proxy did not start"; }
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$PROXY_PID/status")
[ "$uid" -ne 0 ] || die "the proxy runs as root"
echo "listening on $LAN, process uid $uid"
exec 4<>"/dev/tcp/${LAN%:*}/${LAN##*:}"
read -r -t 5 banner <&4 || true
printf 'QUIT\r\n' >&4
exec 4<&- 4>&-
case "$banner" in 220*) echo "banner: $banner" ;; *) die "no 220 banner (got: '$banner')" ;; esac
if [ "$HEALTH_LIVE" -eq 1 ]; then
  sleep 0.2
  if sh -c "$HEALTH_CMD"; then
    echo "ok: HEALTHCHECK passes against the proxy's own /healthz"
  elif [ "${STP_REQUIRE_HEALTHZ:-0}" = 1 ]; then
    die "HEALTHCHECK failed against the proxy (metrics: 127.0.0.1:9587)"
  else
    echo "WARNING: the proxy does not answer /healthz on 127.0.0.1:9587 (metrics endpoint not in this build?)"
  fi
fi
kill -TERM "$PROXY_PID"
rc=0
wait "$PROXY_PID" || rc=$?
PROXY_PID=""
[ "$rc" -eq 0 ] || { cat "$STAGE/proxy.log"; die "exit status $rc after SIGTERM"; }
echo "exit 0 after SIGTERM"

step "build-steps: OK"
echo "(the image itself was not built: no Docker engine; these are its steps)"
