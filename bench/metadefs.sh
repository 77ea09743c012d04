#!/usr/bin/env bash
# Metadefs benchmark (not a test): the catalog reads clients make, with wrk at concurrency 8:
# Horizon's namespace list for images, a full namespace show, the property list and the
# resource types. Vela starts on a fresh SQLite database with its default catalog (14
# namespaces) and embedded identity (a real token on every request). Reports requests/s,
# latency percentiles, errors and the server's peak RSS.
#
#   bash bench/metadefs.sh
#   BENCH_URL=http://127.0.0.1:9797 bash bench/metadefs.sh   # another server, e.g. Glance 33
#                                  # (scripts/glance.sh): Vela's default catalog is created
#                                  # there through the API first, so both serve the same data
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
. "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d /var/tmp/vela-md.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

if [ -n "${BENCH_URL:-}" ]; then
  URL=${BENCH_URL%/}
  TOKEN=x
  for f in crates/vela-server/metadefs/*.json; do   # 409 when it is there already
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' --data @"$f" \
      "$URL/v2/metadefs/namespaces" || true
  done
  TARGET="$URL"
else
  cargo build --release --bin vela >/dev/null 2>&1
  BIN=${CARGO_TARGET_DIR:-target}/release/vela
  bench_bootstrap "$BIN" "$DIR"
  "$BIN" serve --bind 127.0.0.1:0 --data-dir "$DIR" >"$DIR/out" 2>"$DIR/err" &
  PID=$!
  for _ in $(seq 100); do grep -q listening "$DIR/out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^vela listening on //p' "$DIR/out")
  TOKEN=$(bench_token "$URL")
  TARGET="Vela (SQLite)"
fi

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); target: $TARGET; wrk -t2 -c8 -d${DURATION}s"
run() { bench_wrk "$1" -H "X-Auth-Token: $TOKEN" "${@:2}"; }
run "namespaces for OS::Glance::Image (Horizon)" "$URL/v2/metadefs/namespaces?resource_types=OS::Glance::Image"
run "namespace show OS::Compute::LibvirtImage" "$URL/v2/metadefs/namespaces/OS::Compute::LibvirtImage"
run "property list OS::Compute::LibvirtImage" "$URL/v2/metadefs/namespaces/OS::Compute::LibvirtImage/properties"
run "resource types" "$URL/v2/metadefs/resource_types"
if [ -n "$PID" ]; then
  echo "server peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$PID/status)"
fi
