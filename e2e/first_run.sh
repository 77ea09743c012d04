#!/usr/bin/env bash
# Follows the README's "First run" section literally: runs the serve command of its first
# code block (with "$VELA_BIN" for `cargo run --release --bin vela --`, in an empty directory,
# on a free port through VELA_SERVER__BIND), waits for the openrc the first start writes,
# then runs the commands of the block that sources it with the OpenStack CLI from
# .venv-e2e (made by e2e/interop.sh). Checks the file's mode, that the log names the file but
# not the password, and that `openstack image list` succeeds.
#
# Environment: VELA_BIN (default target/release/vela), VELA_E2E_VENV (default .venv-e2e).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VELA_BIN="${VELA_BIN:-$REPO/target/release/vela}"
VENV="${VELA_E2E_VENV:-$REPO/.venv-e2e}"
case "$VELA_BIN" in /*) ;; *) VELA_BIN="$REPO/$VELA_BIN" ;; esac

die() { printf 'first-run: %s\n' "$*" >&2; exit 1; }
[ -x "$VELA_BIN" ] || die "no server binary at $VELA_BIN"
[ -x "$VENV/bin/openstack" ] || die "no OpenStack CLI in $VENV (run e2e/interop.sh first)"

# The README's code blocks of the "## First run" section, one file per block.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vela-first-run.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  [ "$rc" -ne 0 ] && [ -f "$WORK/server.log" ] && tail -n 50 "$WORK/server.log"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
awk -v dir="$WORK" '
  /^## / { in_section = ($0 == "## First run") }
  in_section && /^```sh$/ { n++; inblock = 1; next }
  in_section && inblock && /^```$/ { inblock = 0; next }
  in_section && inblock { print > (dir "/block" n ".sh") }
' "$REPO/README.md"
SERVE="$(grep -h 'serve' "$WORK"/block*.sh | head -n 1)"
CLIENT_BLOCK="$(grep -l 'openrc' "$WORK"/block*.sh | head -n 1)"
[ -n "$SERVE" ] || die "the README's First run section has no serve command"
[ -n "$CLIENT_BLOCK" ] || die "the README's First run section has no block sourcing the openrc"
SERVE="${SERVE//cargo run --release --bin vela --/\"\$VELA_BIN\"}"
echo "# README serve command: $SERVE"
echo "# README client commands: $(tr '\n' ';' <"$CLIENT_BLOCK")"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir "$WORK/home"
cd "$WORK/home"
# Nothing of the caller's OpenStack settings may help the README's commands.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OS_' || true)
VELA_SERVER__BIND="127.0.0.1:$PORT" VELA_BIN="$VELA_BIN" bash -c "$SERVE" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  grep -q '^vela listening on' "$WORK/server.log" && [ -f vela-data/openrc ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server stopped"
  sleep 0.1
done
[ -f vela-data/openrc ] || die "no vela-data/openrc after 30 s"
[ "$(stat -c %a vela-data/openrc)" = 600 ] || die "vela-data/openrc has mode $(stat -c %a vela-data/openrc)"
grep -q 'openrc=.*vela-data/openrc' "$WORK/server.log" || die "the log does not name the openrc file"
PASSWORD="$(sed -n 's/^export OS_PASSWORD=//p' vela-data/openrc)"
[ -n "$PASSWORD" ] || die "the openrc has no password"
if grep -qF -- "$PASSWORD" "$WORK/server.log"; then die "the password reached the log"; fi

PATH="$VENV/bin:$PATH" bash -euo pipefail "$CLIENT_BLOCK" >"$WORK/client.out" 2>&1 ||
  { cat "$WORK/client.out" >&2; die "the README's client commands failed"; }
cat "$WORK/client.out"
echo "ok - first run: the README's commands work (admin created, openrc sourced, images listed)"
