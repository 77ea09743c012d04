#!/usr/bin/env bash
# Runs VMware's vCenter simulator (vcsim, from govmomi's simulator package in Debian's
# golang-github-vmware-govmomi-dev, built with Debian's golang-go in GOPATH mode: no download)
# on loopback over TLS (a self-signed certificate), for the vmware store tests.
#
#   scripts/vcsim.sh start   installs the Debian packages if missing, builds (once) and starts
#                            it in the background; prints `export VCSIM_...` lines on stdout
#                            (only those: `eval "$(scripts/vcsim.sh start)"`)
#   scripts/vcsim.sh stop
#
# The model: datacenter DC0, datastore LocalDS_0; one user ($VCSIM_USER / $VCSIM_PASSWORD).
# Environment: VCSIM_DIR (binary, pid, port, log; default $REPO/.vcsim), VCSIM_PORT (default:
# any free port).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VCSIM_DIR="${VCSIM_DIR:-$REPO/.vcsim}"
VCSIM_USER=vela
VCSIM_PASSWORD=vela-vcsim-pw
PIDFILE="$VCSIM_DIR/vcsim.pid"
PORTFILE="$VCSIM_DIR/vcsim.port"
GOSRC=/usr/share/gocode/src/github.com/vmware/govmomi/simulator

log() { printf 'vcsim: %s\n' "$*" >&2; }

build() {
  mkdir -p "$VCSIM_DIR"
  [ -f "$VCSIM_DIR/.gitignore" ] || printf '*\n' >"$VCSIM_DIR/.gitignore"
  if ! command -v go >/dev/null || [ ! -d "$GOSRC" ]; then
    log "installing golang-go and golang-github-vmware-govmomi-dev"
    { apt-get install -y -qq golang-go golang-github-vmware-govmomi-dev ||
      { apt-get update -qq && apt-get install -y -qq golang-go golang-github-vmware-govmomi-dev; }; } >&2
  fi
  if [ ! -x "$VCSIM_DIR/vcsim" ] || [ "$REPO/scripts/vcsim/main.go" -nt "$VCSIM_DIR/vcsim" ]; then
    log "building vcsim (GOPATH mode, Debian's govmomi source)"
    mkdir -p "$VCSIM_DIR/src/vcsim" "$VCSIM_DIR/cache"
    cp "$REPO/scripts/vcsim/main.go" "$VCSIM_DIR/src/vcsim/main.go"
    (cd "$VCSIM_DIR/src/vcsim" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$VCSIM_DIR/cache" \
      GOFLAGS= go build -o "$VCSIM_DIR/vcsim" . >&2)
  fi
}

# shellcheck source=scripts/daemon.sh
. "$REPO/scripts/daemon.sh"
stop() {
  stop_running
  rm -f "$PORTFILE"
}

start() {
  build
  stop
  (cd "$VCSIM_DIR" && exec setsid ./vcsim -listen "127.0.0.1:${VCSIM_PORT:-0}" -user "$VCSIM_USER" \
    -password "$VCSIM_PASSWORD" -port-file "$PORTFILE" </dev/null >>"$VCSIM_DIR/vcsim.log" 2>&1) &
  echo $! >"$PIDFILE"
  local pid=$!
  for _ in $(seq 300); do
    alive "$pid" || { log "vcsim exited; tail of $VCSIM_DIR/vcsim.log:"; tail -n 20 "$VCSIM_DIR/vcsim.log" >&2; exit 1; }
    if [ -s "$PORTFILE" ] && curl -ks -o /dev/null --max-time 2 "https://127.0.0.1:$(cat "$PORTFILE")/about"; then
      log "serving https://127.0.0.1:$(cat "$PORTFILE")/sdk (pid $pid)"
      printf 'export %s=%q\n' VCSIM_HOST "127.0.0.1:$(cat "$PORTFILE")" VCSIM_USER "$VCSIM_USER" \
        VCSIM_PASSWORD "$VCSIM_PASSWORD" VCSIM_DATACENTER DC0 VCSIM_DATASTORE LocalDS_0
      return 0
    fi
    sleep 0.1
  done
  log "vcsim did not answer after 30 s"; exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
