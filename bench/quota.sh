#!/usr/bin/env bash
# Quota benchmark (not a test): what enforcing unified limits costs. Image creates per second
# (wrk -t2 -c8) with [quota] off and on (limits in the embedded identity service, large but
# finite, so every create counts the project's images under the project's lock in its
# transaction; an unlimited resource is not checked at all), then uploads of SIZE_MIB MiB,
# PARALLEL at a time, off and on. The project grows by every create of the run.
#
#   bash bench/quota.sh                    # SQLite
#   DB=postgres bash bench/quota.sh        # the local PostgreSQL (throw-away databases)
#   DURATION=20 SIZE_MIB=256 PARALLEL=4 bash bench/quota.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
DB=${DB:-sqlite}
SIZE_MIB=${SIZE_MIB:-128}
PARALLEL=${PARALLEL:-4}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin vela >/dev/null 2>&1
BIN=${CARGO_TARGET_DIR:-target}/release/vela
. "$(dirname "$0")/lib.sh"
PGBASE=${VELA_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
ROOT=$(mktemp -d /var/tmp/vela-quota-bench.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  rm -rf "$ROOT"
  for d in off on; do
    [ "$DB" = postgres ] && psql "$PGBASE/postgres" -qc "DROP DATABASE IF EXISTS vela_qbench_${d}_$$ WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

start() { # start NAME ENABLED
  local dir="$ROOT/$1"
  mkdir -p "$dir"
  if [ "$DB" = postgres ]; then
    psql "$PGBASE/postgres" -qc "CREATE DATABASE vela_qbench_${1}_$$" >/dev/null
    export VELA_DATABASE__URL="$PGBASE/vela_qbench_${1}_$$"
  fi
  printf '[quota]\nenabled = %s\n' "$2" >"$dir/vela.toml"
  "$BIN" --config "$dir/vela.toml" --data-dir "$dir" db migrate >/dev/null 2>&1
  bench_bootstrap "$BIN" "$dir"
  for r in image_size_total image_stage_total image_count_total image_count_uploading; do
    "$BIN" --config "$dir/vela.toml" --data-dir "$dir" identity limit default "$r" 100000000 >/dev/null 2>&1
  done
  bench_serve "$BIN" "$dir"
}

bench_create_lua "$ROOT/create.lua"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$ROOT/data.bin"

uploads() { # uploads LABEL: PARALLEL uploads of data.bin at once, MB/s over all of them
  local ids=() id t0 t1
  for _ in $(seq "$PARALLEL"); do
    id=$(curl -s -X POST "$URL/v2/images" -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' \
      -d '{"name": "bench-up", "disk_format": "raw", "container_format": "bare"}' |
      python3 -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t).get("id") or sys.exit(t))')
    ids+=("$id")
  done
  local pids=()
  t0=$(date +%s.%N)
  for id in "${ids[@]}"; do
    curl -sf -X PUT "$URL/v2/images/$id/file" -H "X-Auth-Token: $TOKEN" \
      -H 'Content-Type: application/octet-stream' -T "$ROOT/data.bin" &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(date +%s.%N)
  printf '%-48s %10s MB/s   (%s x %s MiB in %s s)\n' "$1" \
    "$(python3 -c "print(f'{$PARALLEL*$SIZE_MIB*1.048576/($t1-$t0):.0f}')")" "$PARALLEL" "$SIZE_MIB" \
    "$(python3 -c "print(f'{$t1-$t0:.2f}')")"
}

echo "machine: $(nproc) cores; $DB; wrk -t2 -c8 -d${DURATION}s"
for mode in off on; do
  enabled=false
  [ "$mode" = on ] && enabled=true
  start "$mode" "$enabled"
  bench_wrk "create image, quotas $mode" -H "X-Auth-Token: $TOKEN" -s "$ROOT/create.lua" "$URL/v2/images"
  uploads "upload, quotas $mode"
  echo "server peak RSS (quotas $mode): $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$PID/status)"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
