#!/usr/bin/env bash
# Import benchmark (not a test): through a release build of Vela with the embedded identity,
#  1. glance-direct: stage SIZE_MIB of data, then import it (hashing, inspection, file store);
#  2. web-download of the same data from a local web server (staged, then imported);
#  3. conversion: a qcow2 of SIZE_MIB of data imported with the image_conversion plugin
#     (qcow2 → raw), beside `qemu-img convert` of the same file alone.
# Reports MB/s per phase and the server's peak RSS (VmHWM; qemu-img runs as its own process).
#
#   bash bench/import.sh                 # 4 GiB
#   SIZE_MIB=1024 bash bench/import.sh
#   BENCH_URL=http://127.0.0.1:9797 bash bench/import.sh   # the same against a running server
#     without authentication, e.g. Glance 33 from
#     `GLANCE_IMPORT_PLUGINS=image_conversion bash scripts/glance.sh start`
#
# Data lives in a temporary dir on the same disk as $BENCH_DIR (default: under /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-4096}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/vela-bench.XXXXXX)}
BIN=${CARGO_TARGET_DIR:-target}/release/vela
. "$(dirname "$0")/lib.sh"
if [ -z "${BENCH_URL:-}" ]; then
  cargo build --release --bin vela >/dev/null 2>&1
  bench_bootstrap "$BIN" "$BENCH_DIR/data"
fi
cat >"$BENCH_DIR/vela.toml" <<TOML
[images]
image_size_cap = $(((SIZE_MIB + 64) << 20))

[import]
plugins = ["image_conversion"]

[import_filtering_opts]
allowed_ports = []
allowed_networks = ["127.0.0.0/8"]
TOML

WEB_PID=""
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  [ -n "$WEB_PID" ] && kill "$WEB_PID" 2>/dev/null
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "== preparing ${SIZE_MIB} MiB of data"
python3 -c '
import os, sys
block = os.urandom(1 << 20)
with open(sys.argv[2], "wb") as f:
    for _ in range(int(sys.argv[1])):
        f.write(block)
' "$SIZE_MIB" "$BENCH_DIR/disk.raw"
qemu-img convert -f raw -O qcow2 "$BENCH_DIR/disk.raw" "$BENCH_DIR/disk.qcow2"
sync

if [ -n "${BENCH_URL:-}" ]; then
  URL=$BENCH_URL
  TOKEN=none
  rss() { echo "n/a (external server)"; }
else
  "$BIN" --config "$BENCH_DIR/vela.toml" serve --bind 127.0.0.1:0 --data-dir "$BENCH_DIR/data" \
    >"$BENCH_DIR/out" 2>"$BENCH_DIR/err" &
  PID=$!
  for _ in $(seq 100); do grep -q listening "$BENCH_DIR/out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^vela listening on //p' "$BENCH_DIR/out")
  TOKEN=$(bench_token "$URL")
  rss() { awk '/VmHWM/ {print $2/1024 " MiB"}' "/proc/$PID/status"; }
fi
now() { date +%s.%N; }
mbs() { python3 -c "print(f'{$1*1048576/($3-$2)/1e6:.0f} MB/s ({$3-$2:.1f} s)')"; }
api() { curl -sf -H "X-Auth-Token: $TOKEN" "$@"; }
create() {
  api -X POST "$URL/v2/images" -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench\",\"disk_format\":\"$1\",\"container_format\":\"bare\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
field() { api "$URL/v2/images/$1" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2'))"; }
wait_active() {
  # Done when the image is active and its newest task finished; a failed task stops.
  while :; do
    local task
    task=$(api "$URL/v2/images/$1/tasks" | python3 -c '
import json, sys
tasks = json.load(sys.stdin)["tasks"]
print(max(tasks, key=lambda t: t["created_at"])["status"] if tasks else "none")')
    case "$task" in
      failure) echo "import failed: $(api "$URL/v2/images/$1/tasks")" >&2; return 1 ;;
      success) [ "$(field "$1" status)" = active ] && return 0 ;;
    esac
    sleep 0.2
  done
}
import() { api -X POST "$URL/v2/images/$1/import" -H 'Content-Type: application/json' -d "$2"; }

echo "== glance-direct"
ID=$(create raw)
t0=$(now)
api -X PUT -H 'Content-Type: application/octet-stream' -T "$BENCH_DIR/disk.raw" "$URL/v2/images/$ID/stage"
t1=$(now)
import "$ID" '{"method": {"name": "glance-direct"}}'
wait_active "$ID"
t2=$(now)
echo "stage:  $(mbs "$SIZE_MIB" "$t0" "$t1")"
echo "import: $(mbs "$SIZE_MIB" "$t1" "$t2")"
echo "glance-direct total: $(mbs "$SIZE_MIB" "$t0" "$t2"); server peak RSS so far: $(rss)"
api -X DELETE "$URL/v2/images/$ID"

echo "== web-download"
(cd "$BENCH_DIR" && exec python3 -m http.server 0 --bind 127.0.0.1 >"$BENCH_DIR/web.out" 2>&1) &
WEB_PID=$!
for _ in $(seq 100); do grep -q 'Serving HTTP' "$BENCH_DIR/web.out" 2>/dev/null && break; sleep 0.1; done
WEB_PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$BENCH_DIR/web.out" | head -1)
ID=$(create raw)
t0=$(now)
import "$ID" "{\"method\": {\"name\": \"web-download\", \"uri\": \"http://127.0.0.1:$WEB_PORT/disk.raw\"}}"
wait_active "$ID"
t1=$(now)
echo "web-download (download + import): $(mbs "$SIZE_MIB" "$t0" "$t1"); server peak RSS so far: $(rss)"
api -X DELETE "$URL/v2/images/$ID"

echo "== conversion qcow2 -> raw"
sync
t0=$(now)
qemu-img convert -f qcow2 -O raw "$BENCH_DIR/disk.qcow2" "$BENCH_DIR/alone.raw"
t1=$(now)
echo "qemu-img convert alone: $(mbs "$SIZE_MIB" "$t0" "$t1")"
rm -f "$BENCH_DIR/alone.raw"
ID=$(create qcow2)
api -X PUT -H 'Content-Type: application/octet-stream' -T "$BENCH_DIR/disk.qcow2" "$URL/v2/images/$ID/stage"
t0=$(now)
import "$ID" '{"method": {"name": "glance-direct"}}'
wait_active "$ID"
t1=$(now)
echo "import with conversion (inspect + qemu-img + hash + store): $(mbs "$SIZE_MIB" "$t0" "$t1"); disk_format now $(field "$ID" disk_format)"
echo "server peak RSS: $(rss)"
api -X DELETE "$URL/v2/images/$ID"
