#!/usr/bin/env bash
# The project's one test command (README: "bash scripts/test.sh"); `.ci/run` runs exactly this.
#
# On a fresh machine of this kind it first provides what the tests need, then runs them:
#   1. Debian packages (one `apt-get update` only when one is missing): chromium (the browser
#      suite), coturn (turnutils_* for the TURN interop tests), prometheus and docker-compose
#      (the cluster tests), iproute2 (`ip netns` and `tc` for the shaped-link browser test), and
#      redis-server when none is on PATH. Packaged services are kept
#      from starting on install, and no packaged turnserver is left holding port 3478;
#   2. PostgreSQL at 127.0.0.1:5432 (started when down; database `test` created when missing)
#      and Redis at 127.0.0.1:6379 (started when down);
#   3. Node.js 20+ with npm (required: the script fails when it is missing) and the npm modules
#      of tests/ (`npm ci`, only when package-lock.json changed since the last install).
# It prints one line per thing it installs or starts, and nothing when all is present.
#
# Then it runs every test, and exits non-zero on the first failing stage:
#   a. Rust: unit tests and end-to-end suites of every crate;
#   b. tests/node: the official socket.io-client 4.x against the real binary;
#   c. tests/browser: headless Chromium (Debian's) driving the demo page;
#   d. fuzzing: every cargo-fuzz target for 30 s from its committed seed corpus
#      (scripts/fuzz.sh 30, docs/fuzzing.md); it needs the nightly toolchain.
#
# Under CI=true a test whose tool is missing fails instead of skipping.
#
# `bash scripts/test.sh --setup-only` stops after step 3 (what other scripts can reuse).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test.sh: $*"; }
die() {
  echo "test.sh: $*" >&2
  exit 1
}

# Runs a command as root (sudo when not root); only installing and starting need it.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "needs root (or sudo): $*"
  fi
}

# --- 1. Debian packages ---------------------------------------------------------------------

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

missing=()
for package in chromium coturn prometheus docker-compose iproute2; do
  installed "$package" || missing+=("$package")
done
command -v redis-server >/dev/null || missing+=(redis-server)

if [ "${#missing[@]}" -gt 0 ]; then
  for package in "${missing[@]}"; do say "installing $package (Debian package)"; done
  as_root apt-get update -qq
  # A policy-rc.d that refuses every start keeps the packages' own daemons (coturn on 3478,
  # prometheus on 9090, redis) from starting: the tests start what they need themselves.
  policy=/usr/sbin/policy-rc.d
  own_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    own_policy=yes
  fi
  status=0
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  [ "$own_policy" = yes ] && as_root rm -f "$policy"
  [ "$status" = 0 ] || die "apt-get install ${missing[*]} failed (exit $status)"
fi

# A turnserver the coturn package started (its service, or its init script with the packaged
# /etc/turnserver.conf) would hold 3478. Turnservers started with other arguments (benchmarks,
# tests) are left alone.
if [ -d /run/systemd/system ] && systemctl is-active --quiet coturn 2>/dev/null; then
  say "stopping the coturn service (it holds port 3478)"
  as_root systemctl stop coturn
fi
for pid in $(pgrep -x turnserver || true); do
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '-c /etc/turnserver.conf'; then
    say "stopping the packaged turnserver (pid $pid, port 3478)"
    as_root kill "$pid"
  fi
done

# --- 2. PostgreSQL and Redis ----------------------------------------------------------------

if [ -z "${CHORUS_TEST_POSTGRES_URL:-}" ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    [ -d /etc/postgresql ] || die "PostgreSQL is not installed (the Rust suites need it at 127.0.0.1:5432)"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version at 127.0.0.1:5432"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL did not come up at 127.0.0.1:5432"
  fi
  if [ -z "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]; then
    say "creating PostgreSQL database test"
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' >/dev/null
  fi
fi

redis_up() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]
  else
    # No client (a redis-server built by hand): speak RESP over bash's /dev/tcp.
    (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 &&
      [[ $reply == +PONG* ]]) 2>/dev/null
  fi
}
if ! redis_up; then
  say "starting Redis at 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  redis_up || die "Redis did not come up at 127.0.0.1:6379"
fi

# --- 3. Node.js and the npm modules ---------------------------------------------------------

command -v node >/dev/null && command -v npm >/dev/null ||
  die "Node.js 20 and npm are required (tests/node, tests/browser); install Node.js 20"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js 20 or later is required; found $(node --version)"

# npm keeps a copy of the lockfile it installed in node_modules/.package-lock.json; when that is
# newer than package.json and package-lock.json, the modules are those the lockfile names.
# An install cut short can leave the stamp beside half-unpacked packages, so every direct
# dependency must also resolve.
stamp=tests/node_modules/.package-lock.json
modules_resolve() {
  (cd tests && node -e '
    const deps = Object.keys({...require("./package.json").dependencies, ...require("./package.json").devDependencies});
    for (const d of deps) require.resolve(d + "/package.json");' 2>/dev/null)
}
if [ ! -f "$stamp" ] || [ tests/package-lock.json -nt "$stamp" ] || [ tests/package.json -nt "$stamp" ] ||
  ! modules_resolve; then
  say "installing npm modules (npm ci in tests/)"
  (cd tests && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

[ "${1:-}" = --setup-only ] && exit 0

# --- the tests ------------------------------------------------------------------------------

echo "== cargo test (workspace)"
cargo test --workspace --all-targets

echo "== JavaScript clients (socket.io-client, headless Chromium)"
# `cargo test` built target/debug/chorus for the integration tests; a separate `cargo build`
# would recompile crates whose features differ without dev-dependencies.
[ -x target/debug/chorus ] || cargo build --bin chorus
(
  cd tests
  CHORUS_BIN="$PWD/../target/debug/chorus" npm test
)

echo "== fuzzing (scripts/fuzz.sh 30: each cargo-fuzz target for 30 s from its seeds)"
if cargo +nightly --version >/dev/null 2>&1; then
  bash scripts/fuzz.sh 30
elif [ "${CI:-}" = true ]; then
  die "the fuzzing stage needs the nightly toolchain (rustup toolchain install nightly); under CI=true it is not skipped"
else
  say "SKIPPED the fuzzing stage: no nightly toolchain (rustup toolchain install nightly); under CI=true this fails"
fi
