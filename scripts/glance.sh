#!/usr/bin/env bash
# Runs the real OpenStack Glance 33 (PyPI `glance==33.*`, uwsgi, SQLite, no Keystone) on loopback,
# configured like the Vela servers of the import, tasks and format-inspection API tests, so that
# the same tests can be checked against it:
#
#   eval "$(bash scripts/glance.sh start)"    # prints `export VELA_TEST_URL=...; export GLANCE_PID=...`
#   cargo test --release -p vela-cli --test api -- import:: tasks:: inspection::
#   bash scripts/glance.sh stop
#
# Configuration (kept in step with `import_config` in crates/vela-cli/tests/api/helpers.rs):
#   - multi-store: file stores `fast` (default) and `cheap`, plus Glance's reserved staging and
#     tasks stores (required in multi-store mode); SQLite database;
#   - import methods glance-direct, web-download and copy-image;
#   - web-download may use any port (`allowed_ports = []`) but 9 (`disallowed_ports = [9]`), and
#     loopback only as 127.0.0.1 (`allowed_hosts = [127.0.0.1]`: Glance 33 refuses loopback and
#     link-local addresses of hosts not listed there);
#   - default format inspection (`[image_format] require_image_format_match = true`).
#
# No Keystone; every request runs as an admin. Not through Glance's own no-auth pipeline
# (`[paste_deploy] flavor =`): its requests have no project, and every import then fails with HTTP
# 500 (a task needs an owner). Here Keystone's authtoken filter is replaced by a small test filter
# that marks each request without identity headers as user `glance-test-admin`, roles admin,
# member and reader, project `glance-test-project` (`flavor = noauth-project`,
# `[oslo_policy] enforce_new_defaults = false`). The same module makes SQLite transactions
# `BEGIN IMMEDIATE` (and the database uses WAL): with oslo.db's deferred transactions two
# workers' writes fail with "database is locked", which kills import tasks silently.
#
# Environment: GLANCE_PORT (default 9797), GLANCE_DIR (state; default
# ${TMPDIR:-/tmp}/vela-glance-$GLANCE_PORT), GLANCE_VENV (default $REPO/.venv-glance; created when
# missing), GLANCE_FILTERING=default (Glance's own web-download filtering instead: ports 80 and
# 443 only, no loopback), GLANCE_IMPORT_PLUGINS (e.g. `image_conversion`: import plugins, with
# conversion to raw; used by `BENCH_URL=… bash bench/import.sh`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${GLANCE_PORT:-9797}"
DIR="${GLANCE_DIR:-${TMPDIR:-/tmp}/vela-glance-$PORT}"
VENV="${GLANCE_VENV:-$REPO/.venv-glance}"
URL="http://127.0.0.1:$PORT"

log() { printf 'glance: %s\n' "$*" >&2; }

ensure_venv() {
  if [ -x "$VENV/bin/uwsgi" ] && [ -x "$VENV/bin/glance-manage" ] &&
    "$VENV/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(not m.version("glance").startswith("33."))' 2>/dev/null; then
    return 0
  fi
  local py
  py="$(command -v python3.11 || command -v python3)"
  log "installing glance 33, uwsgi and the OpenStack clients into $VENV (with $py)"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'glance==33.*' uwsgi \
    python-glanceclient python-openstackclient >&2
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

stop() {
  [ -f "$DIR/uwsgi.pid" ] || return 0
  local pid workers
  pid="$(cat "$DIR/uwsgi.pid")"
  if alive "$pid"; then
    # The master's own children (its workers), by pid: INT makes the master stop without
    # respawning them; a graceful exit takes seconds and start wipes the state anyway.
    workers="$(ps -o pid= --ppid "$pid" 2>/dev/null || true)"
    kill -INT "$pid" 2>/dev/null || true
    for w in $workers; do kill -KILL "$w" 2>/dev/null || true; done
    for _ in $(seq 20); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/uwsgi.pid"
}

write_config() {
  local filtering
  if [ "${GLANCE_FILTERING:-}" = default ]; then
    filtering=""
  else
    filtering="allowed_ports = []
disallowed_ports = [9]
allowed_hosts = [127.0.0.1]"
  fi
  mkdir -p "$DIR/conf" "$DIR/fast" "$DIR/cheap" "$DIR/staging" "$DIR/tasks" "$DIR/work"
  # The pipeline of the `keystone` flavor with the identity filter in authtoken's place.
  sed -e 's/^keystone = \(.*\) authtoken context rootapp$/&\nnoauth-project = \1 test-identity context rootapp/' \
    "$VENV/etc/glance/glance-api-paste.ini" >"$DIR/conf/glance-api-paste.ini"
  grep -q '^noauth-project = ' "$DIR/conf/glance-api-paste.ini" ||
    { log "cannot find the keystone pipeline in glance-api-paste.ini"; exit 1; }
  cat >>"$DIR/conf/glance-api-paste.ini" <<'INI'

[composite:glance-api-noauth-project]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[filter:test-identity]
paste.filter_factory = glance_test_identity:filter_factory
INI
  cat >"$DIR/conf/glance_test_identity.py" <<'PY'
"""Test-only additions to Glance, loaded with the paste pipeline.

1. Stands in for keystonemiddleware: requests without identity headers come from an admin.
2. Makes each SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE). oslo.db
   begins transactions deferred; two of them that read and then write (an import task's progress
   update beside any request that writes) fail at once with "database is locked" instead of
   waiting, which kills import tasks silently and fails random requests with 500.
"""
import sqlalchemy
from sqlalchemy.engine import Engine


@sqlalchemy.event.listens_for(Engine, "before_cursor_execute", retval=True)
def _begin_immediate(conn, cursor, statement, parameters, context, executemany):
    if statement == "BEGIN" and conn.dialect.name == "sqlite":
        statement = "BEGIN IMMEDIATE"
    return statement, parameters


def filter_factory(global_conf, **local_conf):
    def wrap(app):
        def middleware(environ, start_response):
            if "HTTP_X_IDENTITY_STATUS" not in environ:
                environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
                environ["HTTP_X_PROJECT_ID"] = "glance-test-project"
                environ["HTTP_X_USER_ID"] = "glance-test-admin"
                environ["HTTP_X_ROLES"] = "admin,member,reader"
            return app(environ, start_response)

        return middleware

    return wrap
PY
  : >"$DIR/conf/glance-image-import.conf"
  if [ -n "${GLANCE_IMPORT_PLUGINS:-}" ]; then
    cat >"$DIR/conf/glance-image-import.conf" <<CONF
[image_import_opts]
image_import_plugins = [$(printf "'%s'," ${GLANCE_IMPORT_PLUGINS//,/ } | sed 's/,$//')]

[image_conversion]
output_format = raw
CONF
  fi
  cat >"$DIR/conf/glance-api.conf" <<CONF
[DEFAULT]
log_file = $DIR/glance-api.log
debug = false
enabled_backends = fast:file, cheap:file
enabled_import_methods = [glance-direct,web-download,copy-image]

[database]
connection = sqlite:///$DIR/glance.sqlite

[glance_store]
default_backend = fast

[fast]
filesystem_store_datadir = $DIR/fast

[cheap]
filesystem_store_datadir = $DIR/cheap

[os_glance_staging_store]
filesystem_store_datadir = $DIR/staging

[os_glance_tasks_store]
filesystem_store_datadir = $DIR/tasks

[task]
work_dir = $DIR/work

[import_filtering_opts]
$filtering

[image_format]
require_image_format_match = true

[paste_deploy]
flavor = noauth-project

[oslo_policy]
enforce_new_defaults = false
CONF
  cat >"$DIR/uwsgi.ini" <<INI
[uwsgi]
http-socket = 127.0.0.1:$PORT
module = glance.wsgi.api:application
virtualenv = $VENV
# oslo.concurrency runs qemu-img info (legacy import tasks) as "sys.executable -m
# oslo_concurrency.prlimit ...": that must be Python, not the uwsgi binary.
py-sys-executable = $VENV/bin/python
processes = 2
master = true
lazy-apps = true
enable-threads = true
http-auto-chunked = true
http-raw-body = true
buffer-size = 65535
die-on-term = true
pidfile = $DIR/uwsgi.pid
daemonize = $DIR/uwsgi.log
env = OS_GLANCE_CONFIG_DIR=$DIR/conf
pythonpath = $DIR/conf
# uwsgi's http-socket closes each connection after one response without saying so.
add-header = Connection: close
INI
}

start() {
  ensure_venv
  stop
  # Another server on the port would answer the readiness check in our Glance's place.
  if curl -s -o /dev/null --max-time 2 "$URL/"; then
    log "127.0.0.1:$PORT is already in use (set GLANCE_PORT)"; exit 1
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  write_config
  trap 'rc=$?; [ "$rc" = 0 ] || { log "start failed"; stop; }' EXIT
  log "db_sync"
  PYTHONWARNINGS=ignore "$VENV/bin/glance-manage" --config-file "$DIR/conf/glance-api.conf" \
    db_sync >"$DIR/db_sync.log" 2>&1 || { cat "$DIR/db_sync.log" >&2; exit 1; }
  # WAL: readers and the one writer do not block each other (see BEGIN IMMEDIATE above).
  "$VENV/bin/python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' \
    "$DIR/glance.sqlite"
  log "serving on 127.0.0.1:$PORT"
  "$VENV/bin/uwsgi" --ini "$DIR/uwsgi.ini"
  local ok=0
  for _ in $(seq 600); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/v2/info/import")" = 200 ]; then
      ok=1; break
    fi
    # A worker that cannot load the application is respawned forever: give up at once.
    if grep -q 'Traceback' "$DIR/uwsgi.log" 2>/dev/null; then break; fi
    if [ -s "$DIR/uwsgi.pid" ] && ! alive "$(cat "$DIR/uwsgi.pid")"; then break; fi
    sleep 0.2
  done
  if [ "$ok" != 1 ]; then
    log "did not answer on $URL (within 2 minutes, or a worker failed to start)"
    tail -n 40 "$DIR/uwsgi.log" >&2 || true
    tail -n 40 "$DIR/glance-api.log" >&2 || true
    exit 1
  fi
  # Both workers load the application lazily: warm them up so the first test does not pay it.
  for _ in 1 2 3 4; do curl -s -o /dev/null --max-time 30 "$URL/v2/images" || true; done
  log "ready at $URL (state in $DIR)"
  echo "export VELA_TEST_URL=$URL"
  echo "export GLANCE_PID=$(cat "$DIR/uwsgi.pid")"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
