#!/usr/bin/env bash
# Runs every test of the project:
#  1. a real Keystone on loopback (scripts/keystone.sh: PyPI `keystone`, SQLite, fernet) for the
#     Keystone-mode tests, a real one-node Ceph (scripts/ceph.sh: Debian's Ceph, radosgw as
#     the S3 and a Swift-API server, an RBD pool) and OpenStack Swift (scripts/swift.sh:
#     Debian's Swift, tempauth and keystoneauth) and VMware's vCenter simulator
#     (scripts/vcsim.sh: govmomi's vcsim built from Debian's source) for the store tests (each
#     skipped with a warning when it cannot be started, unless VELA_REQUIRE_KEYSTONE=1 /
#     VELA_REQUIRE_S3=1 / VELA_REQUIRE_VCSIM=1, as in CI);
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
#     provider (e2e/oidc.sh: npm oidc-provider, the CLI's v3oidc* plugins, browser sign-on), Horizon's image panels and WebSSO login in a
#     headless Chromium (e2e/horizon.sh; screenshots in artifacts/horizon);
#  6. the conformance suites through the real Keystone (e2e/tempest.sh: tempest's image API
#     tests and glance-tempest-plugin from PyPI, checked against e2e/tempest-expected.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

KEYSTONE_STARTED=0
CEPH_STARTED=0
SWIFT_STARTED=0
VCSIM_STARTED=0
stop_services() {
  [ "$VCSIM_STARTED" = 1 ] && bash scripts/vcsim.sh stop
  [ "$SWIFT_STARTED" = 1 ] && bash scripts/swift.sh stop
  [ "$KEYSTONE_STARTED" = 1 ] && bash scripts/keystone.sh stop
  [ "$CEPH_STARTED" = 1 ] && bash scripts/ceph.sh stop
  true
}
trap stop_services EXIT
# VMware's vCenter simulator (built from Debian's govmomi source) starts beside the others.
VCSIM_OUT="$(mktemp)"
bash scripts/vcsim.sh start >"$VCSIM_OUT" &
VCSIM_JOB=$!
if ks_env="$(bash scripts/keystone.sh start)"; then
  eval "$ks_env"
  KEYSTONE_STARTED=1
elif [ "${VELA_REQUIRE_KEYSTONE:-0}" = 1 ]; then
  echo "Keystone could not be started and VELA_REQUIRE_KEYSTONE=1" >&2
  exit 1
else
  echo "WARNING: Keystone could not be started: Keystone-mode tests will be skipped" >&2
fi
# bluestore keeps the OSD's data on disk (memstore would hold twice the data in RAM).
ceph_start() { CEPH_OBJECTSTORE=bluestore bash scripts/ceph.sh start; }
if ceph_env="$(ceph_start)" || ceph_env="$(ceph_start)"; then
  eval "$ceph_env"
  CEPH_STARTED=1
elif [ "${VELA_REQUIRE_S3:-0}" = 1 ]; then
  echo "Ceph could not be started and VELA_REQUIRE_S3=1" >&2
  exit 1
else
  echo "WARNING: Ceph could not be started: S3 store tests will be skipped" >&2
fi

# OpenStack Swift (Debian's packages), with tempauth and, beside the Keystone, keystoneauth.
if swift_env="$(bash scripts/swift.sh start)"; then
  eval "$swift_env"
  SWIFT_STARTED=1
elif [ "${VELA_REQUIRE_S3:-0}" = 1 ]; then
  echo "Swift could not be started and VELA_REQUIRE_S3=1" >&2
  exit 1
else
  echo "WARNING: Swift could not be started: OpenStack Swift store tests will be skipped" >&2
fi

if wait "$VCSIM_JOB"; then
  eval "$(cat "$VCSIM_OUT")"
  VCSIM_STARTED=1
elif [ "${VELA_REQUIRE_VCSIM:-0}" = 1 ]; then
  echo "vcsim could not be started and VELA_REQUIRE_VCSIM=1" >&2
  exit 1
else
  echo "WARNING: vcsim could not be started: vmware store tests will be skipped" >&2
fi
rm -f "$VCSIM_OUT"

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
suite "browser: Horizon's image panels and WebSSO (embedded identity; the real Keystone when it runs)" \
  VELA_REQUIRE_BROWSER "chromium chromedriver node npm" e2e/horizon.sh
if [ "$KEYSTONE_STARTED" = 1 ]; then
  echo "== interop: CLIs through Keystone"
  bash e2e/keystone.sh
  echo "== conformance: tempest's image tests and glance-tempest-plugin through Keystone"
  bash e2e/tempest.sh
fi
