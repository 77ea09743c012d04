#!/usr/bin/env bash
# Runs a real one-node Ceph cluster (Debian's Ceph 16 packages) on loopback, for the storage
# back-end tests: radosgw's S3 and Swift APIs and an RBD pool.
#
#   scripts/ceph.sh start   fresh cluster; prints `export ...` lines on stdout (only those:
#                           `eval "$(scripts/ceph.sh start)"`), progress goes to stderr
#   scripts/ceph.sh stop    kills this cluster's daemons (those started with its ceph.conf)
#
# The cluster: one monitor (mon.a), one manager (mgr.x), one OSD (osd.0), radosgw
# (client.rgw.x, beast) on 127.0.0.1:$CEPH_RGW_PORT. No cephx (auth_*_required = none): clients
# need no keyring, only the ceph.conf ($CEPH_CONF, which the Ceph tools and librados read from
# the environment). ~4 s to start, ~270 MiB RSS when empty.
# `start` creates:
#   - the pool `rbd` (rbd pool init'ed);
#   - the rgw user `vela` with fixed S3 keys, its Swift subuser `vela:swift` with a fixed key
#     (Swift containers are the user's S3 buckets: one namespace, both APIs);
#   - the S3 bucket `vela-images`.
# S3 is path-style only (no rgw_dns_name). Swift: v1 auth at /auth/1.0, storage URL
# http://127.0.0.1:PORT/swift/v1 (no account in the URL).
#
# Environment: CEPH_DIR (state, default ${TMPDIR:-/tmp}/vela-ceph), CEPH_RGW_PORT (default
# 7480), CEPH_MON_PORT (default 6789); the OSD and mgr bind ports in Ceph's 6800-7300 range.
# CEPH_OBJECTSTORE: memstore (default: objects in the OSD's RAM, which costs about TWICE the
# stored bytes) or bluestore (a sparse file in CEPH_DIR; the OSD stays under ~1 GiB RSS,
# ~3 s more to start; the better choice for multi-GiB benchmarks). CEPH_STORE_GIB: the OSD's
# capacity (default 8 for memstore, 12 for bluestore).
# Packages are installed with apt-get when missing (needs root, or sudo).
set -euo pipefail

DIR="${CEPH_DIR:-${TMPDIR:-/tmp}/vela-ceph}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
RGW_PORT="${CEPH_RGW_PORT:-7480}"
MON_PORT="${CEPH_MON_PORT:-6789}"
STORE="${CEPH_OBJECTSTORE:-memstore}"
if [ "$STORE" = memstore ]; then STORE_GIB="${CEPH_STORE_GIB:-8}"; else STORE_GIB="${CEPH_STORE_GIB:-12}"; fi
CONF="$DIR/ceph.conf"
RGW_URL="http://127.0.0.1:$RGW_PORT"

S3_REGION=default             # radosgw's zonegroup; it accepts any SigV4 region (us-east-1 too)
S3_ACCESS_KEY=VELAACCESSKEY000000
S3_SECRET_KEY=velasecretkey0000000000000000000000000000
S3_BUCKET=vela-images
SWIFT_USER=vela:swift
SWIFT_KEY=velaswiftkey00000000000000000000000000000

# Ceph daemons and tools are slow to give up when the monitor is not there: bound every call.
CEPH_TIMEOUT=60

log() { printf 'ceph: [%3ss] %s\n' "$SECONDS" "$*" >&2; }

ensure_packages() {
  local missing=0 bin
  for bin in ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph rbd monmaptool; do
    command -v "$bin" >/dev/null 2>&1 || missing=1
  done
  dpkg -s librados-dev librbd-dev >/dev/null 2>&1 || missing=1
  [ "$missing" = 0 ] && return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  local pkgs=(ceph-mon ceph-osd ceph-mgr radosgw ceph-common librados-dev librbd-dev)
  local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}")
  log "installing ${pkgs[*]}"
  if ! "${install[@]}" >&2; then
    log "apt-get install failed; apt-get update and retry"
    "${sudo[@]}" apt-get update -qq >&2
    "${install[@]}" >&2
  fi
}

# Pids of the Ceph daemons started with this state dir's ceph.conf (exact `-c CONF` argument),
# whatever the state of their pid files: nothing else is ever matched.
our_pids() {
  local p exe i
  local -a args
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    case "${exe##*/}" in ceph-mon | ceph-mgr | ceph-osd | radosgw) ;; *) continue ;; esac
    mapfile -d '' args <"$p/cmdline" 2>/dev/null || continue
    for ((i = 0; i + 1 < ${#args[@]}; i++)); do
      if [ "${args[i]}" = -c ] && [ "${args[i + 1]}" = "$CONF" ]; then
        echo "${p#/proc/}"
        break
      fi
    done
  done
}

stop() {
  rm -f "$DIR/osd/osd.0.block"   # bluestore's file: GiBs of dead data (start wipes it anyway)
  local pids
  pids="$(our_pids)"
  [ -n "$pids" ] || return 0
  # SIGKILL: `start` wipes the state anyway, and a memstore OSD told to stop would first write
  # every object it holds to its data dir.
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  for _ in $(seq 100); do
    [ -n "$(our_pids)" ] || break
    sleep 0.1
  done
  if [ -n "$(our_pids)" ]; then
    log "daemons still running after SIGKILL: $(our_pids | tr '\n' ' ')"
    return 1
  fi
  rm -f "$DIR"/run/*.pid
  log "stopped"
}

# EXIT trap of `start`: a start that fails half-way leaves no daemon behind (and says why).
on_start_exit() {
  local rc=$?
  [ "$rc" = 0 ] && return 0
  log "start failed"
  log_tails
  stop || true
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A ceph CLI call, retried: a monitor that has just started (or is busy with a new manager)
# sometimes answers "EPERM: problem getting command descriptions". The calls made with it are
# idempotent (osd create with a fixed uuid, crush add, pool create).
ceph_() {
  local attempt
  for attempt in 1 2 3 4 5; do
    timeout "$CEPH_TIMEOUT" ceph -c "$CONF" --connect-timeout "$CEPH_TIMEOUT" "$@" && return 0
    [ "$attempt" = 5 ] && return 1
    log "ceph $* failed; again"
    sleep 1
  done
}

# S3 call signed with SigV4 (curl computes the signature; the payload is not hashed).
s3() {
  curl -sS --fail-with-body --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

log_tails() {
  local f
  for f in "$DIR"/log/*.log; do
    [ -f "$f" ] || continue
    printf '==> %s <==\n' "$f" >&2
    tail -n 30 "$f" >&2
  done
}

# The OSD's object store, $STORE_GIB GiB: room for a few 1 GiB test objects plus a 4 GiB
# benchmark (writes block, they do not fail, once the OSD is 95 % full).
store_conf() {
  local bytes=$((STORE_GIB * 1024 * 1024 * 1024))
  case "$STORE" in
    memstore)
      # Objects live in the OSD's RAM, which grows with what is stored: about twice the
      # stored bytes (4 GiB written = +8 GiB RSS), freed when they are deleted (for radosgw,
      # by its garbage collection, 10-30 s later). Hence 8 GiB by default: at most ~16 GiB RAM.
      cat <<EOF
osd_objectstore = memstore
memstore_device_bytes = $bytes
EOF
      ;;
    bluestore)
      # A sparse file in the state dir (on disk); the OSD's RAM stays near osd_memory_target.
      cat <<EOF
osd_objectstore = bluestore
bluestore_block_path = $DIR/osd/osd.0.block
bluestore_block_create = true
bluestore_block_size = $bytes
bluestore_fsck_on_mkfs = false
osd_memory_target = 1073741824
EOF
      ;;
  esac
}

write_conf() {
  local fsid="$1"
  # `\$name` is Ceph's own metavariable (mon.a, osd.0, ...). Log files, admin sockets and pid
  # files are set for the daemons only: clients (ceph, rbd, librados users) keep their
  # defaults, i.e. no log file and no admin socket clash between concurrent clients.
  cat >"$CONF" <<CONF
[global]
fsid = $fsid
mon_host = v1:127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $DIR/run
crash_dir = $DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_max_pg_per_osd = 1000
# HEALTH_OK on a healthy test cluster: no warnings about what is deliberate here (one copy,
# no cephx, v1 only) or about a disk under 30 % free (the mon shuts down at 1 % free).
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_warn_on_msgr2_not_enabled = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
$(store_conf)

[mon]
# Each osdmap change (pool create, application enable, OSD boot...) waits for the next Paxos
# proposal: 1 s apart by default, ~15 of them while starting.
paxos_propose_interval = 0.1
mon_data = $DIR/mon/\$name
mon_cluster_log_file = $DIR/log/cluster.log
log_file = $DIR/log/\$name.log
admin_socket = $DIR/run/\$name.asok
pid_file = $DIR/run/\$name.pid

[mgr]
# Only the modules the manager always runs: RSS ~150 MiB instead of ~300.
mgr_disabled_modules = alerts diskprediction_local influx insights iostat localpool mirroring nfs osd_perf_query osd_support prometheus restful selftest snap_schedule stats telegraf test_orchestrator zabbix
mgr_data = $DIR/mgr/\$name
log_file = $DIR/log/\$name.log
admin_socket = $DIR/run/\$name.asok
pid_file = $DIR/run/\$name.pid

[osd]
osd_crush_update_on_start = false
osd_class_update_on_start = false
osd_data = $DIR/osd/\$name
log_file = $DIR/log/\$name.log
admin_socket = $DIR/run/\$name.asok
pid_file = $DIR/run/\$name.pid

[client.rgw.x]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $DIR/rgw
log_file = $DIR/log/\$name.log
admin_socket = $DIR/run/\$name.asok
pid_file = $DIR/run/\$name.pid
# Both APIs (rgw_enable_apis' default has s3, swift and swift_auth): Swift under /swift/v1,
# its v1 auth under /auth (/auth/1.0), no account in the storage URL.
rgw_swift_url_prefix = swift
rgw_swift_auth_entry = auth
rgw_swift_account_in_url = false
# Deleted objects' data is reclaimed after 10 s (default: 2 h), or it stays in the OSD's RAM.
rgw_gc_obj_min_wait = 10
rgw_gc_processor_period = 10
CONF
}

start() {
  case "$STORE" in
    memstore | bluestore) ;;
    *) log "CEPH_OBJECTSTORE must be memstore or bluestore, not '$STORE'"; exit 2 ;;
  esac
  case "$STORE_GIB" in
    '' | *[!0-9]* | 0) log "CEPH_STORE_GIB must be a whole number of GiB, not '$STORE_GIB'"; exit 2 ;;
  esac
  ensure_packages
  stop
  local port
  for port in "$MON_PORT" "$RGW_PORT"; do
    if port_in_use "$port"; then
      log "127.0.0.1:$port is already in use (another Ceph? set CEPH_MON_PORT / CEPH_RGW_PORT)"
      exit 1
    fi
  done
  rm -rf "$DIR"
  mkdir -p "$DIR"/{run,log,crash,mon,mgr/mgr.x,osd/osd.0,rgw}
  local fsid osd_uuid
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
  write_conf "$fsid"

  trap on_start_exit EXIT

  log "mon.a on 127.0.0.1:$MON_PORT, mgr.x"
  monmaptool --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$DIR/monmap" >&2
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >&2
  ceph-mon -c "$CONF" -i a >&2      # the daemons fork into the background themselves
  ceph-mgr -c "$CONF" -i x >&2

  log "osd.0 ($STORE)"
  local id
  id="$(ceph_ osd create "$osd_uuid")"
  [ "$id" = 0 ] || { log "osd create gave id '$id', expected 0"; exit 1; }
  # The OSD does not place itself in the CRUSH map (osd_crush_update_on_start = false): its
  # own `osd crush create-or-move` at start-up is sometimes sent before its monitor client
  # has the monmap, with a zero fsid, and the monitor refuses it ('wrong fsid'), which kills
  # the OSD. The retries are for any other such race.
  ceph_ osd crush add osd.0 1.0 root=default >&2
  # The same uuid as `osd create`, or the monitor refuses the OSD.
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >&2
  local attempt
  for attempt in 1 2 3; do
    ceph-osd -c "$CONF" -i 0 >&2 && break   # exits non-zero when its start-up fails
    [ "$attempt" != 3 ] || exit 1
    log "osd.0 failed to start; again"
    sleep 1
  done

  log "pool rbd"
  ceph_ osd pool create rbd 8 >&2
  timeout "$CEPH_TIMEOUT" rbd -c "$CONF" pool init rbd >&2   # waits for the OSD to be up

  log "radosgw on $RGW_URL"
  radosgw -c "$CONF" -n client.rgw.x >&2
  local deadline=$((SECONDS + 90)) code=000
  while [ "$SECONDS" -lt "$deadline" ]; do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$RGW_URL/" 2>/dev/null)" || true
    [ "$code" = 200 ] && break
    sleep 0.2
  done
  if [ "$code" != 200 ]; then
    log "radosgw did not answer on $RGW_URL within 90 s (last HTTP status $code)"
    exit 1
  fi

  log "rgw user vela (S3 keys), subuser $SWIFT_USER (Swift key), bucket $S3_BUCKET"
  local admin=(timeout "$CEPH_TIMEOUT" radosgw-admin -c "$CONF")
  "${admin[@]}" user create --uid=vela --display-name=vela \
    --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
  "${admin[@]}" subuser create --uid=vela --subuser="$SWIFT_USER" --access=full >/dev/null
  "${admin[@]}" key create --subuser="$SWIFT_USER" --key-type=swift \
    --secret-key="$SWIFT_KEY" >/dev/null
  s3 -o /dev/null -X PUT "$RGW_URL/$S3_BUCKET" >&2

  log "ready in ${SECONDS} s"
  cat <<ENV
export CEPH_CONF=$CONF
export CEPH_RBD_POOL=rbd
export VELA_S3_ENDPOINT=$RGW_URL
export VELA_S3_REGION=$S3_REGION
export VELA_S3_BUCKET=$S3_BUCKET
export VELA_S3_ACCESS_KEY=$S3_ACCESS_KEY
export VELA_S3_SECRET_KEY=$S3_SECRET_KEY
export VELA_SWIFT_AUTH_URL=$RGW_URL/auth/1.0
export VELA_SWIFT_USER=$SWIFT_USER
export VELA_SWIFT_KEY=$SWIFT_KEY
ENV
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
