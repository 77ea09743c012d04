# Sourced by the scripts that run a test server in the background with a pid file
# (scripts/oidc.sh, scripts/vcsim.sh). They set PIDFILE before calling these.

# alive PID: the process runs and is not a zombie (an exited server's parent is pid 1, which
# may reap it late).
alive() { local st; st="$(ps -o stat= -p "$1" 2>/dev/null)" && [ "${st:0:1}" != Z ]; }

# running_pid: prints the pid in $PIDFILE when that process is alive.
running_pid() {
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [ -n "$pid" ] && alive "$pid" && printf '%s' "$pid"
}

# stop_running: SIGTERM, then SIGKILL after 2.5 s; removes $PIDFILE.
stop_running() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}
