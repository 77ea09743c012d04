#!/usr/bin/env bash
# Runs a real OpenStack Cinder (PyPI `cinder`: cinder-api, cinder-scheduler, cinder-volume) on
# loopback, with an RBD back end in the one-node Ceph of scripts/ceph.sh and Keystone auth from
# scripts/keystone.sh, for the cinder store tests.
#
#   eval "$(bash scripts/keystone.sh start)"
#   eval "$(CEPH_OBJECTSTORE=bluestore bash scripts/ceph.sh start)"
#   eval "$(bash scripts/cinder.sh start)"   # prints `export CINDER_...` lines on stdout (only
#                                            # those), progress goes to stderr
#   bash scripts/cinder.sh stop              # stops the three daemons
#
# Needs: $KEYSTONE_URL and $KEYSTONE_ADMIN_PASSWORD (Keystone's admin, project admin), $CEPH_CONF
# (no cephx), RabbitMQ on 127.0.0.1:5672 (guest/guest), MariaDB on 127.0.0.1:3306 (root, no
# password).
#
# `start` makes everything fresh: the state dir, the MariaDB database vela_cinder_$CINDER_PORT,
# the Ceph pool $CINDER_RBD_POOL (deleted and re-created; never the pool of $CEPH_RBD_POOL) and
# the RabbitMQ vhost vela-cinder-$CINDER_PORT (oslo.messaging names its topic queues
# `cinder-scheduler`, `cinder-volume...` whatever the exchange, so a control_exchange of its own
# is not enough to keep another Cinder on the broker apart; without rabbitmqctl the vhost `/`
# and the control_exchange vela-cinder are used). In Keystone (shared: only these are created or
# updated, nothing is deleted but the cinderv3 service's own stale endpoints):
#   - user cinder/cinder-secret, role admin in project service (Cinder's service user);
#   - service cinderv3 (type volumev3), endpoints http://127.0.0.1:PORT/v3/%(project_id)s;
#   - project vela-images, user vela-cinder/vela-cinder-secret with role member there (the image
#     service's store user: $CINDER_USER in $CINDER_PROJECT).
# Cinder: back end `ceph` (RBDDriver, volume_backend_name=ceph, host vela-cinder@ceph), volume
# type vela-rbd (volume_backend_name=ceph) made the default type, and type vela-nowhere that no
# back end serves (its volumes end in `error`); the resource filters of
# Cinder's resource_filters.json (so members may filter volumes by name, status, metadata...).
# `start` checks it all by creating (as vela-cinder), waiting for and deleting a 1 GiB volume.
#
# Times (2 CPUs): the first start installs the venv (~90 s of pip, ~45 s with a warm pip
# cache); then ~15-20 s: ~6 s of Keystone/Ceph/RabbitMQ set-up and db sync, ~5 s until the three
# daemons serve, ~1 s for the check volume. RSS: ~750 MiB in all, five Python processes of
# ~150 MiB (cinder-api's parent and its one worker, cinder-scheduler, cinder-volume's parent and
# its back-end child).
# One such Cinder per Keystone: the volumev3 endpoints point at the last one started.
#
# Environment: CINDER_DIR (state: config, logs, pid files, locks; default
# ${TMPDIR:-/tmp}/vela-cinder), CINDER_PORT (API, default 8776), CINDER_VENV (default
# $REPO/.venv-cinder; created when missing), CINDER_RBD_POOL (default cinder-volumes),
# CINDER_API_WORKERS (default 1).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${CINDER_DIR:-${TMPDIR:-/tmp}/vela-cinder}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
PORT="${CINDER_PORT:-8776}"
VENV="${CINDER_VENV:-$REPO/.venv-cinder}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
POOL="${CINDER_RBD_POOL:-cinder-volumes}"
API_WORKERS="${CINDER_API_WORKERS:-1}"
URL="http://127.0.0.1:$PORT/v3"
CONF="$DIR/cinder.conf"
DB="vela_cinder_$PORT"
VHOST="vela-cinder-$PORT"
DAEMONS=(cinder-api cinder-scheduler cinder-volume)

SERVICE_USER=cinder
SERVICE_PASSWORD=cinder-secret
STORE_USER=vela-cinder
STORE_PASSWORD=vela-cinder-secret
STORE_PROJECT=vela-images
VOLUME_TYPE=vela-rbd

# Debian's python3-rados / python3-rbd (built for Debian's Python 3.11).
CEPH_PY_DIR=/usr/lib/python3/dist-packages
CEPH_PY_MODULES=(rados.cpython-311-x86_64-linux-gnu.so rbd.cpython-311-x86_64-linux-gnu.so)

CEPH_TIMEOUT=20   # per ceph/rbd call: a one-node cluster answers in well under a second

log() { printf 'cinder: [%3ss] %s\n' "$SECONDS" "$*" >&2; }

# shellcheck source=scripts/daemon.sh
. "$REPO/scripts/daemon.sh"

ensure_ceph_python() {
  local m missing=0
  for m in "${CEPH_PY_MODULES[@]}"; do [ -f "$CEPH_PY_DIR/$m" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-rados python3-rbd)
  log "installing python3-rados python3-rbd"
  if ! "${install[@]}" >&2; then
    "${sudo[@]}" apt-get update -qq >&2
    "${install[@]}" >&2
  fi
}

# Only rados and rbd from Debian's dist-packages: a directory of two symlinks on the venv's path
# (a .pth file), not the whole dist-packages.
link_ceph_python() {
  local site m
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$VENV/ceph-python"
  for m in "${CEPH_PY_MODULES[@]}"; do ln -sfn "$CEPH_PY_DIR/$m" "$VENV/ceph-python/$m"; done
  printf '%s\n' "$VENV/ceph-python" >"$site/vela-ceph-python.pth"
}

venv_ok() {
  [ -x "$VENV/bin/cinder-api" ] && [ -x "$VENV/bin/cinder-manage" ] &&
    [ -x "$VENV/bin/cinder-volume" ] && [ -x "$VENV/bin/cinder-scheduler" ] &&
    [ -x "$VENV/bin/cinder" ] &&
    "$VENV/bin/python" -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("cinder", "pymysql", "cinderclient", "keystoneauth1")))' 2>/dev/null
}

ensure_venv() {
  ensure_ceph_python
  if ! venv_ok; then
    local py
    py="$(command -v python3.11 || command -v python3)"
    log "installing cinder, PyMySQL and python-cinderclient into $VENV (with $py)"
    "$py" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check cinder PyMySQL python-cinderclient >&2
  fi
  link_ceph_python
  if ! "$VENV/bin/python" -c 'import rados, rbd' 2>/dev/null; then
    log "the venv's Python cannot import Debian's rados/rbd (built for Python 3.11):"
    "$VENV/bin/python" -c 'import sys, rados, rbd; print(sys.version)' >&2 || true
    exit 1
  fi
}

# The pid in $PIDFILE when that process is one of ours: alive, started with this state dir's
# cinder.conf (a recycled pid is never killed).
our_pid() {
  local pid
  pid="$(running_pid)" || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$CONF" || return 1
  printf '%s' "$pid"
}

# Each daemon runs in a session (and process group) of its own, its pid the group's id: its
# children (cinder-volume's back-end process, cinder-api's workers) go with it. SIGKILL after
# 3 s: start wipes the state anyway.
stop() {
  local name pid
  local -a pids=()
  for name in "${DAEMONS[@]}"; do
    PIDFILE="$DIR/run/$name.pid"
    if pid="$(our_pid)"; then
      pids+=("$pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  for name in "${DAEMONS[@]}"; do rm -f "$DIR/run/$name.pid"; done
  [ "${#pids[@]}" = 0 ] || log "stopped"
}

log_tails() {
  local f
  for f in "$DIR"/log/*; do
    [ -s "$f" ] || continue
    printf '==> %s <==\n' "$f" >&2
    grep -v ' DEBUG ' "$f" | tail -n 25 >&2 || true
  done
}

on_start_exit() {
  local rc=$?
  [ "$rc" = 0 ] && return 0
  log "start failed"
  log_tails
  stop || true
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ceph_() { timeout "$CEPH_TIMEOUT" ceph -c "$CEPH_CONF" --connect-timeout "$CEPH_TIMEOUT" "$@"; }

fresh_pool() {
  if [ "$POOL" = "${CEPH_RBD_POOL:-rbd}" ]; then
    # Someone else's pool: not deleted (the fresh database knows none of its images).
    log "pool $POOL is \$CEPH_RBD_POOL: used as it is"
    ceph_ osd pool ls | grep -qxF "$POOL" || { log "pool $POOL does not exist (or Ceph does not answer)"; exit 1; }
    return 0
  fi
  log "pool $POOL (fresh)"
  local pools
  pools="$(ceph_ osd pool ls)" || { log "Ceph does not answer (CEPH_CONF=$CEPH_CONF)"; exit 1; }
  if grep -qxF "$POOL" <<<"$pools"; then
    ceph_ osd pool delete "$POOL" "$POOL" --yes-i-really-really-mean-it >&2
  fi
  ceph_ osd pool create "$POOL" 8 >&2
  timeout "$CEPH_TIMEOUT" rbd -c "$CEPH_CONF" pool init "$POOL" >&2
}

# A vhost of our own when rabbitmqctl can make one (fresh: no queued messages of an earlier
# run); else the default vhost. Prints the transport URL.
transport_url() {
  if command -v rabbitmqctl >/dev/null 2>&1 &&
    { timeout 30 rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true; } &&
    timeout 30 rabbitmqctl -q add_vhost "$VHOST" >/dev/null 2>&1 &&
    timeout 30 rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null 2>&1; then
    printf 'rabbit://guest:guest@127.0.0.1:5672/%s' "$VHOST"
  else
    log "no RabbitMQ vhost of our own (rabbitmqctl failed): vhost /"
    printf 'rabbit://guest:guest@127.0.0.1:5672/'
  fi
}

write_conf() {
  local transport="$1"
  cat >"$CONF" <<CONF
[DEFAULT]
host = vela-cinder
my_ip = 127.0.0.1
state_path = $DIR
log_dir = $DIR/log
debug = false
auth_strategy = keystone
transport_url = $transport
control_exchange = vela-cinder
rpc_response_timeout = 30
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = $PORT
osapi_volume_workers = $API_WORKERS
api_paste_config = $VENV/etc/cinder/api-paste.ini
resource_query_filters_file = $VENV/etc/cinder/resource_filters.json
rootwrap_config = $VENV/etc/cinder/rootwrap.conf
enabled_backends = ceph
default_volume_type = $VOLUME_TYPE
# Service heartbeats every 2 s, "down" after 20 s without one (defaults 10 / 60).
report_interval = 2
service_down_time = 20
# Stats to the scheduler every 10 s (default 60).
backend_stats_polling_interval = 10
periodic_interval = 10

[database]
connection = mysql+pymysql://root@127.0.0.1:3306/$DB?charset=utf8mb4

[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = $SERVICE_USER
password = $SERVICE_PASSWORD
project_name = service
user_domain_name = Default
project_domain_name = Default
service_token_roles_required = true

[oslo_concurrency]
lock_path = $DIR/locks

[oslo_messaging_notifications]
driver = noop

[coordination]
backend_url = file://$DIR/coordination

[ceph]
volume_driver = cinder.volume.drivers.rbd.RBDDriver
volume_backend_name = ceph
rbd_pool = $POOL
rbd_ceph_conf = $CEPH_CONF
rbd_user = admin
rbd_exclusive_cinder_pool = true
rbd_flatten_volume_from_snapshot = false
CONF
}

# Keystone: Cinder's service user, its catalog entry, the store's project and user. Idempotent
# (the Keystone may be shared); plain REST through keystoneauth in one Python process (the
# openstack CLI costs 1-2 s per call).
keystone_setup() {
  KS_URL="$KEYSTONE_URL" KS_ADMIN_PASSWORD="$KEYSTONE_ADMIN_PASSWORD" CINDER_URL="$URL" \
    "$VENV/bin/python" - "$SERVICE_USER" "$SERVICE_PASSWORD" "$STORE_USER" "$STORE_PASSWORD" \
    "$STORE_PROJECT" <<'PY' >&2
import os
import sys
from keystoneauth1 import session
from keystoneauth1.identity import v3

svc_user, svc_password, store_user, store_password, store_project = sys.argv[1:]
url, cinder_url = os.environ["KS_URL"], os.environ["CINDER_URL"]
admin = session.Session(auth=v3.Password(
    auth_url=url, username="admin", password=os.environ["KS_ADMIN_PASSWORD"],
    user_domain_id="default", project_name="admin", project_domain_id="default"))

def find(kind, **params):
    got = admin.get(f"{url}/{kind}s", params=params).json()[f"{kind}s"]
    return got[0]["id"] if got else None

def post(kind, body):
    return admin.post(f"{url}/{kind}s", json={kind: body}).json()[kind]["id"]

def project(name):
    return find("project", name=name, domain_id="default") or post(
        "project", {"name": name, "domain_id": "default"})

def role(name):
    return find("role", name=name) or post("role", {"name": name})

def user(name, password, project_id, role_name):
    uid = find("user", name=name, domain_id="default")
    if uid:
        admin.patch(f"{url}/users/{uid}", json={"user": {
            "password": password, "enabled": True, "default_project_id": project_id}})
    else:
        uid = post("user", {"name": name, "password": password, "domain_id": "default",
                            "default_project_id": project_id})
    admin.put(f"{url}/projects/{project_id}/users/{uid}/roles/{role(role_name)}")

user(svc_user, svc_password, project("service"), "admin")
user(store_user, store_password, project(store_project), "member")

sid = find("service", type="volumev3")
if not sid:
    sid = post("service", {"name": "cinderv3", "type": "volumev3",
                           "description": "Cinder (scripts/cinder.sh)"})
want = cinder_url + "/%(project_id)s"
have = {}
for ep in admin.get(f"{url}/endpoints", params={"service_id": sid}).json()["endpoints"]:
    if ep["interface"] in have or ep["url"] != want:
        admin.delete(f"{url}/endpoints/{ep['id']}")   # this service's stale or duplicate ones
    else:
        have[ep["interface"]] = ep["id"]
for iface in ("public", "internal", "admin"):
    if iface not in have:
        admin.post(f"{url}/endpoints", json={"endpoint": {
            "service_id": sid, "interface": iface, "url": want, "region_id": "RegionOne"}})
print("keystone: users", svc_user, "and", store_user, "; volumev3 endpoint", want)
PY
}

launch() {
  local name="$1"
  PIDFILE="$DIR/run/$name.pid"
  # PYTHONWARNINGS: no EventletDeprecationWarning banner in the .out files.
  (PYTHONWARNINGS=ignore exec setsid "$VENV/bin/$name" --config-file "$CONF" </dev/null >>"$DIR/log/$name.out" 2>&1) &
  echo $! >"$PIDFILE"
}

# After the daemons are up: waits for the API, the services and the back end's stats in the
# scheduler (bounded); makes the volume type; creates, waits for and deletes a 1 GiB volume as
# the store's user.
check() {
  KS_URL="$KEYSTONE_URL" CINDER_URL="$URL" PID_DIR="$DIR/run" "$VENV/bin/python" - \
    "$SERVICE_USER" "$SERVICE_PASSWORD" "$STORE_USER" "$STORE_PASSWORD" "$STORE_PROJECT" \
    "$VOLUME_TYPE" <<'PY' >&2
import os
import sys
import time
from keystoneauth1 import exceptions, session
from keystoneauth1.identity import v3

svc_user, svc_password, store_user, store_password, store_project, vtype = sys.argv[1:]
ks, base, pid_dir = os.environ["KS_URL"], os.environ["CINDER_URL"], os.environ["PID_DIR"]

def say(msg):
    print(f"cinder: {msg}", flush=True)

def alive():
    for name in ("cinder-api", "cinder-scheduler", "cinder-volume"):
        pid = open(f"{pid_dir}/{name}.pid").read().strip()
        try:
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            st = "X"
        if st in ("Z", "X"):
            sys.exit(f"{name} (pid {pid}) exited")

def wait(what, timeout, probe, deadline=None):
    deadline = deadline or time.monotonic() + timeout
    while True:
        alive()
        try:
            got = probe()
            if got:
                return got
        except (exceptions.ConnectFailure, exceptions.ConnectTimeout,
                exceptions.ServiceUnavailable, exceptions.BadGateway,
                exceptions.InternalServerError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"{what}: not within {timeout} s")
        time.sleep(0.5)

def login(user, password, project):
    s = session.Session(auth=v3.Password(
        auth_url=ks, username=user, password=password, user_domain_id="default",
        project_name=project, project_domain_id="default"))
    return s, s.get_project_id()

svc, svc_project = login(svc_user, svc_password, "service")
store, store_project_id = login(store_user, store_password, store_project)
# One budget for the three waits: 90 s from the daemons' start.
t0 = time.monotonic()
ready_by = t0 + 90
root = base.rsplit("/", 1)[0] + "/"
wait("API on " + root, 90, lambda: svc.get(
    root, raise_exc=False, authenticated=False).status_code < 500, ready_by)
say(f"API answers ({time.monotonic() - t0:.0f} s)")
svc_url = f"{base}/{svc_project}"

def services_up():
    got = svc.get(f"{svc_url}/os-services").json()["services"]
    up = {s["binary"] for s in got if s["state"] == "up" and s["status"] == "enabled"}
    return {"cinder-scheduler", "cinder-volume"} <= up

wait("cinder-scheduler and cinder-volume up", 90, services_up, ready_by)
say(f"scheduler and volume services up ({time.monotonic() - t0:.0f} s)")

def pool_reported():
    pools = svc.get(f"{svc_url}/scheduler-stats/get_pools", params={"detail": "true"}).json()
    return [p for p in pools["pools"]
            if p.get("capabilities", {}).get("volume_backend_name") == "ceph"]

pools = wait("the ceph back end's stats in the scheduler", 90, pool_reported, ready_by)
say(f"back end reported: {pools[0]['name']} ({time.monotonic() - t0:.0f} s)")

vt = svc.post(f"{svc_url}/types", json={"volume_type": {
    "name": vtype, "os-volume-type-access:is_public": True,
    "description": "RBD volumes (scripts/cinder.sh)"}}).json()["volume_type"]
svc.post(f"{svc_url}/types/{vt['id']}/extra_specs",
         json={"extra_specs": {"volume_backend_name": "ceph"}})
# A type no back-end serves: volumes of it end in `error` (the store's failure tests).
nowhere = svc.post(f"{svc_url}/types", json={"volume_type": {
    "name": "vela-nowhere", "os-volume-type-access:is_public": True,
    "description": "no back end serves it (scripts/cinder.sh)"}}).json()["volume_type"]
svc.post(f"{svc_url}/types/{nowhere['id']}/extra_specs",
         json={"extra_specs": {"volume_backend_name": "nowhere"}})
default = svc.get(f"{svc_url}/types/default").json()["volume_type"]["name"]
assert default == vtype, f"default volume type is {default}, not {vtype}"

url = f"{base}/{store_project_id}"
vol = store.post(f"{url}/volumes", json={"volume": {
    "size": 1, "name": "vela-cinder-start-check"}}).json()["volume"]

def status():
    got = store.get(f"{url}/volumes/{vol['id']}", raise_exc=False)
    if got.status_code == 404:
        return "gone"
    v = got.json()["volume"]
    if v["status"] == "error" or v["status"] == "error_deleting":
        sys.exit(f"check volume {vol['id']}: status {v['status']}")
    return v["status"]

wait("check volume available", 60, lambda: status() == "available")
got = store.get(f"{url}/volumes/{vol['id']}").json()["volume"]
assert got["volume_type"] == vtype, got["volume_type"]
store.delete(f"{url}/volumes/{vol['id']}")
wait("check volume deleted", 60, lambda: status() == "gone")
say(f"as {store_user}: 1 GiB volume of type {vtype} created, available, deleted "
    f"({time.monotonic() - t0:.0f} s)")
PY
}

start() {
  local var
  for var in KEYSTONE_URL KEYSTONE_ADMIN_PASSWORD CEPH_CONF; do
    [ -n "${!var:-}" ] || { log "\$$var is not set (see the header of $0)"; exit 2; }
  done
  ensure_venv
  stop
  if port_in_use "$PORT"; then
    log "127.0.0.1:$PORT is already in use (another Cinder? set CINDER_PORT)"; exit 1
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"/{run,log,locks,coordination}
  trap on_start_exit EXIT

  log "database $DB, RabbitMQ vhost, Ceph pool, Keystone users and endpoints"
  mariadb -h 127.0.0.1 -P 3306 -u root -e "DROP DATABASE IF EXISTS $DB;
    CREATE DATABASE $DB CHARACTER SET utf8mb4" >&2
  fresh_pool
  write_conf "$(transport_url)"
  keystone_setup
  log "cinder-manage db sync"
  PYTHONWARNINGS=ignore "$VENV/bin/cinder-manage" --config-file "$CONF" db sync >>"$DIR/log/cinder-manage.out" 2>&1 ||
    { tail -n 30 "$DIR/log/cinder-manage.out" >&2; exit 1; }

  log "starting ${DAEMONS[*]} (API on 127.0.0.1:$PORT)"
  local name
  for name in "${DAEMONS[@]}"; do launch "$name"; done
  check

  log "ready in $SECONDS s at $URL"
  printf 'export %s=%q\n' CINDER_URL "$URL" CINDER_AUTH_URL "$KEYSTONE_URL" \
    CINDER_USER "$STORE_USER" CINDER_PASSWORD "$STORE_PASSWORD" CINDER_PROJECT "$STORE_PROJECT" \
    CINDER_VOLUME_TYPE "$VOLUME_TYPE" CINDER_RBD_POOL "$POOL" CINDER_VENV "$VENV"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
