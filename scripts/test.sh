#!/usr/bin/env bash
# Runs every test of the project:
#  1. the Rust unit tests and the HTTP integration suite (it starts the real `vela` binary and
#     talks HTTP to it), on SQLite;
#  2. the HTTP integration suite again on PostgreSQL and on MariaDB, each test in a throw-away
#     database (skipped with a warning when that server is not reachable, unless
#     VELA_REQUIRE_ALL_DBS=1, as in CI);
#  3. the client interop test: the real OpenStack CLIs (python-openstackclient and
#     python-glanceclient from PyPI) against a release build of the server.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --release

pg_up() { psql "${VELA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}/postgres" -qAtc 'select 1' >/dev/null 2>&1; }
my_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; }
for db in postgres mysql; do
  if { [ "$db" = postgres ] && pg_up; } || { [ "$db" = mysql ] && my_up; }; then
    echo "== API suite on $db"
    VELA_TEST_DB=$db cargo test --workspace --release --test api
  elif [ "${VELA_REQUIRE_ALL_DBS:-0}" = 1 ]; then
    echo "$db is not reachable and VELA_REQUIRE_ALL_DBS=1" >&2
    exit 1
  else
    echo "WARNING: $db is not reachable: the API suite did NOT run on $db" >&2
  fi
done

# `cargo test --release` has built target/release/vela (the binary the suite starts).
VELA_BIN="${VELA_BIN:-${CARGO_TARGET_DIR:-target}/release/vela}" bash e2e/interop.sh
