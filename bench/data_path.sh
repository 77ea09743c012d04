#!/usr/bin/env bash
# Data-path benchmark (not a test): uploads and downloads one generated image through a release
# build of Vela and reports throughput and the server's peak RSS (VmHWM).
#
#   bash bench/data_path.sh            # 4 GiB
#   SIZE_MIB=1024 bash bench/data_path.sh
#   STORE=s3 bash bench/data_path.sh     # through the S3 store of $VELA_S3_* (scripts/ceph.sh start)
#   STORE=swift bash bench/data_path.sh  # through the Swift store of $VELA_SWIFT_*
#   STORE=vmware bash bench/data_path.sh # through a vSphere datastore of $VCSIM_* (scripts/vcsim.sh start)
#   STORE=cinder bash bench/data_path.sh # through Cinder volumes of $CINDER_* (scripts/cinder.sh start)
#   CACHE=1 STORE=s3 bash bench/data_path.sh  # with the image cache: the first download
#                                             # fills it (cold), later ones come from it (warm)
#
# The image is generated on the fly (repeating pseudo-random 1 MiB block) and sent chunked with
# curl, so the client holds nothing in memory either. Data goes to a temporary data dir on the
# same disk as $BENCH_DIR (default: a new dir under /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-4096}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/vela-bench.XXXXXX)}
# With Ceph's client libraries the build has the rbd feature (the cinder store needs it), as
# scripts/test.sh builds it: the same binary, no rebuild between the two.
FEATURES=()
dpkg -s librbd-dev librados-dev >/dev/null 2>&1 && FEATURES=(--features vela-cli/rbd)
cargo build --release "${FEATURES[@]}" -p vela-cli --bin vela >/dev/null 2>&1
BIN=${CARGO_TARGET_DIR:-target}/release/vela
. "$(dirname "$0")/lib.sh"
bench_bootstrap "$BIN" "$BENCH_DIR/data"
STORE_HEADER=()
: >"$BENCH_DIR/vela.toml"
if [ "${STORE:-file}" = s3 ]; then
  cat >"$BENCH_DIR/vela.toml" <<TOML
[stores.s3]
type = "s3"
endpoint = "$VELA_S3_ENDPOINT"
region = "$VELA_S3_REGION"
bucket = "$VELA_S3_BUCKET"
access_key = "$VELA_S3_ACCESS_KEY"
secret_key = "$VELA_S3_SECRET_KEY"
prefix = "bench-$$/"
part_size_mib = ${PART_MIB:-5}
TOML
  STORE_HEADER=(-H "X-Image-Meta-Store: s3")
elif [ "${STORE:-file}" = swift ]; then
  cat >"$BENCH_DIR/vela.toml" <<TOML
[stores.swift]
type = "swift"
auth_version = 1
auth_url = "$VELA_SWIFT_AUTH_URL"
user = "$VELA_SWIFT_USER"
key = "$VELA_SWIFT_KEY"
container = "vela-bench"
prefix = "bench-$$/"
TOML
  STORE_HEADER=(-H "X-Image-Meta-Store: swift")
elif [ "${STORE:-file}" = vmware ]; then
  cat >"$BENCH_DIR/vela.toml" <<TOML
[stores.vsphere]
type = "vmware"
server_host = "$VCSIM_HOST"
server_username = "$VCSIM_USER"
server_password = "$VCSIM_PASSWORD"
datastores = ["$VCSIM_DATACENTER:$VCSIM_DATASTORE"]
store_image_dir = "/bench-$$"
insecure = true
task_poll_interval_ms = 50
TOML
  STORE_HEADER=(-H "X-Image-Meta-Store: vsphere")
elif [ "${STORE:-file}" = cinder ]; then
  cat >"$BENCH_DIR/vela.toml" <<TOML
[stores.volumes]
type = "cinder"
auth_url = "$CINDER_AUTH_URL"
username = "$CINDER_USER"
password = "$CINDER_PASSWORD"
project_name = "$CINDER_PROJECT"
volume_type = "$CINDER_VOLUME_TYPE"
TOML
  STORE_HEADER=(-H "X-Image-Meta-Store: volumes")
fi
if [ "${CACHE:-0}" = 1 ]; then
  printf '\n[cache]\nenabled = true\nmax_size = %d\n' $(( (SIZE_MIB + 1) * 1048576 )) >>"$BENCH_DIR/vela.toml"
fi

"$BIN" --config "$BENCH_DIR/vela.toml" serve --bind 127.0.0.1:0 --data-dir "$BENCH_DIR/data" >"$BENCH_DIR/out" 2>"$BENCH_DIR/err" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$BENCH_DIR"' EXIT
for _ in $(seq 100); do grep -q listening "$BENCH_DIR/out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^vela listening on //p' "$BENCH_DIR/out")
TOKEN=$(bench_token "$URL")

rss() { awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$PID/status; }
echo "store: ${STORE:-file}"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "server peak RSS after start: $(rss)"

ID=$(curl -sf -H "X-Auth-Token: $TOKEN" -X POST "$URL/v2/images" -H 'Content-Type: application/json' \
  -d '{"name":"bench","disk_format":"raw","container_format":"bare"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

gen() { python3 -c '
import os, sys
block = os.urandom(1 << 20)
out = sys.stdout.buffer
for _ in range(int(sys.argv[1])):
    out.write(block)
' "$SIZE_MIB"; }

start=$(date +%s.%N)
gen | curl -sf -H "X-Auth-Token: $TOKEN" "${STORE_HEADER[@]}" -X PUT -H 'Content-Type: application/octet-stream' -T - \
  "$URL/v2/images/$ID/file"
end=$(date +%s.%N)
up=$(python3 -c "print(f'{$SIZE_MIB*1048576/($end-$start)/1e6:.0f}')")
echo "upload:   ${SIZE_MIB} MiB in $(python3 -c "print(f'{$end-$start:.2f}')") s = ${up} MB/s; peak RSS so far: $(rss)"

download() {
  local start end
  start=$(date +%s.%N)
  curl -sf -H "X-Auth-Token: $TOKEN" -o /dev/null "$URL/v2/images/$ID/file"
  end=$(date +%s.%N)
  echo "$1 ${SIZE_MIB} MiB in $(python3 -c "print(f'{$end-$start:.2f}')") s = $(python3 -c "print(f'{$SIZE_MIB*1048576/($end-$start)/1e6:.0f}')") MB/s; peak RSS: $(rss)"
}
if [ "${CACHE:-0}" = 1 ]; then
  download "download (cold, fills the cache):"
  for _ in $(seq 600); do
    curl -sf -H "X-Auth-Token: $TOKEN" "$URL/v2/cache" | grep -q "$ID" && break
    sleep 0.1
  done
  curl -sf -H "X-Auth-Token: $TOKEN" "$URL/v2/cache" | grep -q "$ID" || { echo "image was not cached" >&2; exit 1; }
  download "download (warm, from the cache):"
else
  download "download:"
fi
curl -sf -H "X-Auth-Token: $TOKEN" "$URL/v2/images/$ID" | python3 -c 'import json,sys; i=json.load(sys.stdin); print("image:", i["status"], i["size"], i["checksum"])'
curl -sf -H "X-Auth-Token: $TOKEN" -X DELETE "$URL/v2/images/$ID"
