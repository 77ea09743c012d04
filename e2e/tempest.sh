#!/usr/bin/env bash
# The OpenStack conformance suites against Vela: tempest's image API tests (`tempest.api.image`)
# and glance-tempest-plugin (its secure-RBAC tests, metadefs included), both from PyPI at pinned
# versions, with Vela in Keystone mode behind the real Keystone.
#
# Set-up: two Vela nodes of one deployment (one SQLite database, image directory and staging
# area, a cache each; the second is tempest's `image_remote` endpoint), secure RBAC
# (`[enforce_scope] glance = true`), dynamic credentials (tempest creates projects and users
# per test class through Keystone's admin), the image cache enabled, three stores so the
# multi-store and location tests run (`cheap`, a file store; `fast`, S3 on the Ceph from
# scripts/ceph.sh when its VELA_S3_* variables are set, else `robust`, a second file store;
# `web`, http), all four import methods, and a loopback HTTP server standing in for tempest's
# internet downloads. Concurrency 2.
#
# Results are checked against e2e/tempest-expected.txt: a test that fails and is not listed
# there fails this script, as does a listed test that passes (the list must stay true). Skips
# are printed with their reasons; README.md ("Conformance suites") explains each.
#
# Needs a Keystone from `scripts/keystone.sh start` (its KEYSTONE_* variables); starts one
# itself (and stops it) when KEYSTONE_URL is not set.
# Environment: VELA_BIN (default $REPO/target/release/vela), TEMPEST_VENV (default
# $REPO/.venv-tempest; created when missing), TEMPEST_REGEX (narrow the run; the expected list
# is then checked only for the tests that ran), TEMPEST_KEEP=1 (keep the work directory with
# Vela's and tempest's logs).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=e2e/lib.sh
. "$REPO/e2e/lib.sh"
VELA_BIN="${VELA_BIN:-$REPO/target/release/vela}"
VENV="${TEMPEST_VENV:-$REPO/.venv-tempest}"
EXPECTED="$REPO/e2e/tempest-expected.txt"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vela-tempest.XXXXXX")"
SERVER_PIDS=()
HTTP_PID=""
OWN_KEYSTONE=0

cleanup() {
  local rc=$?
  set +e
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  [ -n "$HTTP_PID" ] && kill "$HTTP_PID" 2>/dev/null && wait "$HTTP_PID" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ -s "$WORK/node1.log" ]; then
    echo "---- node1.log (last 40 lines)"; tail -n 40 "$WORK/node1.log"
  fi
  [ "$OWN_KEYSTONE" = 1 ] && "$REPO/scripts/keystone.sh" stop
  if [ "${TEMPEST_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT

if ! [ -x "$VENV/bin/tempest" ] || ! "$VENV/bin/python" -c 'import glance_tempest_plugin' 2>/dev/null; then
  echo "installing tempest and glance-tempest-plugin into $VENV"
  "$(command -v python3.11 || command -v python3)" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    tempest==47.0.0 glance-tempest-plugin==0.17.0 >&2
fi

if [ -z "${KEYSTONE_URL:-}" ]; then
  OWN_KEYSTONE=1
  ks_env="$("$REPO/scripts/keystone.sh" start)"
  eval "$ks_env"
fi
: "${KEYSTONE_SERVICE_USER:=vela}" "${KEYSTONE_SERVICE_PASSWORD:=vela-secret}"
: "${KEYSTONE_SERVICE_PROJECT:=service}" "${KEYSTONE_ADMIN_PASSWORD:=admin-secret}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
PORT2="$(free_port)"
URL2="http://127.0.0.1:$PORT2"

# tempest's web-download and location tests fetch CONF.image.http_image / http_qcow2_image
# (cirros on the internet by default): serve stand-ins on loopback, which Vela is told to reach.
HTTP_PORT="$(free_port)"
mkdir -p "$WORK/http"
head -c 1048576 /dev/urandom >"$WORK/http/image.raw"
qemu-img create -q -f qcow2 "$WORK/http/image.qcow2" 16M
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/http" "$HTTP_PORT" >"$WORK/http.log" 2>&1 &
HTTP_PID=$!
HTTP_URL="http://127.0.0.1:$HTTP_PORT"
for _ in $(seq 50); do curl -sf -o /dev/null "$HTTP_URL/image.raw" && break; sleep 0.1; done
if [ -n "${VELA_S3_ENDPOINT:-}" ]; then
  SECOND_STORE="[stores.fast]
type = \"s3\"
endpoint = \"$VELA_S3_ENDPOINT\"
region = \"${VELA_S3_REGION:-default}\"
bucket = \"$VELA_S3_BUCKET\"
access_key = \"$VELA_S3_ACCESS_KEY\"
prefix = \"tempest-$PORT/\""
  SECOND=fast
  export VELA_STORES__FAST__SECRET_KEY="$VELA_S3_SECRET_KEY"
else
  SECOND_STORE="[stores.robust]
type = \"file\"
path = \"$WORK/robust\""
  SECOND=robust
fi
cat >"$WORK/vela.toml" <<TOML
[database]
url = "sqlite://$WORK/vela.sqlite"

[store]
id = "cheap"
path = "$WORK/images"
default = "$SECOND"

$SECOND_STORE

[stores.web]
type = "http"

[images]
show_multiple_locations = true
enabled_import_methods = ["glance-direct", "web-download", "copy-image", "glance-download"]

[import]
staging_path = "$WORK/staging"

[import_filtering_opts]
allowed_ports = [80, 443, $HTTP_PORT]
allowed_networks = ["127.0.0.1"]

[cache]
enabled = true

TOML
keystone_auth_toml >>"$WORK/vela.toml"
# Two nodes of one deployment (one database, image directory and staging area; a cache each):
# tempest's alternate_image_endpoint ("image_remote") tests stage on one and import on the other.
start_node() {   # start_node NAME PORT
  "$VELA_BIN" --config "$WORK/vela.toml" --data-dir "$WORK/$1" serve --bind "127.0.0.1:$2" \
    >"$WORK/$1.out" 2>"$WORK/$1.log" &
  SERVER_PIDS+=("$!")
  for _ in $(seq 300); do grep -q "vela listening" "$WORK/$1.out" && break; sleep 0.1; done
  grep -q "vela listening" "$WORK/$1.out" || { echo "vela ($1) did not start"; exit 1; }
}
start_node node1 "$PORT"
start_node node2 "$PORT2"
"$REPO/scripts/keystone.sh" endpoint "$URL"
"$REPO/scripts/keystone.sh" endpoint "$URL2" image_remote

# tempest keeps a registry of workspaces in $HOME/.tempest: give it this run's own.
export HOME="$WORK"
(cd "$WORK" && "$VENV/bin/tempest" init ws >/dev/null 2>&1)
cat >"$WORK/ws/etc/tempest.conf" <<CONF
[DEFAULT]
log_file = $WORK/tempest.log
use_stderr = false

[auth]
use_dynamic_credentials = true
admin_username = admin
admin_password = $KEYSTONE_ADMIN_PASSWORD
admin_project_name = admin
admin_domain_name = Default
default_credentials_domain_name = Default
create_isolated_networks = false

[identity]
uri_v3 = $KEYSTONE_URL
auth_version = v3
region = RegionOne
v3_endpoint_type = public
disable_ssl_certificate_validation = true

[identity-feature-enabled]
api_v2 = false

[service_available]
glance = true
nova = false
cinder = false
neutron = false
swift = false

[image]
region = RegionOne
endpoint_type = public
image_caching_enabled = true
alternate_image_endpoint = image_remote
alternate_image_endpoint_type = public
http_image = $HTTP_URL/image.raw
http_qcow2_image = $HTTP_URL/image.qcow2
# The location tests create an image of disk_formats[0] for http_image's data; Vela inspects
# location data as it hashes it, so the first format must match the stand-in (raw bytes).
disk_formats = raw,qcow2,ami,ari,aki,vhd,vmdk,vdi,iso,vhdx
build_timeout = 60

[image-feature-enabled]
import_image = true
os_glance_reserved = true
manage_locations = true
http_store_enabled = true

[enforce_scope]
glance = true

[glance_api]
system_scope_supported = false
CONF

REGEX="${TEMPEST_REGEX:-^(tempest\.api\.image|glance_tempest_plugin\.tests\.rbac)}"
echo "tempest: $REGEX against $URL (stores cheap (file) + $SECOND + web (http), cache on, concurrency 2)"
cd "$WORK/ws"
set +e
"$VENV/bin/tempest" run --concurrency 2 --regex "$REGEX" >"$WORK/run.out" 2>&1
set -e
tail -n 12 "$WORK/run.out"
"$VENV/bin/stestr" last --subunit >"$WORK/results.subunit"
"$VENV/bin/python" "$REPO/e2e/tempest_check.py" "$WORK/results.subunit" "$EXPECTED"
