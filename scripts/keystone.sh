#!/usr/bin/env bash
# Runs a real OpenStack Keystone (PyPI `keystone`, SQLite, fernet tokens) on loopback, for the
# Keystone-mode tests.
#
#   scripts/keystone.sh start         fresh Keystone; prints `export KEYSTONE_...` lines on stdout
#                                     (only those: `eval "$(scripts/keystone.sh start)"`)
#   scripts/keystone.sh endpoint URL [TYPE]
#                                     registers URL as the image service (public/internal/admin),
#                                     or as service TYPE (e.g. tempest's image_remote)
#   scripts/keystone.sh stop
#
# `start` creates, besides Keystone's bootstrap admin (password $KEYSTONE_ADMIN_PASSWORD):
#   project service, user vela/vela-secret with roles service and admin there (Vela's service
#   user); projects alpha and beta; users alpha-member (member of alpha), alpha-reader
#   (reader of alpha), beta-member (member of beta), all with password "secret".
# Bootstrap's implied roles (admin -> manager -> member -> reader) put reader in member tokens.
#
# Environment: KEYSTONE_DIR (state, default ${TMPDIR:-/tmp}/vela-keystone), KEYSTONE_PORT
# (default 5000), KEYSTONE_VENV (default $REPO/.venv-keystone; created when missing), KEYSTONE_DB
# (`sqlite` keeps Keystone on SQLite even when MariaDB is reachable).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${KEYSTONE_DIR:-${TMPDIR:-/tmp}/vela-keystone}"
PORT="${KEYSTONE_PORT:-5000}"
VENV="${KEYSTONE_VENV:-$REPO/.venv-keystone}"
URL="http://127.0.0.1:$PORT/v3"
ADMIN_PASSWORD="${KEYSTONE_ADMIN_PASSWORD:-admin-secret}"

log() { printf 'keystone: %s\n' "$*" >&2; }

ensure_venv() {
  if [ -x "$VENV/bin/uwsgi" ] && [ -x "$VENV/bin/keystone-manage" ] && [ -x "$VENV/bin/openstack" ] &&
    "$VENV/bin/python" -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("keystone", "keystoneauth1", "openstackclient", "pymysql")))' 2>/dev/null; then
    return 0
  fi
  local py
  py="$(command -v python3.11 || command -v python3)"
  log "installing keystone, uwsgi and python-openstackclient into $VENV (with $py)"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check keystone uwsgi python-openstackclient PyMySQL >&2
}

stop() {
  if [ -f "$DIR/uwsgi.pid" ]; then
    local pid
    pid="$(cat "$DIR/uwsgi.pid")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      # INT tells the master to shut down (and not to respawn workers). A graceful uwsgi exit
      # takes 2-4 s and there is nothing to save (start wipes the state): workers are killed,
      # the master gets half a second.
      kill -INT "$pid" 2>/dev/null || true
      pkill -KILL -P "$pid" 2>/dev/null || true
      for _ in $(seq 5); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/uwsgi.pid"
  fi
  # Workers of a master that died hard (only this state dir's: the pattern holds its ini path).
  pkill -KILL -f "uwsgi --ini $DIR/uwsgi.ini" 2>/dev/null || true
}

# keystone-manage under the state dir's config; without eventlet's deprecation banners.
manage() { PYTHONWARNINGS=ignore "$VENV/bin/keystone-manage" --config-file "$DIR/keystone.conf" "$@" >&2; }

start() {
  ensure_venv
  stop
  # Another server on the port would answer the readiness check in our Keystone's place.
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; then
    log "127.0.0.1:$PORT is already in use (another Keystone? set KEYSTONE_PORT)"; exit 1
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  # Keystone's database: SQLite answers "database is locked" (a 500, or a connection closed
  # without a response) when several workers write at once, as tempest's dynamic credentials
  # do; the machine's MariaDB serves it when it is reachable (a fresh database per start).
  local db="sqlite:///$DIR/keystone.sqlite"
  if [ "${KEYSTONE_DB:-auto}" != sqlite ] &&
    mariadb -h 127.0.0.1 -P 3306 -u root -e "DROP DATABASE IF EXISTS vela_keystone_$PORT;
      CREATE DATABASE vela_keystone_$PORT CHARACTER SET utf8mb4" 2>/dev/null; then
    db="mysql+pymysql://root@127.0.0.1:3306/vela_keystone_$PORT?charset=utf8mb4"
  fi
  mkdir -m 700 "$DIR/fernet" "$DIR/credential"   # Keystone warns about readable key repositories
  # password_hash_rounds: bcrypt's default of 12 costs ~0.3 s per password check, i.e. per token
  # issued; 4 (bcrypt's minimum) makes the tests' many logins cheap. Test-only Keystone.
  cat >"$DIR/keystone.conf" <<CONF
[DEFAULT]
log_file = $DIR/keystone.log
[database]
connection = $db
[identity]
password_hash_rounds = 4
[token]
provider = fernet
[fernet_tokens]
key_repository = $DIR/fernet
[credential]
key_repository = $DIR/credential
CONF
  cat >"$DIR/uwsgi.ini" <<INI
[uwsgi]
http-socket = 127.0.0.1:$PORT
module = keystone.wsgi.api:application
virtualenv = $VENV
processes = 4
master = true
lazy-apps = true
pidfile = $DIR/uwsgi.pid
daemonize = $DIR/uwsgi.log
env = OS_KEYSTONE_CONFIG_FILES=$DIR/keystone.conf
# uwsgi's http-socket closes each connection after one response without saying so; clients
# that reuse it then fail with "connection reset". Say so.
add-header = Connection: close
INI
  # A start that fails half-way leaves no server behind.
  trap 'rc=$?; [ "$rc" = 0 ] || { log "start failed"; stop; }' EXIT

  # uwsgi loads its workers while the database is set up: Keystone only reads the database and
  # the key repositories per request (no cache by default).
  log "serving on 127.0.0.1:$PORT; db_sync, key setup, bootstrap"
  "$VENV/bin/uwsgi" --ini "$DIR/uwsgi.ini"
  # keystone-manage costs ~3 s of Python start-up per run: the four steps run in one process
  # through keystone-manage's own entry (keystone.cmd.cli) and, should that ever fail with a
  # future Keystone, as four keystone-manage runs (each step is idempotent).
  local user group
  user="$(id -un)"; group="$(id -gn)"
  if ! PYTHONWARNINGS=ignore "$VENV/bin/python" - "$DIR/keystone.conf" "$user" "$group" \
      "$ADMIN_PASSWORD" "$URL/" <<'PY' >&2; then
import sys
from keystone.cmd import cli
import keystone.conf

conf, user, group, password, url = sys.argv[1:]
steps = [
    ["db_sync"],
    ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
    ["credential_setup", "--keystone-user", user, "--keystone-group", group],
    ["bootstrap", "--bootstrap-password", password, "--bootstrap-admin-url", url,
     "--bootstrap-public-url", url, "--bootstrap-internal-url", url,
     "--bootstrap-region-id", "RegionOne"],
]
cli.main(argv=["keystone-manage", "--config-file", conf] + steps[0])   # registers and parses
for step in steps[1:]:
    keystone.conf.CONF(args=["--config-file", conf] + step, project="keystone")
    keystone.conf.CONF.command.cmd_class.main()
PY
    log "in-process setup failed; running keystone-manage"
    manage db_sync
    manage fernet_setup --keystone-user "$user" --keystone-group "$group"
    manage credential_setup --keystone-user "$user" --keystone-group "$group"
    manage bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
      --bootstrap-admin-url "$URL/" --bootstrap-public-url "$URL/" \
      --bootstrap-internal-url "$URL/" --bootstrap-region-id RegionOne
  fi
  for _ in $(seq 600); do
    curl -sf "$URL" >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! curl -sf "$URL" >/dev/null 2>&1; then
    log "did not answer on $URL within 60 s"; tail -n 50 "$DIR/uwsgi.log" >&2; exit 1
  fi

  log "creating projects, users and role assignments"
  # One Python process, plain REST through keystoneauth (imports in ~0.3 s, where openstacksdk
  # takes ~0.8 s and the openstack CLI ~1-2 s per call).
  KS_URL="$URL" KS_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$VENV/bin/python" - <<'PY' >&2
import os
from keystoneauth1 import session
from keystoneauth1.identity import v3

url = os.environ["KS_URL"]

def login(user, password, project):
    return session.Session(auth=v3.Password(
        auth_url=url, username=user, password=password, user_domain_id="default",
        project_name=project, project_domain_id="default"))

admin = login("admin", os.environ["KS_ADMIN_PASSWORD"], "admin")   # raises on any HTTP error

def post(kind, body):
    return admin.post(f"{url}/{kind}s", json={kind: body}).json()[kind]["id"]

roles = {r["name"]: r["id"] for r in admin.get(f"{url}/roles").json()["roles"]}
for name in ("service", "admin", "member", "reader"):   # bootstrap makes them all, today
    if name not in roles:
        roles[name] = post("role", {"name": name})
projects = {p: post("project", {"name": p, "domain_id": "default"})
            for p in ("service", "alpha", "beta")}
for name, password, project, user_roles in [
    ("vela", "vela-secret", "service", ["service", "admin"]),
    ("alpha-member", "secret", "alpha", ["member"]),
    ("alpha-reader", "secret", "alpha", ["reader"]),
    ("beta-member", "secret", "beta", ["member"]),
]:
    uid = post("user", {"name": name, "password": password, "domain_id": "default",
                        "default_project_id": projects[project]})
    for role in user_roles:
        admin.put(f"{url}/projects/{projects[project]}/users/{uid}/roles/{roles[role]}")
    if name == "vela":
        # Reading every project's unified limits (quotas) takes a system reader, as for
        # oslo.limit's user.
        admin.put(f"{url}/system/users/{uid}/roles/{roles['reader']}")

member = login("alpha-member", "secret", "alpha")
got = sorted(member.auth.get_access(member).role_names)
print("alpha-member token roles:", got)
assert got == ["member", "reader"], got
PY
  log "ready at $URL"
  cat <<ENV
export KEYSTONE_URL=$URL
export KEYSTONE_ADMIN_PASSWORD=$ADMIN_PASSWORD
export KEYSTONE_SERVICE_USER=vela
export KEYSTONE_SERVICE_PASSWORD=vela-secret
export KEYSTONE_SERVICE_PROJECT=service
export KEYSTONE_VENV=$VENV
ENV
}

endpoint() {
  KS_URL="$URL" KS_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$VENV/bin/python" - "$1" "${2:-image}" <<'PY' >&2
import os
import sys
from keystoneauth1 import session
from keystoneauth1.identity import v3

url, image_url, kind = os.environ["KS_URL"], sys.argv[1], sys.argv[2]
admin = session.Session(auth=v3.Password(
    auth_url=url, username="admin", password=os.environ["KS_ADMIN_PASSWORD"],
    user_domain_id="default", project_name="admin", project_domain_id="default"))
services = admin.get(f"{url}/services", params={"type": kind}).json()["services"]
if services:
    sid = services[0]["id"]
else:
    name = "glance" if kind == "image" else kind
    sid = admin.post(f"{url}/services",
                     json={"service": {"name": name, "type": kind}}).json()["service"]["id"]
for ep in admin.get(f"{url}/endpoints", params={"service_id": sid}).json()["endpoints"]:
    admin.delete(f"{url}/endpoints/{ep['id']}")
for iface in ("public", "internal", "admin"):
    admin.post(f"{url}/endpoints", json={"endpoint": {
        "service_id": sid, "interface": iface, "url": image_url, "region_id": "RegionOne"}})
print(f"{kind} endpoint:", image_url)
PY
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  endpoint) [ -n "${2:-}" ] || { echo "usage: $0 endpoint URL [TYPE]" >&2; exit 2; }; endpoint "$2" "${3:-image}" ;;
  *) echo "usage: $0 start|stop|endpoint URL [TYPE]" >&2; exit 2 ;;
esac
