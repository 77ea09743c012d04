# Shared by the benchmarks: the server runs as deployed by default (embedded identity), and the
# load carries a real token, so the numbers include authentication.

# bench_bootstrap BIN DATA_DIR: creates the admin user (password "bench-admin").
bench_bootstrap() {
  VELA_IDENTITY_PASSWORD=bench-admin "$1" --data-dir "$2" identity bootstrap >/dev/null 2>&1
}

# bench_token URL: an admin token, project-scoped.
bench_token() {
  curl -sf -D - -o /dev/null -X POST "$1/v3/auth/tokens?nocatalog" -H 'Content-Type: application/json' \
    -d '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",
         "domain": {"id": "default"}, "password": "bench-admin"}}},
         "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}' |
    awk 'tolower($1) == "x-subject-token:" {print $2}' | tr -d '\r'
}

# bench_wrk LABEL WRK_ARGS...: wrk for $DURATION s, 2 threads, 8 connections; prints one line:
# requests/s, median and 99th-percentile latency, and the count of non-2xx answers. Leaves the
# requests/s in BENCH_RPS. With BENCH_CPU=1 and the server's PID in PID, a second line gives
# the CPU time per request of the server, the database server and the broker (bench/cpu.py),
# and BENCH_CPU_LINE holds it. BENCH_CLIENT_CPUS (a taskset CPU list) pins wrk.
bench_wrk() {
  local label=$1; shift
  local out rps p50 p99 errs n cpu0
  local cpu_py
  cpu_py="$(dirname "${BASH_SOURCE[0]}")/cpu.py"
  if [ "${BENCH_CPU:-}" = 1 ] && [ -n "${PID:-}" ]; then
    cpu0=$(mktemp)
    python3 "$cpu_py" snap "$PID" >"$cpu0"
  fi
  out=$(${BENCH_CLIENT_CPUS:+taskset -c "$BENCH_CLIENT_CPUS"} wrk -t2 -c8 -d"${DURATION}s" --latency "$@")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-48s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$label" "$rps" "$p50" "$p99" "${errs:-0}"
  BENCH_RPS=$rps
  if [ -n "${cpu0:-}" ]; then
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    BENCH_CPU_LINE=$(python3 "$cpu_py" per "$cpu0" <(python3 "$cpu_py" snap "$PID") "$n")
    echo "    CPU us per request: $BENCH_CPU_LINE"
    rm -f "$cpu0"
  fi
}

# bench_create_lua FILE [FIELDS]: a wrk script that creates an image (raw, bare, named
# bench-create) with the extra JSON FIELDS (`"os_distro": "x"`).
bench_create_lua() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '{"name": "bench-create", "disk_format": "raw", "container_format": "bare"${2:+, $2}}'
wrk.headers["Content-Type"] = "application/json"
LUA
}

# bench_serve BIN DIR: starts `vela serve` on DIR (with DIR/vela.toml) on a free port and waits
# for it; sets PID, URL and TOKEN (an admin token, see bench_token). BENCH_SERVER_CPUS (a
# taskset CPU list) pins the server.
bench_serve() {
  # shellcheck disable=SC2086 # BENCH_SERVER_WRAP is a command line (valgrind …)
  ${BENCH_SERVER_WRAP:-} ${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} "$1" --config "$2/vela.toml" serve \
    --bind 127.0.0.1:0 --data-dir "$2" >"$2/out" 2>"$2/err" &
  PID=$!
  for _ in $(seq 1200); do grep -q listening "$2/out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^vela listening on //p' "$2/out")
  TOKEN=$(bench_token "$URL")
}

# bench_outbox_depth DIR: rows in the notification outbox: of DIR/vela.sqlite, or with
# DB=postgres of VELA_DATABASE__URL.
bench_outbox_depth() {
  if [ "${DB:-sqlite}" = postgres ]; then
    psql "$VELA_DATABASE__URL" -qAtc "SELECT COUNT(*) FROM notification_outbox"
  else
    python3 -c 'import sqlite3,sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT COUNT(*) FROM notification_outbox").fetchone()[0])' "$1/vela.sqlite"
  fi
}

# bench_outbox_drained DIR: waits (two minutes at most) until that outbox is empty.
bench_outbox_drained() {
  for _ in $(seq 600); do
    [ "$(bench_outbox_depth "$1")" = 0 ] && return 0
    sleep 0.2
  done
  echo "the outbox of $1 did not drain; the server's log ends:" >&2
  tail -20 "$1/err" >&2 || true
  return 1
}
