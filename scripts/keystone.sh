#!/usr/bin/env bash
# Runs a real OpenStack Keystone (PyPI `keystone`, SQLite, fernet tokens) on loopback, for the
# Keystone-mode tests.
#
#   scripts/keystone.sh start         fresh Keystone; prints `export KEYSTONE_...` lines on stdout
#   scripts/keystone.sh endpoint URL  registers URL as the image service (public/internal/admin)
#   scripts/keystone.sh stop
#
# `start` creates, besides Keystone's bootstrap admin (password $KEYSTONE_ADMIN_PASSWORD):
#   project service, user vela/vela-secret with roles service and admin there (Vela's service
#   user); projects alpha and beta; users alpha-member (member of alpha), alpha-reader
#   (reader of alpha), beta-member (member of beta), all with password "secret".
#
# Environment: KEYSTONE_DIR (state, default ${TMPDIR:-/tmp}/vela-keystone), KEYSTONE_PORT
# (default 5000), KEYSTONE_VENV (default $REPO/.venv-keystone; created when missing).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${KEYSTONE_DIR:-${TMPDIR:-/tmp}/vela-keystone}"
PORT="${KEYSTONE_PORT:-5000}"
VENV="${KEYSTONE_VENV:-$REPO/.venv-keystone}"
URL="http://127.0.0.1:$PORT/v3"
ADMIN_PASSWORD="${KEYSTONE_ADMIN_PASSWORD:-admin-secret}"

log() { printf 'keystone: %s\n' "$*" >&2; }

ensure_venv() {
  if "$VENV/bin/python" -c 'import keystone, openstack' >/dev/null 2>&1 && [ -x "$VENV/bin/uwsgi" ]; then
    return 0
  fi
  log "installing keystone, uwsgi and python-openstackclient into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check keystone uwsgi python-openstackclient >&2
}

stop() {
  if [ -f "$DIR/uwsgi.pid" ]; then
    local pid
    pid="$(cat "$DIR/uwsgi.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -INT "$pid" 2>/dev/null || true   # uwsgi master: INT = shut down now
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/uwsgi.pid"
  fi
  # Workers of a master that died hard.
  pkill -KILL -f "uwsgi --ini $DIR/uwsgi.ini" 2>/dev/null || true
}

admin_env() {
  export OS_AUTH_URL="$URL" OS_USERNAME=admin OS_PASSWORD="$ADMIN_PASSWORD" OS_PROJECT_NAME=admin \
    OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_IDENTITY_API_VERSION=3
}

start() {
  ensure_venv
  stop
  rm -rf "$DIR"
  mkdir -p "$DIR/fernet" "$DIR/credential"
  cat >"$DIR/keystone.conf" <<CONF
[DEFAULT]
log_file = $DIR/keystone.log
[database]
connection = sqlite:///$DIR/keystone.sqlite
[token]
provider = fernet
[fernet_tokens]
key_repository = $DIR/fernet
[credential]
key_repository = $DIR/credential
CONF
  local manage=("$VENV/bin/keystone-manage" --config-file "$DIR/keystone.conf")
  log "db_sync, key setup, bootstrap"
  "${manage[@]}" db_sync >&2
  "${manage[@]}" fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" >&2
  "${manage[@]}" credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" >&2
  "${manage[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
    --bootstrap-admin-url "$URL/" --bootstrap-public-url "$URL/" \
    --bootstrap-internal-url "$URL/" --bootstrap-region-id RegionOne >&2
  cat >"$DIR/uwsgi.ini" <<INI
[uwsgi]
http-socket = 127.0.0.1:$PORT
module = keystone.wsgi.api:application
virtualenv = $VENV
processes = 2
master = true
lazy-apps = true
pidfile = $DIR/uwsgi.pid
daemonize = $DIR/uwsgi.log
env = OS_KEYSTONE_CONFIG_FILES=$DIR/keystone.conf
# uwsgi's http-socket closes each connection after one response without saying so; clients
# that reuse it then fail with "connection reset". Say so.
add-header = Connection: close
INI
  "$VENV/bin/uwsgi" --ini "$DIR/uwsgi.ini"
  for _ in $(seq 600); do
    curl -sf "$URL" >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! curl -sf "$URL" >/dev/null 2>&1; then
    log "did not answer on $URL within 60 s"; tail -n 50 "$DIR/uwsgi.log" >&2; exit 1
  fi
  log "populating projects and users"
  admin_env
  "$VENV/bin/python" - <<'PY' >&2
import openstack

conn = openstack.connect()
idn = conn.identity

def project(name):
    return idn.find_project(name, domain_id="default") or idn.create_project(name=name, domain_id="default")

def role(name):
    return idn.find_role(name) or idn.create_role(name=name)

def user(name, password, proj, roles):
    u = idn.create_user(name=name, password=password, domain_id="default", default_project_id=proj.id)
    for r in roles:
        idn.assign_project_role_to_user(proj, u, role(r))

service, alpha, beta = project("service"), project("alpha"), project("beta")
user("vela", "vela-secret", service, ["service", "admin"])
user("alpha-member", "secret", alpha, ["member"])
user("alpha-reader", "secret", alpha, ["reader"])
user("beta-member", "secret", beta, ["member"])
# Keystone's implied roles: a member token also carries reader.
conn2 = openstack.connect(username="alpha-member", password="secret", project_name="alpha")
access = conn2.session.auth.get_access(conn2.session)
print("alpha-member token roles:", sorted(access.role_names))
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
  local image_url="$1"
  admin_env
  "$VENV/bin/python" - "$image_url" <<'PY' >&2
import sys
import openstack

url = sys.argv[1]
idn = openstack.connect().identity
svc = next((s for s in idn.services() if s.type == "image"), None) or \
    idn.create_service(name="glance", type="image")
for ep in list(idn.endpoints(service_id=svc.id)):
    idn.delete_endpoint(ep)
for iface in ("public", "internal", "admin"):
    idn.create_endpoint(service_id=svc.id, interface=iface, url=url, region_id="RegionOne")
print("image endpoint:", url)
PY
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  endpoint) [ -n "${2:-}" ] || { echo "usage: $0 endpoint URL" >&2; exit 2; }; endpoint "$2" ;;
  *) echo "usage: $0 start|stop|endpoint URL" >&2; exit 2 ;;
esac
