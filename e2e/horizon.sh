#!/usr/bin/env bash
# Browser test of Horizon's image panels against Vela: PyPI's `horizon` (its own
# openstack_dashboard, with e2e/horizon/settings.py) run by Django's development server, driven
# by selenium with Debian's chromium and chromium-driver (e2e/horizon/browser.py).
#
#  1. Vela with its embedded identity as Horizon's Keystone (the admin and its password come
#     from the openrc of the first start): log in, list, create from a file (legacy upload,
#     through Horizon), create from a URL (a location on a loopback web server), filter, details,
#     edit (description, visibility shared), Update Metadata (metadefs), then the image is
#     shared with project `other` and accepted there (Horizon has no member panel: the image
#     API, as a CLI would) and `other-user` sees it in Horizon; deactivate and delete.
#     Then Horizon in `direct` upload mode: the browser uploads the file to Vela itself (CORS).
#  2. Browser sign-on (WebSSO): a real OpenID provider (scripts/oidc.sh), Vela's embedded
#     identity with its `corp` provider and e2e/oidc/mapping.json, Horizon with WEBSSO_ENABLED:
#     alice (group engineers) signs on at the provider's login page and lands in project eng,
#     lists, creates and deletes an image; bob (auditors) lands in project audit.
#  3. With KEYSTONE_URL (scripts/keystone.sh start): Vela in Keystone mode behind the real
#     Keystone, registered in its catalog; Horizon logs in at Keystone, lists, creates, deletes.
#
# A screenshot of every step goes to $VELA_ARTIFACTS/horizon (default artifacts/horizon).
# Environment: VELA_BIN, VELA_HORIZON_VENV (default .venv-horizon; made if missing),
# VELA_ARTIFACTS, KEYSTONE_* from scripts/keystone.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=e2e/lib.sh
. "$REPO/e2e/lib.sh"
VELA_BIN="${VELA_BIN:-$REPO/target/release/vela}"
case "$VELA_BIN" in /*) ;; *) VELA_BIN="$REPO/$VELA_BIN" ;; esac
VENV="${VELA_HORIZON_VENV:-$REPO/.venv-horizon}"
SHOTS="${VELA_ARTIFACTS:-$REPO/artifacts}/horizon"
HORIZON_VERSION=27.0.0
SELENIUM_VERSION=4.51.0

die() { printf 'horizon: %s\n' "$*" >&2; exit 1; }
command -v chromium >/dev/null && command -v chromedriver >/dev/null ||
  die "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vela-horizon.XXXXXX")"
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${OIDC_STARTED:-}" ] && { bash "$REPO/scripts/oidc.sh" stop >/dev/null 2>&1 || true; }
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/*.log; do
      [ -s "$f" ] && { echo "---- $(basename "$f") (last 40 lines)"; tail -n 40 "$f"; }
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

if ! "$VENV/bin/python" -c 'import openstack_dashboard, selenium' 2>/dev/null; then
  echo "# installing horizon $HORIZON_VERSION and selenium $SELENIUM_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "horizon==$HORIZON_VERSION" "selenium==$SELENIUM_VERSION" >"$WORK/pip.log" 2>&1 ||
    { cat "$WORK/pip.log"; die "pip install failed"; }
fi
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OS_' || true)
rm -rf "$SHOTS"
mkdir -p "$SHOTS"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {   # wait_for WHAT COMMAND...: up to 60 s
  local what="$1"; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up"
}
VELA_PORT="$(free_port)"
HORIZON_PORT="$(free_port)"
WEB_PORT="$(free_port)"
HORIZON="http://127.0.0.1:$HORIZON_PORT"
VELA="http://127.0.0.1:$VELA_PORT"

# The image data: a raw disk of 1 MiB (a file upload) and one served over HTTP (a location).
head -c 1048576 /dev/zero >"$WORK/disk.raw"
mkdir "$WORK/web"
head -c 2097152 /dev/zero >"$WORK/web/url.raw"
python3 -m http.server "$WEB_PORT" --bind 127.0.0.1 --directory "$WORK/web" >"$WORK/web.log" 2>&1 &
PIDS+=($!)

# start_vela NAME CONFIG: a Vela on VELA_PORT with CONFIG appended to the common settings.
start_vela() {
  cat >"$WORK/$1.toml" <<TOML
[images]
show_multiple_locations = true
[cors]
allowed_origin = ["$HORIZON"]
[import_filtering_opts]
allowed_ports = [80, 443, $WEB_PORT]
allowed_networks = ["127.0.0.1/32"]
$2
TOML
  "$VELA_BIN" --config "$WORK/$1.toml" --data-dir "$WORK/$1-data" serve --bind "127.0.0.1:$VELA_PORT" \
    >"$WORK/$1.out" 2>"$WORK/$1.log" &
  VELA_PID=$!
  PIDS+=("$VELA_PID")
  wait_for "Vela ($1)" grep -q "vela listening" "$WORK/$1.out"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# start_horizon KEYSTONE_URL UPLOAD_MODE [WEBSSO_IDP]
start_horizon() {
  (cd "$WORK" && DJANGO_SETTINGS_MODULE=settings PYTHONPATH="$REPO/e2e/horizon" \
    HORIZON_KEYSTONE_URL="$1" HORIZON_UPLOAD_MODE="$2" HORIZON_STATIC_ROOT="$WORK/static" \
    HORIZON_WEBSSO_IDP="${3:-}" \
    exec "$VENV/bin/django-admin" runserver --noreload "127.0.0.1:$HORIZON_PORT" \
    >>"$WORK/horizon.log" 2>&1) &
  HORIZON_PID=$!
  PIDS+=("$HORIZON_PID")
  wait_for "Horizon" curl -sf "$HORIZON/auth/login/"
}

browser() {
  "$VENV/bin/python" "$REPO/e2e/horizon/browser.py" --base "$HORIZON" --shots "$SHOTS" \
    --state "$WORK/state.json" --file "$WORK/disk.raw" \
    --url "http://127.0.0.1:$WEB_PORT/url.raw" "$@"
}

# token USER PASSWORD PROJECT AUTH_URL: a project-scoped token.
token() {
  curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$4/auth/tokens" -d "$(printf \
    '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"%s","domain":{"id":"default"},"password":"%s"}}},"scope":{"project":{"name":"%s","domain":{"id":"default"}}}}}' \
    "$1" "$2" "$3")" | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: *\([^[:space:]]*\).*/\1/p'
}

echo "== Horizon with Vela's embedded identity"
start_vela embedded ""
wait_for "the first-run openrc" test -s "$WORK/embedded-data/openrc"
ADMIN_PASSWORD="$(sed -n 's/^export OS_PASSWORD=//p' "$WORK/embedded-data/openrc")"
vela() { "$VELA_BIN" --config "$WORK/embedded.toml" --data-dir "$WORK/embedded-data" "$@" >>"$WORK/identity.log" 2>&1; }
vela identity project create other
VELA_IDENTITY_PASSWORD=other-pw vela identity user create other-user --project other
start_horizon "$VELA/v3" legacy

browser --user admin --password "$ADMIN_PASSWORD" \
  --steps login,list,create-file,create-url,filter,details,edit,metadata

# Share the file image with `other`, accepted there: the image API, as a CLI would do it.
NAME="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["file_image"])' "$WORK/state.json")"
IMAGE="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["images"][s["file_image"]])' "$WORK/state.json")"
OTHER="$("$VELA_BIN" --config "$WORK/embedded.toml" --data-dir "$WORK/embedded-data" identity project list 2>/dev/null | awk '$1 == "other" {print $2}')"
ADMIN_TOKEN="$(token admin "$ADMIN_PASSWORD" admin "$VELA/v3")"
OTHER_TOKEN="$(token other-user other-pw other "$VELA/v3")"
curl -sf -o /dev/null -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/json' \
  "$VELA/v2/images/$IMAGE/members" -d "{\"member\": \"$OTHER\"}" || die "adding the member failed"
curl -sf -o /dev/null -X PUT -H "X-Auth-Token: $OTHER_TOKEN" -H 'Content-Type: application/json' \
  "$VELA/v2/images/$IMAGE/members/$OTHER" -d '{"status": "accepted"}' || die "accepting failed"
echo "ok - image API: $NAME shared with project other, accepted there"

browser --user other-user --password other-pw --steps login,shared-view --expect-image "$NAME"
browser --user admin --password "$ADMIN_PASSWORD" --steps login,deactivate,delete

echo "== Horizon's direct upload (browser to Vela, CORS)"
stop_pid "$HORIZON_PID"
start_horizon "$VELA/v3" direct
browser --user admin --password "$ADMIN_PASSWORD" --steps login,create-file,delete
stop_pid "$HORIZON_PID"
stop_pid "$VELA_PID"

echo "== Horizon's browser sign-on (WebSSO) with an OpenID provider"
# The provider (scripts/oidc.sh) sends browsers back to Vela; Vela posts the token to Horizon.
export OIDC_DIR="${OIDC_DIR:-$REPO/.oidc}"
export OIDC_REDIRECT_URIS="$VELA/v3/auth/OS-FEDERATION/websso/openid/redirect"
eval "$(bash "$REPO/scripts/oidc.sh" start)"
OIDC_STARTED=1
start_vela sso "[auth.federation]
trusted_dashboard = [\"$HORIZON/auth/websso/\"]
websso_scope = \"openid profile email groups\""
sso() { "$VELA_BIN" --config "$WORK/sso.toml" --data-dir "$WORK/sso-data" "$@" >>"$WORK/identity.log" 2>&1; }
sso identity mapping create corp-map --rules "$REPO/e2e/oidc/mapping.json"
VELA_IDP_CLIENT_SECRET="$OIDC_CLIENT_SECRET" sso identity idp create corp --issuer "$OIDC_ISSUER" \
  --audience "$OIDC_AUDIENCE" --mapping corp-map --client-id "$OIDC_CLIENT_ID"
start_horizon "$VELA/v3" legacy corp
rm -f "$WORK/state.json"
browser --user alice --password alice-oidc-pw --project eng --steps sso-login,list,create-file,delete
browser --user bob --password bob-oidc-pw --project audit --steps sso-login,list
stop_pid "$HORIZON_PID"
stop_pid "$VELA_PID"
bash "$REPO/scripts/oidc.sh" stop >/dev/null 2>&1 || true
OIDC_STARTED=

if [ -n "${KEYSTONE_URL:-}" ]; then
  echo "== Horizon with the real Keystone, Vela in Keystone mode"
  start_vela keystone "$(keystone_auth_toml)"
  "$REPO/scripts/keystone.sh" endpoint "$VELA" >/dev/null 2>&1 || die "registering Vela in Keystone failed"
  rm -f "$WORK/state.json"
  start_horizon "$KEYSTONE_URL" legacy
  browser --user admin --password "$KEYSTONE_ADMIN_PASSWORD" --steps login,list,create-file,delete
else
  echo "skip - Horizon with the real Keystone: KEYSTONE_URL is not set"
fi
echo "# screenshots: $SHOTS ($(find "$SHOTS" -name '*.png' | wc -l) files)"
