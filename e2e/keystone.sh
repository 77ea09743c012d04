#!/usr/bin/env bash
# Keystone-mode interop: the real OpenStack CLI authenticates with a password at a real
# Keystone, finds Vela in Keystone's catalog, and creates, lists, downloads and deletes an image,
# and imports one (`openstack image create --import`); Vela validates each token with Keystone.
#
# Needs a Keystone from `scripts/keystone.sh start` (its exported KEYSTONE_* variables); starts
# one itself (and stops it) when KEYSTONE_URL is not set.
# Environment: VELA_BIN (default $REPO/target/release/vela).
# Output: "ok - ..." / "not ok - ..." per step, then "N passed, M failed".
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=e2e/lib.sh
. "$REPO/e2e/lib.sh"
VELA_BIN="${VELA_BIN:-$REPO/target/release/vela}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vela-ks-e2e.XXXXXX")"
SERVER_PID=""
OWN_KEYSTONE=0

cleanup() {
  local rc=$?
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ -s "$WORK/server.log" ]; then
    echo "---- server.log (last 50 lines)"; tail -n 50 "$WORK/server.log"
  fi
  [ "$OWN_KEYSTONE" = 1 ] && "$REPO/scripts/keystone.sh" stop
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

if [ -z "${KEYSTONE_URL:-}" ]; then
  eval "$("$REPO/scripts/keystone.sh" start)"
  OWN_KEYSTONE=1
fi
OPENSTACK="${KEYSTONE_VENV:-$REPO/.venv-keystone}/bin/openstack"
: "${KEYSTONE_SERVICE_USER:=vela}" "${KEYSTONE_SERVICE_PASSWORD:=vela-secret}" "${KEYSTONE_SERVICE_PROJECT:=service}"
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OS_' || true)

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
keystone_auth_toml >"$WORK/vela.toml"
"$VELA_BIN" --config "$WORK/vela.toml" --data-dir "$WORK/data" serve --bind "127.0.0.1:$PORT" \
  >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 300); do grep -q "vela listening" "$WORK/server.out" && break; sleep 0.1; done
grep -q "vela listening" "$WORK/server.out" || { echo "vela did not start"; exit 1; }
"$REPO/scripts/keystone.sh" endpoint "$URL"

as() {   # as USER PROJECT ARGS...: the openstack CLI logged in at Keystone
  local user="$1" project="$2"; shift 2
  "$OPENSTACK" --os-auth-url "$KEYSTONE_URL" --os-identity-api-version 3 \
    --os-username "$user" --os-password secret --os-project-name "$project" \
    --os-user-domain-name Default --os-project-domain-name Default --os-region-name RegionOne \
    "$@" </dev/null
}
PASS=0 FAIL=0
step() {
  local label="$1"; shift
  if "$@" >"$WORK/step.out" 2>&1; then PASS=$((PASS + 1)); echo "ok - $label"
  else FAIL=$((FAIL + 1)); echo "not ok - $label"; sed 's/^/#   /' "$WORK/step.out" | tail -n 20; fi
}

head -c 2097152 /dev/urandom >"$WORK/image.bin"
ID=""
create() {
  ID="$(as alpha-member alpha image create -f value -c id --disk-format raw --container-format bare \
    --file "$WORK/image.bin" "ks-e2e-$$")"
  [ -n "$ID" ]
}
listed() { as alpha-member alpha image list -f value -c ID | grep -x "$ID" >/dev/null; }
saved() { as alpha-member alpha image save --file "$WORK/back.bin" "$ID" && cmp "$WORK/image.bin" "$WORK/back.bin"; }
reader_reads() { as alpha-reader alpha image show -f value -c id "$ID" | grep -x "$ID" >/dev/null; }
refused() {   # refused PATTERN CMD...: CMD fails, saying PATTERN
  local pattern="$1"; shift
  if "$@" >"$WORK/refused.out" 2>&1; then echo "unexpectedly succeeded"; return 1; fi
  grep -Ei "$pattern" "$WORK/refused.out" >/dev/null || { tail -n 5 "$WORK/refused.out"; return 1; }
}
reader_cannot_create() { refused '403|forbidden' as alpha-reader alpha image create "ks-e2e-reader-$$"; }
other_project_blind() { refused 'no image|not found|404' as beta-member beta image show "$ID"; }
deleted() { as alpha-member alpha image delete "$ID" && ! as alpha-member alpha image show "$ID"; }
imported() {   # image import (glance-direct: stage, then import) as a Keystone user
  local id status="" deadline=$((SECONDS + 60))
  id="$(as alpha-member alpha image create -f value -c id --import --disk-format raw \
    --container-format bare --file "$WORK/image.bin" "ks-e2e-import-$$")"
  [ -n "$id" ] || return 1
  while [ "$SECONDS" -lt "$deadline" ]; do
    status="$(as alpha-member alpha image show -f value -c status "$id")" || return 1
    [ "$status" = active ] && break
    sleep 0.5
  done
  [ "$status" = active ] || { echo "image $id is $status after 60 s"; return 1; }
  as alpha-member alpha image save --file "$WORK/import.bin" "$id" &&
    cmp "$WORK/image.bin" "$WORK/import.bin" && as alpha-member alpha image delete "$id"
}

step "keystone: member creates an image (upload)" create
step "keystone: member lists it" listed
step "keystone: member downloads the same bytes" saved
step "keystone: reader of the project shows it" reader_reads
step "keystone: reader may not create" reader_cannot_create
step "keystone: another project does not see it" other_project_blind
step "keystone: member deletes it" deleted
step "keystone: member imports an image (glance-direct), downloads the same bytes" imported
printf '%d passed, %d failed\n' "$PASS" "$FAIL"
[ "$FAIL" -eq 0 ]
