#!/usr/bin/env bash
# Runs a real OpenStack Swift "all in one" (Debian's Swift 2.30 packages: proxy, account,
# container and object servers, one replica, one device) on loopback, for the Swift store tests.
#
#   scripts/swift.sh start   fresh Swift; prints `export ...` lines on stdout (only those:
#                            `eval "$(scripts/swift.sh start)"`), progress goes to stderr
#   scripts/swift.sh stop    kills this Swift's servers
#
# Auth: tempauth (v1, user `vela:vela`, key $SWIFT_TEMPAUTH_KEY, reseller prefix TEMPAUTH_) always;
# and, when KEYSTONE_URL is set (scripts/keystone.sh start), Keystone too: the proxy validates
# tokens with keystonemiddleware's authtoken and authorises with keystoneauth (accounts
# AUTH_<project id>, operator roles admin and member), and `start` registers the proxy in
# Keystone's catalog as the object-store service, as a real deployment does.
#
# Environment: SWIFT_DIR (state, default ${TMPDIR:-/tmp}/vela-swift), SWIFT_PORT (proxy, default
# 8080); the account/container/object servers listen on 6212/6211/6210 (SWIFT_BACKEND_BASE,
# default 6210). memcached (tempauth and authtoken keep tokens there) is started on
# 127.0.0.1:11211 when nothing listens there. Packages are installed with apt-get when missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${SWIFT_DIR:-${TMPDIR:-/tmp}/vela-swift}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
PORT="${SWIFT_PORT:-8080}"
BASE="${SWIFT_BACKEND_BASE:-6210}"
OBJ_PORT=$BASE
CONT_PORT=$((BASE + 1))
ACCT_PORT=$((BASE + 2))
TEMPAUTH_KEY=velaswifttempauth
URL="http://127.0.0.1:$PORT"

log() { printf 'swift: [%3ss] %s\n' "$SECONDS" "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_packages() {
  local missing=0 bin
  for bin in swift-proxy-server swift-object-server swift-container-server swift-account-server \
    swift-ring-builder memcached; do
    command -v "$bin" >/dev/null 2>&1 || missing=1
  done
  /usr/bin/python3 -c 'import keystonemiddleware' 2>/dev/null || missing=1
  [ "$missing" = 0 ] && return 0
  local pkgs=(swift swift-proxy swift-object swift-container swift-account memcached
    python3-keystonemiddleware)
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}")
  log "installing ${pkgs[*]}"
  if ! as_root "${install[@]}" >&2; then
    log "apt-get install failed; apt-get update and retry"
    as_root apt-get update -qq >&2
    as_root "${install[@]}" >&2
  fi
}

# Pids of the Swift servers started with this state dir's configs.
our_pids() {
  pgrep -f "swift-[a-z]+-server $DIR/etc/" || true
}

stop() {
  local pids
  pids="$(our_pids)"
  [ -z "$pids" ] && return 0
  # shellcheck disable=SC2086
  kill $pids 2>/dev/null || true
  for _ in $(seq 30); do
    [ -z "$(our_pids)" ] && return 0
    sleep 0.1
  done
  # shellcheck disable=SC2046
  kill -KILL $(our_pids) 2>/dev/null || true
}

server_conf() { # name port
  cat >"$DIR/etc/$1-server.conf" <<CONF
[DEFAULT]
devices = $DIR/srv
mount_check = false
bind_ip = 127.0.0.1
bind_port = $2
workers = 1
swift_dir = $DIR/etc
log_name = $1-server

[pipeline:main]
pipeline = $1-server

[app:$1-server]
use = egg:swift#$1
CONF
}

proxy_conf() {
  # slo: static large objects (Vela's segmented uploads); keystoneauth must come before
  # tempauth, which otherwise refuses the requests it does not own.
  local auth="tempauth"
  [ -n "${KEYSTONE_URL:-}" ] && auth="authtoken keystoneauth tempauth"
  local pipeline="catch_errors gatekeeper proxy-logging cache $auth copy slo dlo proxy-logging proxy-server"
  cat >"$DIR/etc/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PORT
workers = 1
swift_dir = $DIR/etc
log_name = proxy-server

[pipeline:main]
pipeline = $pipeline

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:11211

[filter:tempauth]
use = egg:swift#tempauth
reseller_prefix = TEMPAUTH
user_vela_vela = $TEMPAUTH_KEY .admin

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = ${KEYSTONE_URL:-}
auth_url = ${KEYSTONE_URL:-}
auth_type = password
username = ${KEYSTONE_SERVICE_USER:-}
password = ${KEYSTONE_SERVICE_PASSWORD:-}
project_name = service
user_domain_id = default
project_domain_id = default
delay_auth_decision = true
memcached_servers = 127.0.0.1:11211

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
CONF
}

# Registers the proxy as the object-store service in Keystone's catalog (idempotent).
register_in_keystone() {
  local venv="${KEYSTONE_VENV:-$REPO/.venv-keystone}"
  KS_URL="$KEYSTONE_URL" KS_ADMIN_PASSWORD="${KEYSTONE_ADMIN_PASSWORD:-admin-secret}" \
    SWIFT_URL="$URL" "$venv/bin/python" - <<'PY' >&2
import os
from keystoneauth1 import session
from keystoneauth1.identity import v3

url = os.environ["KS_URL"]
admin = session.Session(auth=v3.Password(
    auth_url=url, username="admin", password=os.environ["KS_ADMIN_PASSWORD"],
    user_domain_id="default", project_name="admin", project_domain_id="default"))
services = admin.get(f"{url}/services?type=object-store").json()["services"]
if services:
    sid = services[0]["id"]
else:
    sid = admin.post(f"{url}/services", json={"service": {
        "type": "object-store", "name": "swift"}}).json()["service"]["id"]
have = {e["interface"] for e in admin.get(f"{url}/endpoints?service_id={sid}").json()["endpoints"]}
for interface in ("public", "internal", "admin"):
    if interface not in have:
        admin.post(f"{url}/endpoints", json={"endpoint": {
            "service_id": sid, "interface": interface, "region_id": "RegionOne",
            "url": os.environ["SWIFT_URL"] + "/v1/AUTH_%(project_id)s"}})
PY
}

start() {
  ensure_packages
  stop
  if curl -s -o /dev/null --max-time 2 "$URL/"; then
    log "127.0.0.1:$PORT is already in use (set SWIFT_PORT)"; exit 1
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR/etc" "$DIR/srv/sdb1" "$DIR/run" "$DIR/log"
  trap 'rc=$?; [ "$rc" = 0 ] || { log "start failed"; tail -n 30 "$DIR"/log/*.log >&2 || true; stop; }' EXIT

  if (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null; then
    # The proxy caches account and container existence there: a previous Swift's entries
    # would make this fresh one skip creating its account.
    printf 'flush_all\r\nquit\r\n' | timeout 5 bash -c 'cat >/dev/tcp/127.0.0.1/11211' || true
  else
    log "starting memcached on 127.0.0.1:11211"
    memcached -u "$(id -un)" -l 127.0.0.1 -p 11211 -d
  fi

  cat >"$DIR/etc/swift.conf" <<CONF
[swift-hash]
swift_hash_path_prefix = vela-test-prefix
swift_hash_path_suffix = vela-test-suffix

[storage-policy:0]
name = Policy-0
default = yes
CONF
  server_conf object "$OBJ_PORT"
  server_conf container "$CONT_PORT"
  server_conf account "$ACCT_PORT"
  proxy_conf
  local kind port
  for kind in object container account; do
    case $kind in object) port=$OBJ_PORT ;; container) port=$CONT_PORT ;; account) port=$ACCT_PORT ;; esac
    (cd "$DIR/etc" &&
      swift-ring-builder $kind.builder create 8 1 1 >/dev/null &&
      swift-ring-builder $kind.builder add "r1z1-127.0.0.1:$port/sdb1" 100 >/dev/null &&
      swift-ring-builder $kind.builder rebalance >/dev/null)
  done
  # The servers drop privileges to `user` (default swift): run them as whoever runs this.
  local user
  user="$(id -un)"
  for f in "$DIR"/etc/*-server.conf; do sed -i "s/^\[DEFAULT\]$/[DEFAULT]\nuser = $user/" "$f"; done

  for kind in object container account proxy; do
    # -v: log to the console (Swift logs to syslog otherwise).
    nohup "swift-$kind-server" "$DIR/etc/$kind-server.conf" -v >"$DIR/log/$kind.log" 2>&1 &
  done
  [ -n "${KEYSTONE_URL:-}" ] && register_in_keystone

  log "waiting for the proxy on $URL"
  local token=""
  for _ in $(seq 300); do
    token="$(curl -s -o /dev/null -D - -H "X-Auth-User: vela:vela" -H "X-Auth-Key: $TEMPAUTH_KEY" \
      "$URL/auth/v1.0" 2>/dev/null | tr -d '\r' | sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p')" || true
    [ -n "$token" ] && break
    sleep 0.1
  done
  [ -n "$token" ] || { log "no tempauth token from $URL/auth/v1.0"; exit 1; }
  # One write through the whole chain (proxy, account autocreate, container, object).
  local storage
  storage="$(curl -s -o /dev/null -D - -H "X-Auth-User: vela:vela" -H "X-Auth-Key: $TEMPAUTH_KEY" \
    "$URL/auth/v1.0" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]torage-[Uu]rl: //p')"
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "X-Auth-Token: $token" "$storage/vela-probe")"
  case "$code" in 201 | 202) ;; *) log "container PUT answered $code"; exit 1 ;; esac
  log "ready at $URL"
  cat <<ENV
export VELA_OS_SWIFT_AUTH_URL=$URL/auth/v1.0
export VELA_OS_SWIFT_USER=vela:vela
export VELA_OS_SWIFT_KEY=$TEMPAUTH_KEY
export VELA_OS_SWIFT_KEYSTONE=$([ -n "${KEYSTONE_URL:-}" ] && echo 1 || echo 0)
ENV
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
