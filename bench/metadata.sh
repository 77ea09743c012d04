#!/usr/bin/env bash
# Metadata benchmark (not a test): seeds N images (default 100k) into a fresh SQLite database,
# then measures with wrk, at concurrency 8 on this machine, image shows, filtered and sorted
# list pages, marker paging and image creates. Reports requests/s, latency percentiles, errors
# and the server's peak RSS.
#
#   bash bench/metadata.sh              # 100k images, SQLite
#   DB=postgres bash bench/metadata.sh  # the same on the local PostgreSQL (throw-away database)
#   IMAGES=10000 DURATION=5 bash bench/metadata.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${IMAGES:-100000}
DURATION=${DURATION:-10}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin vela >/dev/null 2>&1
BIN=${CARGO_TARGET_DIR:-target}/release/vela
. "$(dirname "$0")/lib.sh"
DB=${DB:-sqlite}
DIR=$(mktemp -d /var/tmp/vela-meta.XXXXXX)
PGBASE=${VELA_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PGDB=vela_bench_$$
cleanup() {
  kill $PID 2>/dev/null || true
  rm -rf "$DIR"
  if [ "$DB" = postgres ]; then psql "$PGBASE/postgres" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
PID=
if [ "$DB" = postgres ]; then
  psql "$PGBASE/postgres" -qc "CREATE DATABASE $PGDB" >/dev/null
  export VELA_DATABASE__URL="$PGBASE/$PGDB"
fi

"$BIN" --data-dir "$DIR" db migrate >/dev/null 2>&1
python3 - "$DIR/vela.sqlite" "$IMAGES" "$DB" "$DIR" <<'PY'
import csv, os, sqlite3, sys, uuid, random, time
n = int(sys.argv[2])
now = int(time.time() * 1e6) - n * 1000
rnd = random.Random(42)
projects = [f"project-{i}" for i in range(50)]
vis = ["public", "private", "shared", "community"]
rows, props, tags = [], [], []
for i in range(n):
    iid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    rows.append((iid, f"image-{i:06d}", rnd.choice(["active"] * 8 + ["queued", "deactivated"]),
                 rnd.choice(vis), 0, 0, rnd.choice(projects), "bare",
                 rnd.choice(["raw", "qcow2", "vmdk", "iso"]), 0, 0, rnd.randrange(1, 10**10),
                 None, None, None, None, now + i * 1000, now + i * 1000, 0, None))
    props.append((iid, "os_distro", rnd.choice(["ubuntu", "debian", "fedora", "cirros"])))
    tags.append((iid, f"tag-{i % 100}"))
cols = "id, name, status, visibility, protected, os_hidden, owner, container_format, disk_format, min_disk, min_ram, size, virtual_size, checksum, os_hash_algo, os_hash_value, created_at, updated_at, deleted, deleted_at"
if sys.argv[3] == "sqlite":
    db = sqlite3.connect(sys.argv[1])
    db.executemany(f"INSERT INTO images ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.executemany("INSERT INTO image_properties VALUES (?,?,?)", props)
    db.executemany("INSERT INTO image_tags VALUES (?,?)", tags)
    db.commit()
else:
    for table, data, c in (("images", rows, cols), ("image_properties", props, "image_id, name, value"), ("image_tags", tags, "image_id, value")):
        path = os.path.join(sys.argv[4], table + ".csv")
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([["" if v is None else v for v in r] for r in data])
        os.system(f"psql \"$VELA_DATABASE__URL\" -qc \"\\copy {table} ({c}) FROM '{path}' WITH (FORMAT csv, NULL '')\"")
    os.system("psql \"$VELA_DATABASE__URL\" -qc 'ANALYZE'")
print(rows[n // 2][0])
PY
bench_bootstrap "$BIN" "$DIR"

"$BIN" serve --bind 127.0.0.1:0 --data-dir "$DIR" >"$DIR/out" 2>"$DIR/err" &
PID=$!
for _ in $(seq 100); do grep -q listening "$DIR/out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^vela listening on //p' "$DIR/out")
TOKEN=$(bench_token "$URL")
MID=$(curl -sf -H "X-Auth-Token: $TOKEN" "$URL/v2/images?limit=1&sort=name:asc&name=image-$(printf %06d $((IMAGES / 2)))" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["id"])')

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $IMAGES images in $DB; wrk -t2 -c8 -d${DURATION}s"
run() { bench_wrk "$1" -H "X-Auth-Token: $TOKEN" "${@:2}"; }
run "show image" "$URL/v2/images/$MID"
run "list page (default, 25)" "$URL/v2/images"
run "list 20, name filter" "$URL/v2/images?limit=20&name=image-$(printf %06d $((IMAGES / 3)))"
run "list 20, tag+property+status" "$URL/v2/images?limit=20&tag=tag-7&os_distro=ubuntu&status=active"
run "list 20, sort name asc + marker" "$URL/v2/images?limit=20&sort=name:asc&marker=$MID"
run "list 20, size_min + sort size" "$URL/v2/images?limit=20&size_min=5000000000&sort_key=size&sort_dir=asc"
bench_create_lua "$DIR/create.lua" '"os_distro": "x"'
run "create image" -s "$DIR/create.lua" "$URL/v2/images"
echo "server peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$PID/status)"
