#!/usr/bin/env bash
# Client interop test: drives the real OpenStack CLIs (`openstack image ...` from
# python-openstackclient and `glance ...` from python-glanceclient) against Vela through a full
# image life cycle, then through interoperable image import (glance-direct, web-download from a
# local web server, copy-image to S3), the refusal of a hostile qcow2, metadefs and the image
# cache (`glance cache-*`, `openstack cached image …`). The server it starts
# runs the embedded identity service: the CLIs log in with a user name and password at
# $URL/v3 (Keystone v3 password auth), as against a cloud.
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
#   VELA_S3_ENDPOINT ... the S3 store of `scripts/ceph.sh start` (VELA_S3_REGION, _BUCKET,
#                        _ACCESS_KEY, _SECRET_KEY): Vela gets a second store `s3` for the
#                        copy-image step, which is skipped without it
#   VELA_REQUIRE_S3=1    fail the copy-image step instead of skipping it when there is no S3
#
# Output: one "ok - <cli>: <step>" / "not ok - ..." / "skip - ...: <why>" line per step, then
# "N passed, M failed, K skipped".
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
STRICT_PID=""                  # a second Vela with the default import filtering (noauth)
STRICT_LOG="$WORK/strict.log"
WEB_PID=""                     # python3 -m http.server: the web-download source
DIAG="$WORK/diag"
mkdir -p "$TMPDIR_DATA" "$CLI_HOME"

stop_pid() {   # stop_pid PID: TERM, then KILL after 5 s
  local pid="$1"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT
  stop_pid "$SERVER_PID"
  stop_pid "$STRICT_PID"
  stop_pid "$WEB_PID"
  if [ "$rc" -ne 0 ]; then
    for f in "$SERVER_OUT" "$SERVER_LOG" "$STRICT_LOG"; do
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
# wait_listening PID OUT: the URL a starting `vela serve` prints on OUT (30 s at most).
wait_listening() {
  local pid="$1" out="$2" url=""
  for _ in $(seq 1 300); do
    url="$(sed -n 's/^vela listening on \(http[^[:space:]]*\).*$/\1/p' "$out" | head -n 1)"
    [ -n "$url" ] && { printf '%s\n' "${url%/}"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

S3_STORE=0
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
  # The file store is "local"; with an S3 endpoint (scripts/ceph.sh) a second store "s3" for
  # copy-image. Web-download may fetch from the local web server on loopback (any port): Vela
  # refuses loopback by default, so this test setup must allow it explicitly.
  {
    printf '[store]\nid = "local"\n\n'
    printf '[images]\nenabled_import_methods = ["glance-direct", "web-download", "copy-image"]\n\n'
    printf '[import_filtering_opts]\nallowed_ports = []\nallowed_networks = ["127.0.0.0/8"]\n'
    printf '\n[cache]\nenabled = true\n'
    printf '\n[quota]\nenabled = true\n'
    if [ -n "${VELA_S3_ENDPOINT:-}" ]; then
      printf '\n[stores.s3]\ntype = "s3"\nendpoint = "%s"\nregion = "%s"\nbucket = "%s"\n' \
        "$VELA_S3_ENDPOINT" "${VELA_S3_REGION:-}" "${VELA_S3_BUCKET:-}"
      printf 'access_key = "%s"\nsecret_key = "%s"\nprefix = "interop-%s/"\n' \
        "${VELA_S3_ACCESS_KEY:-}" "${VELA_S3_SECRET_KEY:-}" "$$-$RANDOM"
    fi
  } >"$WORK/vela.toml"
  [ -n "${VELA_S3_ENDPOINT:-}" ] && S3_STORE=1
  "$VELA_BIN" --config "$WORK/vela.toml" serve --bind 127.0.0.1:0 --data-dir "$TMPDIR_DATA" \
    >"$SERVER_OUT" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  URL="$(wait_listening "$SERVER_PID" "$SERVER_OUT")" ||
    die "server did not print 'vela listening on http://...' within 30 s (or exited)"
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

# For the import steps: a qcow2 with data (qemu-img convert of a raw file with a few written
# ranges), served by a local web server, and a hostile qcow2 whose backing file is /etc/passwd.
command -v qemu-img >/dev/null 2>&1 || die "qemu-img not found (Debian: apt-get install qemu-utils)"
WWW="$WORK/www"
mkdir -p "$WWW"
{
  printf 'VELA-E2E qcow2 source\n'
  head -c 300000 /dev/urandom
} >"$WORK/source.raw"
truncate -s 4M "$WORK/source.raw"
dd if=/dev/urandom of="$WORK/source.raw" bs=64k seek=40 count=4 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$WORK/source.raw" "$WWW/x.qcow2" ||
  die "qemu-img convert failed"
QCOW="$WWW/x.qcow2"
QCOW_SIZE="$(wc -c <"$QCOW" | tr -d ' ')"
QCOW_MD5="$(md5sum "$QCOW" | cut -d' ' -f1)"
QCOW_VSIZE="$(qemu-img info --output=json "$QCOW" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')"
EVIL="$WWW/evil.qcow2"
qemu-img create -q -f qcow2 -b /etc/passwd -F raw "$EVIL" 1M || die "qemu-img create (backing file) failed"

# ---------------------------------------------------------------- step machinery
PASS=0
FAIL=0
SKIP=0

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
# stdin is closed: both CLIs read image data from a stdin that is not a terminal (`<&-` is how
# they are told there is none).
skip() {   # skip LABEL WHY: a step that cannot run here
  SKIP=$((SKIP + 1))
  printf 'skip - %s: %s\n' "$1" "$2"
}

run() {
  local out="$1"; shift
  local rc=0
  env HOME="$CLI_HOME" timeout "$CLI_TIMEOUT" "$@" >"$out" 2>"$out.err" <&- || rc=$?
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
  env HOME="$CLI_HOME" timeout "$CLI_TIMEOUT" "$@" >"$out" 2>"$out.err" <&- || rc=$?
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

  # Quotas with unified limits kept by the embedded identity service, set with the openstack
  # CLI as against Keystone (an admin registers them), enforced with Glance's 413, reported by
  # `glance usage`. The defaults are generous so the rest of the run is not limited.
  ADMIN_OSC=("$VENV/bin/openstack" --os-identity-api-version 3 --os-auth-url "$URL/v3"
    --os-username admin --os-password "admin-$E2E_PASSWORD" --os-project-name admin
    --os-user-domain-name Default --os-project-domain-name Default)
  quota_register() {
    local r
    for r in image_size_total image_stage_total image_count_total image_count_uploading; do
      run "$WORK/reg-$r" "${ADMIN_OSC[@]}" registered limit create -f json --service glance \
        --region RegionOne --default-limit 100000 "$r" || return 1
    done
    run "$WORK/reglist" "${OSC[@]}" registered limit list -f json || return 1
    expect_eq "registered limits a member sees" "$(jcol "$WORK/reglist" "Resource Name" | sort | tr '\n' ' ')" \
      "image_count_total image_count_uploading image_size_total image_stage_total "
  }
  quota_project() {
    run "$WORK/lim" "${ADMIN_OSC[@]}" limit create -f json --project e2e --service glance \
      --region RegionOne --resource-limit 0 image_count_total || return 1
    local id
    id="$(jget "$WORK/lim" id)" || { note "no limit id"; return 1; }
    run_fails "$WORK/q413" "${OSC[@]}" image create --disk-format raw --container-format bare \
      --file "$DATA" "vela-e2e-quota-$RUN_ID"
    run "$WORK/limset" "${ADMIN_OSC[@]}" limit set --resource-limit 100000 "$id" || return 1
    grep -q "image_count_total is over limit of 0" "$WORK/q413.err" ||
      { note "no quota message in: $(tail -n 3 "$WORK/q413.err" | tr '\n' ' ')"; return 1; }
    run "$WORK/usage" "${GLC[@]}" usage || return 1
    grep -qE 'image_count_total +\| +100000 +\| +0 ' "$WORK/usage" ||
      { note "glance usage: $(tr '\n' ' ' <"$WORK/usage")"; return 1; }
  }
  step "quota: admin registers limits (openstack registered limit create), a member lists them" quota_register
  step "quota: a project limit of 0 images refuses create (413), raised with limit set; glance usage" quota_project
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

# ================================================================ interoperable image import
# glance-direct (stage + import), web-download from a local web server, copy-image between
# the file store and S3, the import filtering refusing loopback, and a hostile qcow2 refused
# at upload. Imports run in the background: the steps poll the image (curl, with a token from
# `openstack token issue`) until the import is over, then check it with the CLIs, and read the
# image's tasks (GET /v2/images/{id}/tasks) for the task's outcome.
I="$WORK/imp"
IMPORT_DEADLINE=60      # seconds an import may take
API_TOKEN=""
ADMIN_TOKEN=""
GD_ID=""
WEB_URL=""

if [ -n "${E2E_PASSWORD:-}" ]; then
  mapfile -t ADMIN_ARGS < <(printf '%s\n' --os-auth-url "$URL/v3" --os-username admin \
    --os-password "admin-$E2E_PASSWORD" --os-project-name admin \
    --os-user-domain-name Default --os-project-domain-name Default)
  GLC_ADMIN=("$VENV/bin/glance" "${ADMIN_ARGS[@]}")
  OSC_ADMIN=("$VENV/bin/openstack" --os-identity-api-version 3 "${ADMIN_ARGS[@]}")
else
  GLC_ADMIN=("${GLC[@]}")
  OSC_ADMIN=("${OSC[@]}")
fi

# api PATH OUT [TOKEN]: GET $URL$PATH with the token (default: e2e-user's); prints the status.
api() {
  local hdr=() token="${3-$API_TOKEN}"
  [ -n "$token" ] && hdr=(-H "X-Auth-Token: $token")
  curl -sS --max-time 30 -o "$2" -w '%{http_code}' ${hdr[@]+"${hdr[@]}"} "$URL$1" 2>>"$DIAG" || true
}

imp_info() {
  if [ -n "${E2E_PASSWORD:-}" ]; then
    run "$I.token" "${OSC[@]}" token issue -f value -c id || return 1
    API_TOKEN="$(head -n 1 "$I.token")"
    [ -n "$API_TOKEN" ] || { note "no token printed"; return 1; }
  fi
  [ "$(api /v2/info/import "$I.info")" = 200 ] || { note "GET /v2/info/import failed"; return 1; }
  expect_line "import methods" web-download "$(jget "$I.info" import-methods.value | "$PY" -c \
    'import json,sys; print("\n".join(json.load(sys.stdin)))')"
}

# img_get FILE KEY: a field of an image document ("" when absent or null).
img_get() { jget "$1" "$2" 2>/dev/null || true; }

# wait_import ID [STORES]: polls until the image's import is over (no os_glance_import_task)
# and it is active (and, if given, in exactly STORES); fails at once when the import failed.
wait_import() {
  local id="$1" want_stores="${2:-}" code deadline=$((SECONDS + IMPORT_DEADLINE))
  while :; do
    code="$(api "/v2/images/$id" "$I.poll")"
    if [ "$code" = 200 ] && [ -z "$(img_get "$I.poll" os_glance_import_task)" ]; then
      if [ -n "$(img_get "$I.poll" os_glance_failed_import)" ]; then
        note "import failed: $(cat "$I.poll")"
        break
      fi
      if [ "$(img_get "$I.poll" status)" = active ] &&
         { [ -z "$want_stores" ] || [ "$(img_get "$I.poll" stores)" = "$want_stores" ]; }; then
        return 0
      fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      note "import not done within ${IMPORT_DEADLINE}s (HTTP $code): $(cat "$I.poll")"
      break
    fi
    sleep 0.2
  done
  api "/v2/images/$id/tasks" "$I.tasks" >/dev/null
  note "tasks: $(cat "$I.tasks")"
  return 1
}

# wait_import_failed ID: polls until the image's import is over and failed
# (os_glance_failed_import names the store).
wait_import_failed() {
  local id="$1" code deadline=$((SECONDS + IMPORT_DEADLINE))
  while :; do
    code="$(api "/v2/images/$id" "$I.poll")"
    if [ "$code" = 200 ] && [ -z "$(img_get "$I.poll" os_glance_import_task)" ]; then
      [ -n "$(img_get "$I.poll" os_glance_failed_import)" ] && return 0
      if [ "$(img_get "$I.poll" status)" = active ]; then
        note "the import succeeded: $(cat "$I.poll")"
        return 1
      fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      note "import not over within ${IMPORT_DEADLINE}s (HTTP $code): $(cat "$I.poll")"
      return 1
    fi
    sleep 0.2
  done
}

# expect_task ID STATUS METHOD [TOKEN]: the image's newest task (that TOKEN may see: as in
# Glance, a non-admin sees only its own project's tasks) is an api_image_import of METHOD that
# ended in STATUS.
expect_task() {
  local code
  code="$(api "/v2/images/$1/tasks" "$I.tasks" "${4-$API_TOKEN}")"
  [ "$code" = 200 ] || { note "GET /v2/images/$1/tasks: HTTP $code"; return 1; }
  "$PY" - "$I.tasks" "$2" "$3" >>"$DIAG" 2>&1 <<'PYEOF' || { note "tasks: $(cat "$I.tasks")"; return 1; }
import json, sys
tasks = json.load(open(sys.argv[1]))["tasks"]
if not tasks:
    sys.exit("no task")
t = max(tasks, key=lambda t: t["created_at"])
method = json.loads(t["input"])["import_req"]["method"]["name"] if isinstance(t["input"], str) \
    else t["input"]["import_req"]["method"]["name"]
if (t["type"], t["status"], method) != ("api_image_import", sys.argv[2], sys.argv[3]):
    sys.exit("newest task: %s %s %s (%s)" % (t["type"], t["status"], method, t.get("message")))
PYEOF
}

# expect_image_gl FILE SIZE MD5 FORMAT: a `glance image-show` table of a finished import.
expect_image_gl() {
  local ok=0
  expect_eq status "$(tget "$1" status)" active || ok=1
  expect_eq size "$(tget "$1" size)" "$2" || ok=1
  expect_eq checksum "$(tget "$1" checksum)" "$3" || ok=1
  expect_eq disk_format "$(tget "$1" disk_format)" "$4" || ok=1
  return "$ok"
}

# same_file WHAT EXPECTED GOT
same_file() {
  cmp -s "$2" "$3" && return 0
  note "$1: downloaded data differs ($(wc -c <"$3" | tr -d ' ') bytes, want $(wc -c <"$2" | tr -d ' '))"
  return 1
}

imp_glance_direct() {
  run "$I.gd" "${GLC[@]}" image-create-via-import --import-method glance-direct --file "$DATA" \
    --disk-format raw --container-format bare --name "vela-e2e-gd-$RUN_ID" || return 1
  GD_ID="$(tget "$I.gd" id)" && need_id "$GD_ID" || return 1
  wait_import "$GD_ID" || return 1
  run "$I.gd.show" "${GLC[@]}" image-show "$GD_ID" || return 1
  expect_image_gl "$I.gd.show" "$DATA_SIZE" "$DATA_MD5" raw || return 1
  expect_task "$GD_ID" success glance-direct || return 1
  run "$I.gd.dl" "${GLC[@]}" image-download --file "$WORK/gd.bin" "$GD_ID" || return 1
  expect_download "$WORK/gd.bin"
}

start_web() {   # the web-download source: python's http.server on an ephemeral loopback port
  "$PY" -u -m http.server 0 --bind 127.0.0.1 --directory "$WWW" >"$WORK/web.out" 2>"$WORK/web.log" &
  WEB_PID=$!
  local port=""
  for _ in $(seq 1 100); do
    port="$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$WORK/web.out" | head -n 1)"
    [ -n "$port" ] && break
    kill -0 "$WEB_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || { note "http.server did not start: $(cat "$WORK/web.out" "$WORK/web.log")"; return 1; }
  WEB_URL="http://127.0.0.1:$port"
}

web_gets() { grep -c 'GET /x.qcow2' "$WORK/web.log" || true; }   # requests for the qcow2

imp_web_download() {
  start_web || return 1
  run "$I.wd" "${GLC[@]}" image-create-via-import --import-method web-download \
    --uri "$WEB_URL/x.qcow2" --disk-format qcow2 --container-format bare \
    --name "vela-e2e-wd-$RUN_ID" || return 1
  local id
  id="$(tget "$I.wd" id)" && need_id "$id" || return 1
  wait_import "$id" || return 1
  run "$I.wd.show" "${GLC[@]}" image-show "$id" || return 1
  expect_image_gl "$I.wd.show" "$QCOW_SIZE" "$QCOW_MD5" qcow2 || return 1
  expect_eq "virtual_size (qemu-img info)" "$(tget "$I.wd.show" virtual_size)" "$QCOW_VSIZE" || return 1
  expect_task "$id" success web-download || return 1
  [ "$(web_gets)" -ge 1 ] || { note "the web server saw no GET /x.qcow2"; return 1; }
  run "$I.wd.dl" "${GLC[@]}" image-download --file "$WORK/wd.bin" "$id" || return 1
  same_file "web-download" "$QCOW" "$WORK/wd.bin"
}

# The same URL against a Vela with the default filtering (loopback refused): a second server
# on its own data dir, noauth (the filtering is what differs, not the identity).
imp_web_download_refused() {
  [ -n "$WEB_URL" ] || { note "no web server (previous step failed)"; return 1; }
  VELA_AUTH__MODE=noauth "$VELA_BIN" serve --bind 127.0.0.1:0 --data-dir "$WORK/data-strict" \
    >"$WORK/strict.out" 2>"$STRICT_LOG" &
  STRICT_PID=$!
  local surl gets id
  surl="$(wait_listening "$STRICT_PID" "$WORK/strict.out")" ||
    { note "second server did not start"; return 1; }
  local glc=("$VENV/bin/glance" --os-image-url "$surl" --os-auth-token x)
  gets="$(web_gets)"
  run_fails "$I.wdr" "${glc[@]}" image-create-via-import --import-method web-download \
    --uri "$WEB_URL/x.qcow2" --disk-format qcow2 --container-format bare \
    --name "vela-e2e-wdr-$RUN_ID" || return 1
  if ! grep -qE '400|Bad Request' "$I.wdr.err" || ! grep -q 'filtering' "$I.wdr.err"; then
    note "expected 400 (URI does not pass filtering), got: $(tail -n 5 "$I.wdr.err" | tr '\n' ' ')"
    return 1
  fi
  expect_eq "GETs seen by the web server" "$(web_gets)" "$gets" || return 1
  id="$(tget "$I.wdr" id)" && need_id "$id" || return 1
  run "$I.wdr.show" "${glc[@]}" image-show "$id" || return 1
  expect_eq status "$(tget "$I.wdr.show" status)" queued
}

imp_osc_import() {
  run "$I.os" "${OSC[@]}" image create -f json --import --file "$DATA" --disk-format raw \
    --container-format bare "vela-e2e-osimport-$RUN_ID" || return 1
  local id
  id="$(jget "$I.os" id)" && need_id "$id" || return 1
  wait_import "$id" || return 1
  run "$I.os.show" "${OSC[@]}" image show -f json "$id" || return 1
  local ok=0
  expect_eq status "$(jget "$I.os.show" status)" active || ok=1
  expect_eq size "$(jget "$I.os.show" size)" "$DATA_SIZE" || ok=1
  expect_eq checksum "$(jget "$I.os.show" checksum)" "$DATA_MD5" || ok=1
  [ "$ok" = 0 ] && expect_task "$id" success glance-direct || return 1
  run "$I.os.dl" "${OSC[@]}" image save --file "$WORK/osimport.bin" "$id" || return 1
  expect_download "$WORK/osimport.bin"
}

# openstack image import: web-download into an image created without data. (The image is made
# by glance: `openstack image create` without --file reads image data from any stdin that is not
# a terminal, and fails on a closed one.) --disallow-failure: by default the CLI sends
# "all_stores_must_succeed": false, which Glance (and Vela) refuse with 400 without multi-store,
# and the CLI ignores that answer, exiting 0 with nothing imported.
imp_osc_web_download() {
  [ -n "$WEB_URL" ] || { note "no web server (previous step failed)"; return 1; }
  run "$I.osw" "${GLC[@]}" image-create --disk-format qcow2 --container-format bare \
    --name "vela-e2e-osweb-$RUN_ID" || return 1
  local id
  id="$(tget "$I.osw" id)" && need_id "$id" || return 1
  run "$I.osw.imp" "${OSC[@]}" image import --method web-download --uri "$WEB_URL/x.qcow2" \
    --disallow-failure "$id" ||
    return 1
  wait_import "$id" || return 1
  run "$I.osw.show" "${OSC[@]}" image show -f json "$id" || return 1
  local ok=0
  expect_eq checksum "$(jget "$I.osw.show" checksum)" "$QCOW_MD5" || ok=1
  expect_eq virtual_size "$(jget "$I.osw.show" virtual_size)" "$QCOW_VSIZE" || ok=1
  [ "$ok" = 0 ] && expect_task "$id" success web-download
}

# copy-image (admin: Glance's copy_image policy) of the glance-direct image from the file store
# to S3, then the file copy removed (stores-delete): the download comes from S3.
imp_copy_image() {
  need_id "$GD_ID" || return 1
  run "$I.cp" "${GLC_ADMIN[@]}" image-import --import-method copy-image --stores s3 "$GD_ID" ||
    return 1
  wait_import "$GD_ID" local,s3 || return 1
  if [ -n "${E2E_PASSWORD:-}" ]; then
    run "$I.cp.tok" "${OSC_ADMIN[@]}" token issue -f value -c id || return 1
    ADMIN_TOKEN="$(head -n 1 "$I.cp.tok")"
  fi
  expect_task "$GD_ID" success copy-image "$ADMIN_TOKEN" || return 1
  run "$I.cp.show" "${GLC[@]}" image-show "$GD_ID" || return 1
  expect_eq stores "$(tget "$I.cp.show" stores)" local,s3 || return 1
  expect_image_gl "$I.cp.show" "$DATA_SIZE" "$DATA_MD5" raw || return 1
  run "$I.cp.del" "${GLC_ADMIN[@]}" stores-delete --store local "$GD_ID" || return 1
  run "$I.cp.show2" "${GLC[@]}" image-show "$GD_ID" || return 1
  expect_eq "stores after stores-delete local" "$(tget "$I.cp.show2" stores)" s3 || return 1
  run "$I.cp.dl" "${GLC[@]}" image-download --file "$WORK/s3.bin" "$GD_ID" || return 1
  expect_download "$WORK/s3.bin"
}

# The tasks API (admin only, Glance's tasks_api_access): `glance task-list` and
# `openstack image task show` find the glance-direct import task of the first step.
imp_task_api() {
  need_id "$GD_ID" || return 1
  [ "$(api "/v2/images/$GD_ID/tasks" "$I.gdt")" = 200 ] || { note "GET image tasks failed"; return 1; }
  local tid
  tid="$("$PY" -c '
import json, sys
for t in json.load(open(sys.argv[1]))["tasks"]:
    if t["input"]["import_req"]["method"]["name"] == "glance-direct":
        print(t["id"])' "$I.gdt")"
  [ -n "$tid" ] || { note "no glance-direct task: $(cat "$I.gdt")"; return 1; }
  run "$I.tl" "${GLC_ADMIN[@]}" task-list || return 1
  expect_line "glance task-list" "$tid" "$(tcol "$I.tl" ID)" || return 1
  run "$I.ts" "${OSC_ADMIN[@]}" image task show -f json "$tid" || return 1
  local ok=0
  expect_eq type "$(jget "$I.ts" type)" api_image_import || ok=1
  expect_eq status "$(jget "$I.ts" status)" success || ok=1
  expect_eq result.image_id "$(jget "$I.ts" result.image_id)" "$GD_ID" || ok=1
  return "$ok"
}

# expect_unsupported FILE: the CLI reported a 415 (the inspector's refusal).
expect_unsupported() {
  grep -qiE '415|Unsupported Media Type' "$1" "$1.err" && return 0
  note "expected a 415, got: $(tail -n 5 "$1.err" | tr '\n' ' ')"
  return 1
}

# A qcow2 whose backing file is /etc/passwd: the upload is refused (415) and no image with
# data is left. openstack (openstacksdk) deletes the image it created when its upload fails;
# glance leaves it, and it stays queued.
imp_hostile_osc() {
  local name="vela-e2e-evil-osc-$RUN_ID"
  run_fails "$I.ev" "${OSC[@]}" image create -f json --file "$EVIL" --disk-format qcow2 \
    --container-format bare "$name" || return 1
  expect_unsupported "$I.ev" || return 1
  run "$I.ev.list" "${OSC[@]}" image list -f json --name "$name" --long || return 1
  "$PY" - "$I.ev.list" >>"$DIAG" 2>&1 <<'PYEOF'
import json, sys
bad = [r for r in json.load(open(sys.argv[1])) if r.get("Status") != "queued"]
if bad:
    sys.exit("images left that are not queued: %s" % bad)
PYEOF
}

# The same file through web-download: the import is accepted (the data is not known yet), the
# task fails when the inspector sees the backing file, and the image goes back to queued.
imp_hostile_web_download() {
  [ -n "$WEB_URL" ] || { note "no web server (previous step failed)"; return 1; }
  run "$I.evw" "${GLC[@]}" image-create-via-import --import-method web-download \
    --uri "$WEB_URL/evil.qcow2" --disk-format qcow2 --container-format bare \
    --name "vela-e2e-evil-wd-$RUN_ID" || return 1
  local id
  id="$(tget "$I.evw" id)" && need_id "$id" || return 1
  wait_import_failed "$id" || return 1
  expect_task "$id" failure web-download || return 1
  run "$I.evw.show" "${GLC[@]}" image-show "$id" || return 1
  expect_eq status "$(tget "$I.evw.show" status)" queued &&
    expect_eq os_glance_failed_import "$(tget "$I.evw.show" os_glance_failed_import)" local
}

imp_hostile_glance() {
  run_fails "$I.evg" "${GLC[@]}" image-create --name "vela-e2e-evil-gl-$RUN_ID" --file "$EVIL" \
    --disk-format qcow2 --container-format bare || return 1
  expect_unsupported "$I.evg" || return 1
  local id
  id="$(tget "$I.evg" id)" && need_id "$id" || return 1
  run "$I.evg.show" "${GLC[@]}" image-show "$id" || return 1
  expect_eq status "$(tget "$I.evg.show" status)" queued || return 1
  expect_eq size "$(tget "$I.evg.show" size)" None
}

step "import: /v2/info/import lists web-download (token for curl)" imp_info
step "glance: image-create-via-import glance-direct" imp_glance_direct
if [ -n "${VELA_URL:-}" ]; then
  for l in "glance: image-create-via-import web-download (qcow2 from loopback)" \
           "glance: web-download from loopback refused by default filtering (400)" \
           "openstack: image import --method web-download"; do
    skip "$l" "VELA_URL: the server's import filtering is not this script's"
  done
else
  step "glance: image-create-via-import web-download (qcow2 from loopback)" imp_web_download
  step "glance: web-download from loopback refused by default filtering (400)" imp_web_download_refused
  step "openstack: image import --method web-download" imp_osc_web_download
fi
step "openstack: image create --import (glance-direct)" imp_osc_import
if [ "$S3_STORE" = 1 ]; then
  step "glance: image-import copy-image to s3, then stores-delete local" imp_copy_image
elif [ "${VELA_REQUIRE_S3:-0}" = 1 ]; then
  FAIL=$((FAIL + 1))
  printf 'not ok - %s\n#   %s\n' "glance: image-import copy-image to s3" \
    "VELA_REQUIRE_S3=1 but no S3 store (VELA_S3_ENDPOINT unset, or VELA_URL)"
else
  skip "glance: image-import copy-image to s3" "no S3 (eval \"\$(scripts/ceph.sh start)\" sets VELA_S3_ENDPOINT)"
fi
if [ -n "${VELA_URL:-}" ]; then
  # noauth callers have no project: their tasks have no owner ("owner": null, as in Glance),
  # which glanceclient's task schema (a string) refuses.
  skip "glance task-list, openstack image task show (admin)" "VELA_URL (noauth): tasks without owner"
else
  step "glance task-list, openstack image task show (admin): the import task" imp_task_api
fi
step "openstack: qcow2 with a backing file refused (415)" imp_hostile_osc
step "glance: qcow2 with a backing file refused (415), image stays queued" imp_hostile_glance
if [ -n "${VELA_URL:-}" ]; then
  skip "glance: web-download of a qcow2 with a backing file fails" "VELA_URL: no web server allowed"
else
  step "glance: web-download of a qcow2 with a backing file: task failure, queued" imp_hostile_web_download
fi

# ================================================================ metadata definitions
# A fresh Vela has a catalog (its defaults) for Horizon and the CLIs; `vela metadefs load` of
# Glance's own definition files (from the glance wheel on PyPI, not installed) replaces it, and
# the CLIs then show Glance's definitions; `vela metadefs export` writes them back.
M="$WORK/md"
GLANCE_MD_DIR=""

md_fresh_catalog() {
  run "$M.list0" "${OSC[@]}" image metadef namespace list -f value -c namespace || return 1
  expect_line "namespace list" "OS::Compute::Libvirt" "$(cat "$M.list0")" || return 1
  if [ -n "${E2E_PASSWORD:-}" ] && [ -z "$API_TOKEN" ]; then
    run "$M.token" "${OSC[@]}" token issue -f value -c id || return 1
    API_TOKEN="$(head -n 1 "$M.token")"
  fi
  [ "$(api '/v2/metadefs/namespaces?resource_types=OS::Glance::Image' "$M.img")" = 200 ] ||
    { note "GET namespaces?resource_types=OS::Glance::Image failed"; return 1; }
  local n
  n="$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["namespaces"]))' "$M.img")"
  [ "$n" -ge 1 ] || { note "no namespace for OS::Glance::Image: $(cat "$M.img")"; return 1; }
}

md_glance_files() {   # Glance's shipped definitions, from its wheel (cached in the venv dir)
  local cache="$VENV/glance-metadefs"
  if ! ls "$cache"/*.json >/dev/null 2>&1; then
    rm -rf "$WORK/wheel" && mkdir -p "$WORK/wheel" "$cache"
    "$VENV/bin/pip" download -q --no-deps --dest "$WORK/wheel" 'glance==33.*' >>"$DIAG" 2>&1 ||
      { note "pip download glance failed"; return 1; }
    "$PY" - "$WORK/wheel" "$cache" >>"$DIAG" 2>&1 <<'PYEOF' || return 1
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "glance-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/etc/glance/metadefs/" in name and name.endswith(".json"):
            with open(os.path.join(sys.argv[2], os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
PYEOF
  fi
  GLANCE_MD_DIR="$cache"
  ls "$GLANCE_MD_DIR"/*.json >/dev/null 2>&1 || { note "no definition files in the glance wheel"; return 1; }
}

md_load_glance() {
  md_glance_files || return 1
  run "$M.load" "$VELA_BIN" --config "$WORK/vela.toml" --data-dir "$TMPDIR_DATA" metadefs load \
    --overwrite "$GLANCE_MD_DIR" || return 1
  local files   # the public ones: e2e-user is no admin (files without visibility are private)
  files="$("$PY" -c 'import glob,json,sys
print(sum(json.load(open(f)).get("visibility") == "public" for f in glob.glob(sys.argv[1] + "/*.json")))' "$GLANCE_MD_DIR")"
  grep -q "^[0-9]* created, [0-9]* replaced, 0 skipped" "$M.load" ||
    { note "load: $(tail -n 1 "$M.load")"; return 1; }
  run "$M.list1" "${OSC[@]}" image metadef namespace list -f value -c namespace || return 1
  [ "$(grep -c . "$M.list1")" -ge "$files" ] || { note "$(grep -c . "$M.list1") namespaces listed, $files files"; return 1; }
  expect_line "namespace list" "OS::Compute::Hypervisor" "$(cat "$M.list1")" || return 1
  expect_line "namespace list" "OS::Compute::Quota" "$(cat "$M.list1")"
}

md_glance_show() {
  [ -n "$GLANCE_MD_DIR" ] || { note "Glance's files were not loaded"; return 1; }
  run "$M.show" "${GLC[@]}" md-namespace-show OS::Compute::Libvirt || return 1
  local want
  # The table shows the description's first line in its cell.
  want="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["description"].splitlines()[0].strip())' \
    "$GLANCE_MD_DIR/compute-libvirt.json")"
  expect_eq description "$(tget "$M.show" description | head -n 1 | sed 's/[[:space:]]*$//')" "$want" || return 1
  grep -q "hw_boot_menu\|boot_menu" "$M.show" || { note "no boot_menu property: $(cat "$M.show")"; return 1; }
  run "$M.props" "${GLC[@]}" md-property-list OS::Compute::Libvirt || return 1
  grep -q "boot_menu" "$M.props" || { note "md-property-list: $(cat "$M.props")"; return 1; }
}

md_export() {
  run "$M.export" "$VELA_BIN" --config "$WORK/vela.toml" --data-dir "$TMPDIR_DATA" metadefs export \
    "$WORK/md-export" || return 1
  [ -f "$WORK/md-export/OS::Compute::Libvirt.json" ] || { note "no OS::Compute::Libvirt.json"; return 1; }
  "$PY" - "$WORK/md-export/OS::Compute::Libvirt.json" "$GLANCE_MD_DIR/compute-libvirt.json" >>"$DIAG" 2>&1 <<'PYEOF'
import json, sys
got, want = (json.load(open(p)) for p in sys.argv[1:3])
assert sorted(got["properties"]) == sorted(want["properties"]), "properties differ"
assert got["description"] == want["description"]
PYEOF
}

if [ -n "${VELA_URL:-}" ]; then
  step "openstack: metadef namespace list on a fresh server" md_fresh_catalog
  skip "vela metadefs load/export" "VELA_URL: not this script's server"
else
  step "openstack: metadef namespace list on a fresh server (defaults for OS::Glance::Image)" md_fresh_catalog
  step "vela metadefs load --overwrite of Glance's files, openstack metadef namespace list" md_load_glance
  step "glance: md-namespace-show OS::Compute::Libvirt, md-property-list" md_glance_show
  step "vela metadefs export" md_export
fi

# ================================================================ image cache
# The server runs with [cache] enabled: an admin queues an image with glance and the node
# prefetches it; both CLIs list it; a download is served from the copy (a hit); the copy is
# removed with openstack and the cache cleared with glance.
C="$WORK/cache"
CACHE_ID=""

cache_queue() {
  run "$C.create" "${OSC[@]}" image create -f json --disk-format raw --container-format bare \
    --file "$DATA" "e2e-cache-$$" || return 1
  CACHE_ID="$(jget "$C.create" id)" && need_id "$CACHE_ID" || return 1
  run "$C.queue" "${GLC_ADMIN[@]}" cache-queue "$CACHE_ID" || return 1
  local i
  for i in $(seq 100); do
    run "$C.list" "${GLC_ADMIN[@]}" cache-list || return 1
    grep -F "$CACHE_ID" "$C.list" | grep -qw cached && return 0
    sleep 0.2
  done
  note "image never listed as cached by glance cache-list:"; sed 's/^/  /' "$C.list" >>"$DIAG"
  return 1
}

cache_download_hit() {
  need_id "$CACHE_ID" || return 1
  run "$C.save" "${OSC[@]}" image save --file "$WORK/cached-download.bin" "$CACHE_ID" || return 1
  expect_download "$WORK/cached-download.bin" || return 1
  run "$C.olist" "${OSC_ADMIN[@]}" cached image list -f json || return 1
  expect_line "cached image list" "$CACHE_ID" "$(jcol "$C.olist" ID)" || return 1
  expect_eq hits "$("$PY" -c 'import json,sys; print([r["Hits"] for r in json.load(open(sys.argv[1])) if r["ID"] == sys.argv[2]][0])' "$C.olist" "$CACHE_ID")" 1
}

cache_remove() {
  need_id "$CACHE_ID" || return 1
  run "$C.del" "${OSC_ADMIN[@]}" cached image delete "$CACHE_ID" || return 1
  run "$C.olist2" "${OSC_ADMIN[@]}" cached image list -f json || return 1
  expect_no_line "cached image list after delete" "$CACHE_ID" "$(jcol "$C.olist2" ID)" || return 1
  run "$C.clear" "${GLC_ADMIN[@]}" cache-clear --target both || return 1
  run "$C.prune" "${GLC_ADMIN[@]}" cache-prune || return 1
  grep -q "Pruned 0 file" "$C.prune" || { note "cache-prune said: $(cat "$C.prune")"; return 1; }
  run "$C.rm" "${OSC[@]}" image delete "$CACHE_ID"
}

if [ -n "${VELA_URL:-}" ]; then
  skip "image cache" "VELA_URL: not this script's server (the cache may be off)"
else
  step "glance: cache-queue, cache-list (prefetched)" cache_queue
  step "openstack: image save served from the cache, cached image list (1 hit)" cache_download_hit
  step "openstack: cached image delete; glance: cache-clear, cache-prune" cache_remove
fi

# ---------------------------------------------------------------- summary
printf '%d passed, %d failed, %d skipped\n' "$PASS" "$FAIL" "$SKIP"
[ "$FAIL" -eq 0 ]
