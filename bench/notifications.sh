#!/usr/bin/env bash
# Notification benchmark (not a test): image creates per second with notifications off, with
# notifications on and the broker unreachable (every create also writes its image.create to the
# outbox: the outbox alone), and with driver = "messagingv2" to the machine's RabbitMQ (the
# sender also publishes, and the broker runs on the same two cores). The three runs repeat
# ROUNDS times, interleaved, each on a new database; the summary gives each mode's median and
# its cost against "off". Then how fast the sender drains a backlog of outbox rows (messages/s
# with publisher confirms). wrk -t2 -c8 on this machine.
#
#   bash bench/notifications.sh              # SQLite
#   DB=postgres bash bench/notifications.sh  # the local PostgreSQL (throw-away databases)
#   ROUNDS=5 DURATION=20 AMQP_URL=rabbit://guest:guest@127.0.0.1:5672/ bash bench/notifications.sh
#   INSTR=1 [DB=postgres] bash bench/notifications.sh  # instructions per create (callgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
DB=${DB:-sqlite}
AMQP_URL=${AMQP_URL:-rabbit://guest:guest@127.0.0.1:5672/}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin vela >/dev/null 2>&1
BIN=${CARGO_TARGET_DIR:-target}/release/vela
. "$(dirname "$0")/lib.sh"
PGBASE=${VELA_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
ROOT=$(mktemp -d /var/tmp/vela-notify-bench.XXXXXX)
PID=
DBS=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  rm -rf "$ROOT"
  for d in $DBS; do
    psql "$PGBASE/postgres" -qc "DROP DATABASE IF EXISTS vela_nbench_${d}_$$ WITH (FORCE)" >/dev/null 2>&1 || true
  done
  # The benchmark's queues on the shared broker.
  if command -v rabbitmqctl >/dev/null; then
    for q in vela-bench.info vela-bench.error; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
  fi
}
trap cleanup EXIT

# PIN=1: the broker runs as if on a host of its own. The server and PostgreSQL get CPU 0, the
# broker and wrk CPU 1 (wrk and the broker together use well under one CPU), in all three
# modes alike, so the difference between the modes is what notifications cost the service.
pin() { # pin CPUS PID...: every thread of each process
  for p in "${@:2}"; do taskset -a -cp "$1" "$p" >/dev/null 2>&1 || true; done
}
if [ "${PIN:-0}" = 1 ]; then
  ALL_CPUS="0-$(($(nproc) - 1))"
  unpin() {
    pin "$ALL_CPUS" $(pgrep -u postgres) $(pgrep -f beam.smp) $(pgrep -x epmd)
    cleanup
  }
  trap unpin EXIT
  pin 0 $(pgrep -u postgres)
  pin 1 $(pgrep -f beam.smp) $(pgrep -x epmd)
  export BENCH_SERVER_CPUS=0 BENCH_CLIENT_CPUS=1
fi

start() { # start NAME DRIVER [TRANSPORT_URL]
  local dir="$ROOT/$1"
  mkdir -p "$dir"
  if [ "$DB" = postgres ]; then
    DBS="$DBS $1"
    psql "$PGBASE/postgres" -qc "CREATE DATABASE vela_nbench_${1}_$$" >/dev/null
    export VELA_DATABASE__URL="$PGBASE/vela_nbench_${1}_$$"
  fi
  cat >"$dir/vela.toml" <<EOF
[notifications]
driver = "$2"
transport_url = "${3:-$AMQP_URL}"
exchange = "vela-bench"
topics = ["vela-bench"]
EOF
  "$BIN" --data-dir "$dir" db migrate >/dev/null 2>&1
  bench_bootstrap "$BIN" "$dir"
  bench_serve "$BIN" "$dir"
}

bench_create_lua "$ROOT/create.lua" '"os_distro": "x"'
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

# INSTR=1: instructions instead of creates/s. The server runs under valgrind's callgrind; after
# a warm-up, N creates (2 000) go one after another over one connection, and the count covers
# exactly those (and, when publishing, the sender until the outbox is empty). Counts repeat
# from run to run whatever else the machine does, where creates/s on two shared cores move by
# 10 % and more between runs. With SQLite the database engine runs inside the server and is
# counted; with DB=postgres only the server is.
if [ "${INSTR:-0}" = 1 ]; then
  command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
  N=${N:-2000}
  export BENCH_SERVER_WRAP="valgrind --tool=callgrind --callgrind-out-file=$ROOT/cg.%p"
  creates() { # creates COUNT: image creates, one after another on one connection
    python3 - "$URL" "$TOKEN" "$1" <<'PY'
import http.client, json, sys, urllib.parse
url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
body = json.dumps({"name": "bench-create", "disk_format": "raw", "container_format": "bare",
                   "os_distro": "x"})
for _ in range(n):
    c.request("POST", "/v2/images", body, {"X-Auth-Token": token, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 201:
        sys.exit(f"create answered {r.status}")
PY
  }
  instructions() { # instructions NAME DRIVER [TRANSPORT_URL]: instructions per create
    local publishing=
    [ "$2" = messagingv2 ] && [ -z "${3:-}" ] && publishing=1
    start "$@"
    creates 300
    [ -z "$publishing" ] || bench_outbox_drained "$ROOT/$1"
    callgrind_control -z "$PID" >/dev/null 2>&1
    creates "$N"
    [ -z "$publishing" ] || bench_outbox_drained "$ROOT/$1"
    callgrind_control -d "$PID" >/dev/null 2>&1
    local out
    out=$(ls -t "$ROOT/cg.$PID".* | head -1)
    stop
    echo $(($(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}') / N))
  }
  echo "machine: $(nproc) cores; $DB; $N creates per mode after 300 to warm up; valgrind --tool=callgrind"
  off=$(instructions off noop)
  away=$(instructions away messagingv2 "rabbit://guest:guest@127.0.0.1:9/")
  on=$(instructions on messagingv2)
  python3 - "$off" "$away" "$on" <<'PY'
import sys
off, away, on = (int(x) for x in sys.argv[1:])
for label, v in (("off", off), ("on, broker away (outbox alone)", away), ("on, publishing", on)):
    print(f"server instructions per create, notifications {label:31} {v:8d}  ({(v - off) / off * 100:+5.1f} %)")
PY
  exit 0
fi

echo "machine: $(nproc) cores; $DB; wrk -t2 -c8 -d${DURATION}s; $ROUNDS rounds; broker ${AMQP_URL##*@}${BENCH_SERVER_CPUS:+; server and database on CPU $BENCH_SERVER_CPUS, wrk and broker on CPU $BENCH_CLIENT_CPUS}"
export BENCH_CPU=1
declare -A RPS=([off]="" [away]="" [on]="") CPU=([off]="" [away]="" [on]="")
for r in $(seq "$ROUNDS"); do
  start "off$r" noop
  bench_wrk "[$r] create image, notifications off" -H "X-Auth-Token: $TOKEN" -s "$ROOT/create.lua" "$URL/v2/images"
  RPS[off]+=" $BENCH_RPS"; CPU[off]+="$BENCH_CPU_LINE;"
  stop

  # The outbox alone: the broker is unreachable, so nothing is published and every create
  # also writes its row. This is the cost on the API path.
  start "away$r" messagingv2 "rabbit://guest:guest@127.0.0.1:9/"
  bench_wrk "[$r] create image, notifications on, broker away" -H "X-Auth-Token: $TOKEN" -s "$ROOT/create.lua" "$URL/v2/images"
  RPS[away]+=" $BENCH_RPS"; CPU[away]+="$BENCH_CPU_LINE;"
  echo "    outbox rows kept while the broker is away: $(bench_outbox_depth "$ROOT/away$r")"
  stop

  start "on$r" messagingv2
  bench_wrk "[$r] create image, notifications on (messagingv2)" -H "X-Auth-Token: $TOKEN" -s "$ROOT/create.lua" "$URL/v2/images"
  RPS[on]+=" $BENCH_RPS"; CPU[on]+="$BENCH_CPU_LINE;"
  left=$(bench_outbox_depth "$ROOT/on$r")
  t0=$(date +%s.%N)
  bench_outbox_drained "$ROOT/on$r"
  t1=$(date +%s.%N)
  echo "    outbox left after the run: $left; drained in $(python3 -c "print(f'{$t1-$t0:.1f}')") s;" \
    "server peak RSS $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$PID/status)"
  [ "$r" = "$ROUNDS" ] || stop
done
python3 - "${RPS[off]}" "${RPS[away]}" "${RPS[on]}" "${CPU[off]}" "${CPU[away]}" "${CPU[on]}" <<'PY'
import statistics, sys
rps = [[float(x) for x in a.split()] for a in sys.argv[1:4]]
def cpu(arg):  # "vela 330 postgres 300 broker 10;..." -> per group, the runs' values
    out = {}
    for run in filter(None, arg.split(";")):
        f = run.split()
        for g, v in zip(f[::2], f[1::2]):
            out.setdefault(g, []).append(float(v))
    return out
cpus = [cpu(a) for a in sys.argv[4:7]]
base = statistics.median(rps[0])
def ours(c):  # the server's and the database's CPU per create
    return statistics.median([sum(v) for v in zip(*(c[g] for g in c if g != "broker"))] or [0])
base_cpu = ours(cpus[0])
labels = ("off", "on, broker away (outbox alone)", "on, publishing")
for label, runs, c in zip(labels, rps, cpus):
    m = statistics.median(runs)
    broker = statistics.median(c.get("broker") or [0])
    print(f"median creates/s, notifications {label:31} {m:8.0f}  ({(m - base) / base * 100:+5.1f} %)"
          f"   CPU us/create server+database {ours(c):4.0f} ({(ours(c) - base_cpu) / base_cpu * 100:+5.1f} %),"
          f" broker {broker:3.0f}")
PY

# Drain rate: a backlog built while the sender is away (the server stopped), then sent.
stop
N=20000
dir="$ROOT/on$ROUNDS"
python3 - "$dir" "$N" "$DB" <<'PY'
import json, os, subprocess, sys, time, uuid
d, n, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
payload = {"id": str(uuid.uuid4()), "name": "backlog", "status": "queued"}
rows = [("INFO", json.dumps({"message_id": str(uuid.uuid4()), "publisher_id": "image.bench",
         "event_type": "image.update", "priority": "INFO", "payload": payload,
         "timestamp": "2026-01-01 00:00:00.000000"}), int(time.time() * 1e6)) for _ in range(n)]
if db == "postgres":
    import csv, io
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    subprocess.run(["psql", os.environ["VELA_DATABASE__URL"], "-qc",
                    "\\copy notification_outbox (priority, message, created_at) FROM STDIN WITH (FORMAT csv)"],
                   input=buf.getvalue(), text=True, check=True)
else:
    import sqlite3
    c = sqlite3.connect(f"{d}/vela.sqlite")
    c.executemany("INSERT INTO notification_outbox (priority, message, created_at) VALUES (?, ?, ?)", rows)
    c.commit()
PY
cpu0=$(mktemp)
python3 bench/cpu.py snap 0 >"$cpu0"
${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} "$BIN" --config "$dir/vela.toml" serve \
  --bind 127.0.0.1:0 --data-dir "$dir" >"$dir/out" 2>"$dir/err" &
PID=$!
t0=$(date +%s.%N)
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
bench_outbox_drained "$dir"
t1=$(date +%s.%N)
python3 -c "print(f'sender drain: $N messages in {$t1-$t0:.1f} s = {$N/($t1-$t0):.0f} msg/s (publisher confirms, delete per batch)')"
echo "    CPU us per message (server start included): $(python3 bench/cpu.py per "$cpu0" <(python3 bench/cpu.py snap "$PID") "$N")"
rm -f "$cpu0"
echo "server peak RSS while draining: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$PID/status)"
