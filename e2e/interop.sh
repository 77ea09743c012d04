#!/usr/bin/env bash
# Client interop test: drives the real OpenStack CLIs (`openstack image ...` from
# python-openstackclient and `glance ...` from python-glanceclient) against Vela through a full
# image life cycle. The server it starts runs the embedded identity service: the CLIs log in
# with a user name and password at $URL/v3 (Keystone v3 password auth), as against a cloud.
#
# Environment:
#   VELA_URL             use this already-running server (e.g. http://127.0.0.1:9292) without
#                        authentication (noauth; e.g. a Glance without Keystone); otherwise
#                        "$VELA_BIN serve" is started (embedded identity, a user bootstrapped).
#   VELA_BIN             server binary (default: $REPO/target/release/vela)
#   VELA_E2E_VENV        venv holding the CLIs (default: $REPO/.venv-e2e; created if missing)
#   VELA_E2E_SIZE        test image size in bytes (default: 3 MiB + 4321)
#   VELA_E2E_KEEP=1      keep the temporary work dir (CLI outputs, server log)
#   VELA_E2E_CLI_TIMEOUT seconds allowed per CLI call (default: 180)
#
# Output: one "ok - <cli>: <step>" / "not ok - ..." line per step, then "N passed, M failed".
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E_DIR="$REPO/e2e"
VENV="${VELA_E2E_VENV:-$REPO/.venv-e2e}"
VELA_BIN="${VELA_BIN:-$REPO/target/release/vela}"
CLI_TIMEOUT="${VELA_E2E_CLI_TIMEOUT:-180}"
DATA_SIZE="${VELA_E2E_SIZE:-$((3 * 1024 * 1024 + 4321))}"

die() { printf 'interop: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- work dir and cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vela-e2e.XXXXXX")"
TMPDIR_DATA="$WORK/data"
CLI_HOME="$WORK/home"          # fresh HOME for the CLIs: no stale glanceclient schema cache
SERVER_PID=""
SERVER_OUT="$WORK/server.out"
SERVER_LOG="$WORK/server.log"
DIAG="$WORK/diag"
mkdir -p "$TMPDIR_DATA" "$CLI_HOME"

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT
  stop_server
  if [ "$rc" -ne 0 ]; then
    for f in "$SERVER_OUT" "$SERVER_LOG"; do
      if [ -s "$f" ]; then
        printf -- '---- %s (last 200 lines)\n' "$(basename "$f")"
        tail -n 200 "$f"
      fi
    done
  fi
  if [ "${VELA_E2E_KEEP:-0}" = 1 ]; then
    printf '# work dir kept: %s\n' "$WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- CLI venv
ensure_venv() {
  if [ -x "$VENV/bin/openstack" ] && [ -x "$VENV/bin/glance" ] &&
     "$VENV/bin/python" -c 'import openstackclient, glanceclient' >/dev/null 2>&1; then
    return 0
  fi
  local py=""
  for p in python3.11 python3; do
    if command -v "$p" >/dev/null 2>&1; then py="$p"; break; fi
  done
  [ -n "$py" ] || die "no python3 found"
  if [ ! -x "$VENV/bin/python" ]; then
    "$py" -m venv "$VENV" || die "cannot create venv $VENV"
  fi
  echo "# installing python-openstackclient python-glanceclient into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    python-openstackclient python-glanceclient >"$WORK/pip.log" 2>&1 ||
    { cat "$WORK/pip.log" >&2; die "pip install failed"; }
}
ensure_venv
PY="$VENV/bin/python"

# Keep the caller's OpenStack settings (OS_CLOUD, OS_AUTH_URL, OS_TOKEN, ...) out of the CLIs.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OS_' || true)

# ---------------------------------------------------------------- target server
if [ -n "${VELA_URL:-}" ]; then
  URL="${VELA_URL%/}"
else
  [ -x "$VELA_BIN" ] || die "server binary not found: $VELA_BIN (build it: cargo build --release, or set VELA_BIN / VELA_URL)"
  # Embedded identity: an admin, and the user the CLIs log in as (member of project e2e).
  export VELA_AUTH__MODE=embedded
  E2E_PASSWORD="pw-$RANDOM-$RANDOM"
  VELA_IDENTITY_PASSWORD="admin-$E2E_PASSWORD" "$VELA_BIN" --data-dir "$TMPDIR_DATA" identity bootstrap >"$WORK/bootstrap.log" 2>&1 ||
    { cat "$WORK/bootstrap.log" >&2; die "identity bootstrap failed"; }
  "$VELA_BIN" --data-dir "$TMPDIR_DATA" identity project create e2e >>"$WORK/bootstrap.log" 2>&1 &&
    VELA_IDENTITY_PASSWORD="$E2E_PASSWORD" "$VELA_BIN" --data-dir "$TMPDIR_DATA" identity user create e2e-user --project e2e >>"$WORK/bootstrap.log" 2>&1 ||
    { cat "$WORK/bootstrap.log" >&2; die "creating the e2e user failed"; }
  "$VELA_BIN" serve --bind 127.0.0.1:0 --data-dir "$TMPDIR_DATA" >"$SERVER_OUT" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  URL=""
  for _ in $(seq 1 300); do   # 30 s
    URL="$(sed -n 's/^vela listening on \(http[^[:space:]]*\).*$/\1/p' "$SERVER_OUT" | head -n 1)"
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited before it was ready"
    sleep 0.1
  done
  [ -n "$URL" ] || die "server did not print 'vela listening on http://...' within 30 s"
  URL="${URL%/}"
fi
echo "# target: $URL"
echo "# clients: $("$VENV/bin/openstack" --version 2>&1 | head -n 1), glance $("$VENV/bin/glance" --version 2>&1 | head -n 1)"

# ---------------------------------------------------------------- test data
DATA="$WORK/image.bin"
{
  printf 'VELA-E2E raw test image\n'     # fixed, harmless header: never looks like qcow2/vmdk/...
  head -c "$((DATA_SIZE - 24))" /dev/urandom
} >"$DATA"
DATA_SIZE="$(wc -c <"$DATA" | tr -d ' ')"
DATA_MD5="$(md5sum "$DATA" | cut -d' ' -f1)"
RUN_ID="$$-$RANDOM"
TAG="vela-e2e-tag"

# ---------------------------------------------------------------- step machinery
PASS=0
FAIL=0

note() { printf '%s\n' "$*" >>"$DIAG"; }

# step LABEL FUNCTION [ARGS...]: run one check, print ok/not ok (+ diagnostics) and count it.
step() {
  local label="$1"; shift
  : >"$DIAG"
  if "$@"; then
    PASS=$((PASS + 1))
    printf 'ok - %s\n' "$label"
  else
    FAIL=$((FAIL + 1))
    printf 'not ok - %s\n' "$label"
    sed 's/^/#   /' "$DIAG"
  fi
}

# run OUT CMD...: run a CLI command (fresh HOME, timeout), stdout -> OUT, stderr -> OUT.err.
run() {
  local out="$1"; shift
  local rc=0
  env HOME="$CLI_HOME" timeout "$CLI_TIMEOUT" "$@" >"$out" 2>"$out.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    note "command failed (exit $rc): $*"
    note "stdout:"; sed 's/^/  /' "$out" | tail -n 20 >>"$DIAG"
    note "stderr:"; sed 's/^/  /' "$out.err" | tail -n 30 >>"$DIAG"
  fi
  return "$rc"
}

# run_fails OUT CMD...: the command must exit non-zero (used only for "show after delete").
run_fails() {
  local out="$1"; shift
  local rc=0
  env HOME="$CLI_HOME" timeout "$CLI_TIMEOUT" "$@" >"$out" 2>"$out.err" || rc=$?
  if [ "$rc" -eq 0 ]; then
    note "command unexpectedly succeeded: $*"
    note "stdout:"; sed 's/^/  /' "$out" | tail -n 20 >>"$DIAG"
    return 1
  fi
  if [ "$rc" -eq 124 ]; then
    note "command timed out: $*"
    return 1
  fi
  return 0
}

expect_eq() {   # expect_eq WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] && return 0
  note "$1: expected '$3', got '$2'"
  return 1
}

expect_line() {   # expect_line WHAT NEEDLE TEXT: TEXT has a line equal to NEEDLE
  grep -qxF -- "$2" <<<"$3" && return 0
  note "$1: '$2' not found in: $(tr '\n' ' ' <<<"$3")"
  return 1
}

expect_no_line() {   # expect_no_line WHAT NEEDLE TEXT
  grep -qxF -- "$2" <<<"$3" || return 0
  note "$1: '$2' unexpectedly present"
  return 1
}

expect_not_found_msg() {   # expect_not_found_msg FILE: the CLI said "not found"
  if grep -qiE 'not found|no image|could not find|404' "$1" "$1.err"; then return 0; fi
  note "expected a not-found error, got: $(tail -n 5 "$1.err" | tr '\n' ' ')"
  return 1
}

expect_download() {   # expect_download FILE
  if ! cmp -s "$DATA" "$1"; then
    note "downloaded data differs from the upload ($(wc -c <"$1" | tr -d ' ') vs $DATA_SIZE bytes)"
    return 1
  fi
  expect_eq "md5 of download" "$(md5sum "$1" | cut -d' ' -f1)" "$DATA_MD5"
}

need_id() {
  [ -n "$1" ] && return 0
  note "no image id (create failed)"
  return 1
}

jget() { "$PY" "$E2E_DIR/cliparse.py" json-get "$@"; }
jcol() { "$PY" "$E2E_DIR/cliparse.py" json-col "$@"; }
tget() { "$PY" "$E2E_DIR/cliparse.py" table-get "$@"; }
tcol() { "$PY" "$E2E_DIR/cliparse.py" table-col "$@"; }

# ---------------------------------------------------------------- authentication
if [ -n "${E2E_PASSWORD:-}" ]; then
  ks_args() {   # ks_args PASSWORD: Keystone v3 password-auth options for user e2e-user
    printf '%s\n' --os-auth-url "$URL/v3" --os-username e2e-user --os-password "$1" \
      --os-project-name e2e --os-user-domain-name Default --os-project-domain-name Default
  }
  mapfile -t KS_ARGS < <(ks_args "$E2E_PASSWORD")
  OSC=("$VENV/bin/openstack" --os-identity-api-version 3 "${KS_ARGS[@]}")
  GLC=("$VENV/bin/glance" "${KS_ARGS[@]}")
else
  OSC=("$VENV/bin/openstack" --os-auth-type none --os-endpoint "$URL")
  GLC=("$VENV/bin/glance" --os-image-url "$URL" --os-auth-token x)
fi

# Password auth through the embedded identity service: a token, refusal of a wrong password,
# and a revoked token refused by the image API.
id_token() {
  run "$WORK/token" "${OSC[@]}" token issue -f value -c id || return 1
  TOKEN="$(head -n 1 "$WORK/token")"
  [ -n "$TOKEN" ] || { note "no token printed"; return 1; }
  run "$WORK/tlist" "$VENV/bin/openstack" --os-auth-type token --os-auth-url "$URL/v3" \
    --os-token "$TOKEN" --os-project-name e2e --os-project-domain-name Default image list -f value
}
id_wrong_password() {
  local bad
  mapfile -t bad < <(ks_args "not-$E2E_PASSWORD")
  run_fails "$WORK/badpw" "$VENV/bin/openstack" "${bad[@]}" image list || return 1
  grep -qiE '401|authenticat' "$WORK/badpw.err" && return 0
  note "expected an authentication error, got: $(tail -n 3 "$WORK/badpw.err" | tr '\n' ' ')"
  return 1
}
id_revoke() {
  [ -n "${TOKEN:-}" ] || { note "no token from the earlier step"; return 1; }
  run "$WORK/revoke" "${OSC[@]}" token revoke "$TOKEN" || return 1
  run_fails "$WORK/revoked" "$VENV/bin/openstack" --os-auth-type token --os-auth-url "$URL/v3" \
    --os-token "$TOKEN" --os-project-name e2e --os-project-domain-name Default image list
}
if [ -n "${E2E_PASSWORD:-}" ]; then
  step "identity: password token, used by openstack image list" id_token
  step "identity: wrong password refused"                      id_wrong_password
  step "identity: revoked token refused"                       id_revoke
fi

# ================================================================ openstack CLI
OS_NAME="vela-e2e-osc-$RUN_ID"
OS_PROP="osc-$RUN_ID"
OS_ID=""
O="$WORK/osc"

os_show() {   # os_show: image show -f json into $O.show
  run "$O.show" "${OSC[@]}" image show -f json "$OS_ID"
}

os_create() {
  run "$O.create" "${OSC[@]}" image create -f json --disk-format raw --container-format bare \
    --property "vela_e2e=$OS_PROP" --file "$DATA" "$OS_NAME" || return 1
  OS_ID="$(jget "$O.create" id)" || { note "no id in create output"; return 1; }
  need_id "$OS_ID" && expect_eq name "$(jget "$O.create" name)" "$OS_NAME"
}

os_list() {
  need_id "$OS_ID" || return 1
  run "$O.list1" "${OSC[@]}" image list -f json --name "$OS_NAME" || return 1
  expect_line "list --name" "$OS_ID" "$(jcol "$O.list1" ID)" || return 1
  run "$O.list2" "${OSC[@]}" image list -f json --property "vela_e2e=$OS_PROP" || return 1
  expect_line "list --property" "$OS_ID" "$(jcol "$O.list2" ID)"
}

os_show_active() {
  need_id "$OS_ID" && os_show || return 1
  local ok=0
  expect_eq status "$(jget "$O.show" status)" active || ok=1
  expect_eq size "$(jget "$O.show" size)" "$DATA_SIZE" || ok=1
  expect_eq checksum "$(jget "$O.show" checksum)" "$DATA_MD5" || ok=1
  expect_eq disk_format "$(jget "$O.show" disk_format)" raw || ok=1
  expect_eq container_format "$(jget "$O.show" container_format)" bare || ok=1
  expect_eq "property vela_e2e" "$(jget "$O.show" properties.vela_e2e)" "$OS_PROP" || ok=1
  return "$ok"
}

os_set_property() {
  need_id "$OS_ID" || return 1
  run "$O.set" "${OSC[@]}" image set --property "vela_e2e_extra=extra-$RUN_ID" "$OS_ID" || return 1
  os_show || return 1
  expect_eq "property vela_e2e_extra" "$(jget "$O.show" properties.vela_e2e_extra)" "extra-$RUN_ID" &&
    expect_eq "property vela_e2e" "$(jget "$O.show" properties.vela_e2e)" "$OS_PROP"
}

os_tag_add() {
  need_id "$OS_ID" || return 1
  run "$O.tag" "${OSC[@]}" image set --tag "$TAG" "$OS_ID" || return 1
  os_show || return 1
  expect_line tags "$TAG" "$(jget "$O.show" tags | "$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)))')"
}

os_tag_remove() {
  need_id "$OS_ID" || return 1
  run "$O.untag" "${OSC[@]}" image unset --tag "$TAG" "$OS_ID" || return 1
  os_show || return 1
  expect_no_line tags "$TAG" "$(jget "$O.show" tags | "$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)))')"
}

os_download() {
  need_id "$OS_ID" || return 1
  run "$O.save" "${OSC[@]}" image save --file "$WORK/osc-download.bin" "$OS_ID" || return 1
  expect_download "$WORK/osc-download.bin"
}

os_deactivate() {
  need_id "$OS_ID" || return 1
  run "$O.deact" "${OSC[@]}" image set --deactivate "$OS_ID" || return 1
  os_show && expect_eq status "$(jget "$O.show" status)" deactivated
}

os_reactivate() {
  need_id "$OS_ID" || return 1
  run "$O.react" "${OSC[@]}" image set --activate "$OS_ID" || return 1
  os_show && expect_eq status "$(jget "$O.show" status)" active
}

os_delete() {
  need_id "$OS_ID" || return 1
  run "$O.delete" "${OSC[@]}" image delete "$OS_ID" || return 1
  run_fails "$O.gone" "${OSC[@]}" image show -f json "$OS_ID" || return 1
  expect_not_found_msg "$O.gone" || return 1
  run "$O.list3" "${OSC[@]}" image list -f json --name "$OS_NAME" || return 1
  expect_no_line "list after delete" "$OS_ID" "$(jcol "$O.list3" ID)"
}

step "openstack: create"       os_create
step "openstack: list"         os_list
step "openstack: show"         os_show_active
step "openstack: set property" os_set_property
step "openstack: add tag"      os_tag_add
step "openstack: remove tag"   os_tag_remove
step "openstack: download"     os_download
step "openstack: deactivate"   os_deactivate
step "openstack: reactivate"   os_reactivate
step "openstack: delete"       os_delete

# ================================================================ glance CLI
GL_NAME="vela-e2e-glance-$RUN_ID"
GL_PROP="glance-$RUN_ID"
GL_ID=""
G="$WORK/glance"

gl_show() {
  run "$G.show" "${GLC[@]}" image-show "$GL_ID"
}

gl_create() {
  run "$G.create" "${GLC[@]}" image-create --name "$GL_NAME" --disk-format raw \
    --container-format bare --property "vela_e2e=$GL_PROP" --file "$DATA" || return 1
  GL_ID="$(tget "$G.create" id)" || { note "no id in image-create output"; return 1; }
  need_id "$GL_ID" && expect_eq name "$(tget "$G.create" name)" "$GL_NAME"
}

gl_list() {
  need_id "$GL_ID" || return 1
  run "$G.list1" "${GLC[@]}" image-list --property-filter "vela_e2e=$GL_PROP" || return 1
  expect_line "image-list --property-filter vela_e2e" "$GL_ID" "$(tcol "$G.list1" ID)" || return 1
  run "$G.list2" "${GLC[@]}" image-list --property-filter "name=$GL_NAME" || return 1
  expect_line "image-list --property-filter name" "$GL_ID" "$(tcol "$G.list2" ID)"
}

gl_show_active() {
  need_id "$GL_ID" && gl_show || return 1
  local ok=0
  expect_eq status "$(tget "$G.show" status)" active || ok=1
  expect_eq size "$(tget "$G.show" size)" "$DATA_SIZE" || ok=1
  expect_eq checksum "$(tget "$G.show" checksum)" "$DATA_MD5" || ok=1
  expect_eq disk_format "$(tget "$G.show" disk_format)" raw || ok=1
  expect_eq container_format "$(tget "$G.show" container_format)" bare || ok=1
  expect_eq "property vela_e2e" "$(tget "$G.show" vela_e2e)" "$GL_PROP" || ok=1
  return "$ok"
}

gl_set_property() {
  need_id "$GL_ID" || return 1
  run "$G.update" "${GLC[@]}" image-update --property "vela_e2e_extra=extra-$RUN_ID" "$GL_ID" || return 1
  gl_show || return 1
  expect_eq "property vela_e2e_extra" "$(tget "$G.show" vela_e2e_extra)" "extra-$RUN_ID" &&
    expect_eq "property vela_e2e" "$(tget "$G.show" vela_e2e)" "$GL_PROP"
}

gl_tags() {   # tags of the last show, one per line (glance prints a JSON list: ["a", "b"])
  tget "$G.show" tags | "$PY" -c '
import json, sys
raw = sys.stdin.read().strip()
try:
    tags = json.loads(raw)
except ValueError:
    tags = [t.strip().strip("\x27\"") for t in raw.strip("[]").split(",") if t.strip()]
print("\n".join(tags))'
}

gl_tag_add() {
  need_id "$GL_ID" || return 1
  run "$G.tag" "${GLC[@]}" image-tag-update "$GL_ID" "$TAG" || return 1
  gl_show || return 1
  expect_line tags "$TAG" "$(gl_tags)"
}

gl_tag_remove() {
  need_id "$GL_ID" || return 1
  run "$G.untag" "${GLC[@]}" image-tag-delete "$GL_ID" "$TAG" || return 1
  gl_show || return 1
  expect_no_line tags "$TAG" "$(gl_tags)"
}

gl_download() {
  need_id "$GL_ID" || return 1
  run "$G.download" "${GLC[@]}" image-download --file "$WORK/glance-download.bin" "$GL_ID" || return 1
  expect_download "$WORK/glance-download.bin"
}

gl_deactivate() {
  need_id "$GL_ID" || return 1
  run "$G.deact" "${GLC[@]}" image-deactivate "$GL_ID" || return 1
  gl_show && expect_eq status "$(tget "$G.show" status)" deactivated
}

gl_reactivate() {
  need_id "$GL_ID" || return 1
  run "$G.react" "${GLC[@]}" image-reactivate "$GL_ID" || return 1
  gl_show && expect_eq status "$(tget "$G.show" status)" active
}

gl_delete() {
  need_id "$GL_ID" || return 1
  run "$G.delete" "${GLC[@]}" image-delete "$GL_ID" || return 1
  run_fails "$G.gone" "${GLC[@]}" image-show "$GL_ID" || return 1
  expect_not_found_msg "$G.gone" || return 1
  run "$G.list3" "${GLC[@]}" image-list --property-filter "vela_e2e=$GL_PROP" || return 1
  expect_no_line "image-list after delete" "$GL_ID" "$(tcol "$G.list3" ID)"
}

step "glance: create"       gl_create
step "glance: list"         gl_list
step "glance: show"         gl_show_active
step "glance: set property" gl_set_property
step "glance: add tag"      gl_tag_add
step "glance: remove tag"   gl_tag_remove
step "glance: download"     gl_download
step "glance: deactivate"   gl_deactivate
step "glance: reactivate"   gl_reactivate
step "glance: delete"       gl_delete

# ---------------------------------------------------------------- summary
printf '%d passed, %d failed\n' "$PASS" "$FAIL"
[ "$FAIL" -eq 0 ]
