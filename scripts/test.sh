#!/usr/bin/env bash
# Runs every test of the project:
#  1. a real Keystone on loopback (scripts/keystone.sh: PyPI `keystone`, SQLite, fernet) for the
#     Keystone-mode tests, a real one-node Ceph (scripts/ceph.sh: Debian's Ceph, radosgw as
#     the S3 and a Swift-API server, an RBD pool) and OpenStack Swift (scripts/swift.sh:
#     Debian's Swift, tempauth and keystoneauth) and VMware's vCenter simulator
#     (scripts/vcsim.sh: govmomi's vcsim built from Debian's source) and a real Cinder
#     (scripts/cinder.sh: PyPI `cinder` with its RBD driver on that Ceph, RabbitMQ, MariaDB
#     and the Keystone) for the store tests (each skipped with a warning when it cannot be
#     started, unless VELA_REQUIRE_KEYSTONE=1 / VELA_REQUIRE_S3=1 / VELA_REQUIRE_VCSIM=1 /
#     VELA_REQUIRE_CINDER=1, as in CI);
#  2. the Rust unit tests and the HTTP integration suite (it starts the real `vela` binary and
#     talks HTTP to it), on SQLite;
#  3. the HTTP integration suite again on PostgreSQL and on MariaDB, each test in a throw-away
#     database (skipped with a warning when that server is not reachable, unless
#     VELA_REQUIRE_ALL_DBS=1, as in CI);
#  4. with VELA_FUZZ_SECONDS=N (CI sets it), every cargo-fuzz target for N seconds
#     (scripts/fuzz.sh: the format inspector and the policy, JSON-patch and list-query
#     parsers);
#  5. the client interop tests: the real OpenStack CLIs (python-openstackclient and
#     python-glanceclient from PyPI) against a release build, logging in with passwords at
#     Vela's embedded identity service, and through the real Keystone; then the README's
#     first-run commands, literally (e2e/first_run.sh), OpenID Connect federation against a real
#     provider (e2e/oidc.sh: npm oidc-provider, the CLI's v3oidc* plugins, browser sign-on),
#     notifications read by an oslo.messaging consumer from PyPI through a private RabbitMQ
#     node that is stopped and started (e2e/notifications.sh), Horizon's image panels and
#     WebSSO login in a headless Chromium (e2e/horizon.sh; screenshots in artifacts/horizon);
#  6. the conformance suites through the real Keystone (e2e/tempest.sh: tempest's image API
#     tests and glance-tempest-plugin from PyPI, checked against e2e/tempest-expected.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

# Services started here, stopped in reverse order on exit.
STARTED=()
stop_services() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do bash "scripts/${STARTED[i]}.sh" stop || true; done
  true
}
trap stop_services EXIT
# use_service NAME RC EXPORTS REQUIRE_VAR WHAT: takes the exports of `scripts/NAME.sh start`
# when it succeeded (RC 0); otherwise fails when $REQUIRE_VAR is 1 (as in CI), else warns that
# WHAT will be skipped.
use_service() {
  local name="$1" rc="$2" exports="$3" require="$4" what="$5"
  if [ "$rc" = 0 ]; then
    eval "$exports"
    STARTED+=("$name")
    [ "$name" = keystone ] && KEYSTONE_STARTED=1
  elif [ "${!require:-0}" = 1 ]; then
    echo "$name could not be started and $require=1" >&2
    exit 1
  else
    echo "WARNING: $name could not be started: $what will be skipped" >&2
  fi
  return 0
}
KEYSTONE_STARTED=0
# start_bg NAME: `scripts/NAME.sh start` in the background, exports to $TMP_DIR/NAME.out.
TMP_DIR="$(mktemp -d)"
start_bg() { bash "scripts/$1.sh" start >"$TMP_DIR/$1.out" & }
# wait_bg NAME PID REQUIRE_VAR WHAT
wait_bg() {
  local rc=0
  wait "$2" || rc=$?
  use_service "$1" "$rc" "$(cat "$TMP_DIR/$1.out")" "$3" "$4"
}
STAGE_T0=$SECONDS
took() { echo "-- $1 ready after $((SECONDS - STAGE_T0)) s" >&2; }

# VMware's vCenter simulator (built from Debian's govmomi source) starts beside the others.
start_bg vcsim
VCSIM_PID=$!
rc=0
ks_env="$(bash scripts/keystone.sh start)" || rc=$?
use_service keystone "$rc" "${ks_env:-}" VELA_REQUIRE_KEYSTONE "Keystone-mode tests"
took Keystone
# bluestore keeps the OSD's data on disk (memstore would hold twice the data in RAM).
ceph_start() { CEPH_OBJECTSTORE=bluestore bash scripts/ceph.sh start; }
rc=0
ceph_env="$(ceph_start)" || ceph_env="$(ceph_start)" || rc=$?
use_service ceph "$rc" "${ceph_env:-}" VELA_REQUIRE_S3 "S3, Swift-API and RBD store tests"
took Ceph
# A real Cinder (PyPI) on that Ceph, RabbitMQ, MariaDB and the Keystone: in the background.
CINDER_PID=""
if [ "$KEYSTONE_STARTED" = 1 ] && [ -n "${CEPH_CONF:-}" ]; then
  start_bg cinder
  CINDER_PID=$!
elif [ "${VELA_REQUIRE_CINDER:-0}" = 1 ]; then
  echo "Cinder needs Keystone and Ceph, and VELA_REQUIRE_CINDER=1" >&2
  exit 1
fi

# OpenStack Swift (Debian's packages), with tempauth and, beside the Keystone, keystoneauth.
rc=0
swift_env="$(bash scripts/swift.sh start)" || rc=$?
use_service swift "$rc" "${swift_env:-}" VELA_REQUIRE_S3 "OpenStack Swift store tests"
took Swift
wait_bg vcsim "$VCSIM_PID" VELA_REQUIRE_VCSIM "vmware store tests"
took vcsim
if [ -n "$CINDER_PID" ]; then
  wait_bg cinder "$CINDER_PID" VELA_REQUIRE_CINDER "cinder store tests"
  took Cinder
else
  echo "WARNING: no Keystone or no Ceph: cinder store tests will be skipped" >&2
fi
rm -rf "$TMP_DIR"

# The RBD store is built (and its tests run) where librbd and librados can be linked.
FEATURES=()
if dpkg -s librbd-dev librados-dev >/dev/null 2>&1; then
  FEATURES=(--features vela-cli/rbd)
elif [ "${VELA_REQUIRE_S3:-0}" = 1 ]; then
  echo "librbd-dev/librados-dev are missing and VELA_REQUIRE_S3=1" >&2
  exit 1
else
  echo "WARNING: librbd-dev/librados-dev missing: built without the RBD store" >&2
fi

cargo test --workspace --release "${FEATURES[@]}"

pg_up() { psql "${VELA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}/postgres" -qAtc 'select 1' >/dev/null 2>&1; }
my_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; }
for db in postgres mysql; do
  if { [ "$db" = postgres ] && pg_up; } || { [ "$db" = mysql ] && my_up; }; then
    echo "== API suite on $db"
    VELA_TEST_DB=$db cargo test --workspace --release "${FEATURES[@]}" --test api
  elif [ "${VELA_REQUIRE_ALL_DBS:-0}" = 1 ]; then
    echo "$db is not reachable and VELA_REQUIRE_ALL_DBS=1" >&2
    exit 1
  else
    echo "WARNING: $db is not reachable: the API suite did NOT run on $db" >&2
  fi
done

if [ -n "${VELA_FUZZ_SECONDS:-}" ]; then
  echo "== fuzzing (${VELA_FUZZ_SECONDS}s per target)"
  bash scripts/fuzz.sh "$VELA_FUZZ_SECONDS"
fi

# `cargo test --release` has built target/release/vela (the binary the suites start).
export VELA_BIN="${VELA_BIN:-${CARGO_TARGET_DIR:-target}/release/vela}"
echo "== interop: CLIs with the embedded identity service"
bash e2e/interop.sh
echo "== first run: the README's first-run commands, literally"
bash e2e/first_run.sh
# suite TITLE REQUIRE_VAR "TOOLS" SCRIPT: runs SCRIPT when every command of TOOLS is there;
# without them it fails when $REQUIRE_VAR is 1 (as in CI), else warns.
suite() {
  local title="$1" require="$2" tools="$3" script="$4" t
  for t in $tools; do
    if ! command -v "$t" >/dev/null; then
      if [ "${!require:-0}" = 1 ]; then
        echo "$t is missing and $require=1" >&2
        exit 1
      fi
      echo "WARNING: $t missing: $title did NOT run" >&2
      return 0
    fi
  done
  echo "== $title"
  bash "$script"
}
suite "OpenID Connect federation: a real provider (npm oidc-provider), keystoneauth's OIDC plugins" \
  VELA_REQUIRE_OIDC "node npm" e2e/oidc.sh
suite "notifications: oslo.messaging's consumer from PyPI, a private RabbitMQ node stopped and started, kill -9" \
  VELA_REQUIRE_NOTIFY "/usr/lib/rabbitmq/bin/rabbitmq-server" e2e/notifications.sh
suite "browser: Horizon's image panels and WebSSO (embedded identity; the real Keystone when it runs)" \
  VELA_REQUIRE_BROWSER "chromium chromedriver node npm" e2e/horizon.sh
if [ "$KEYSTONE_STARTED" = 1 ]; then
  echo "== interop: CLIs through Keystone"
  bash e2e/keystone.sh
  echo "== conformance: tempest's image tests and glance-tempest-plugin through Keystone"
  bash e2e/tempest.sh
fi
