#!/usr/bin/env bash
# Runs a real OpenID Connect provider (npm `oidc-provider`, panva's certified OP; version pinned
# in scripts/oidc/package.json) on loopback, for the OIDC federation tests.
#
#   scripts/oidc.sh start          installs it (npm ci into $OIDC_DIR, once), starts it in the
#                                  background, waits for discovery; prints `export OIDC_...` lines
#                                  on stdout (only those: `eval "$(scripts/oidc.sh start)"`)
#   scripts/oidc.sh env            prints the same lines for the running provider
#   scripts/oidc.sh rotate [drop]  a NEW RS256 key signs from now on; the JWKS publishes it first
#                                  and keeps the previous key (`drop`: publishes only the new
#                                  one); the running provider reloads in place (SIGHUP: same
#                                  port, sessions/grants/refresh tokens kept); prints
#                                  `export OIDC_SIGNING_KID=...`
#   scripts/oidc.sh stop
#
# Issuer http://127.0.0.1:$PORT. Client $OIDC_CLIENT_ID (default vela) / $OIDC_CLIENT_SECRET,
# client_secret_basic or client_secret_post; grants authorization_code (+PKCE S256),
# refresh_token, client_credentials, password. Users alice/alice-oidc-pw (groups [engineers])
# and bob/bob-oidc-pw (groups [auditors]); the login page (/interaction/UID: form fields
# username, password) checks passwords; consent is automatic. Access tokens are RS256 JWTs
# (typ at+jwt) with aud $OIDC_AUDIENCE and preferred_username, email, groups; id_tokens carry
# the claims of the requested scopes (profile, email, groups). See scripts/oidc/provider.mjs.
#
# Environment: OIDC_DIR (install + state: node_modules, jwks.json (kept across starts),
# provider.log, provider.pid; default $REPO/.oidc, which ignores itself for git), OIDC_PORT
# (default: any free port), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET (default vela-oidc-client-secret),
# OIDC_AUDIENCE (an absolute URI, also the resource indicator; default urn:vela:image),
# OIDC_REDIRECT_URIS (comma-separated; default
# http://127.0.0.1:9292/v3/auth/OS-FEDERATION/websso/openid/redirect, Keystone's WebSSO path
# on Vela's default port), OIDC_ACCESS_TOKEN_TTL (seconds, default 3600),
# OIDC_ACCESS_TOKEN_FORMAT (jwt, the default, or opaque: introspectable, not verifiable by JWKS).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/scripts/oidc"
export OIDC_DIR="${OIDC_DIR:-$REPO/.oidc}"
export OIDC_CLIENT_ID="${OIDC_CLIENT_ID:-vela}"
export OIDC_CLIENT_SECRET="${OIDC_CLIENT_SECRET:-vela-oidc-client-secret}"
export OIDC_AUDIENCE="${OIDC_AUDIENCE:-urn:vela:image}"
export OIDC_REDIRECT_URIS="${OIDC_REDIRECT_URIS:-http://127.0.0.1:9292/v3/auth/OS-FEDERATION/websso/openid/redirect}"
PIDFILE="$OIDC_DIR/provider.pid"
PORTFILE="$OIDC_DIR/provider.port"

log() { printf 'oidc: %s\n' "$*" >&2; }

install() {
  mkdir -p "$OIDC_DIR"
  [ -f "$OIDC_DIR/.gitignore" ] || printf '*\n' >"$OIDC_DIR/.gitignore"
  if ! cmp -s "$SRC/package-lock.json" "$OIDC_DIR/package-lock.json" ||
    [ ! -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ]; then
    log "installing oidc-provider into $OIDC_DIR (npm ci)"
    cp "$SRC/package.json" "$SRC/package-lock.json" "$OIDC_DIR/"
    (cd "$OIDC_DIR" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
  fi
  # ESM resolves imports next to the importing file: the provider runs from $OIDC_DIR.
  cp "$SRC/provider.mjs" "$OIDC_DIR/provider.mjs"
}

# shellcheck source=scripts/daemon.sh
. "$REPO/scripts/daemon.sh"
stop() {
  stop_running
  rm -f "$PORTFILE"
}

print_env() {
  local port
  port="$(cat "$PORTFILE")"
  printf 'export %s=%q\n' \
    OIDC_ISSUER "http://127.0.0.1:$port" \
    OIDC_PORT "$port" \
    OIDC_CLIENT_ID "$OIDC_CLIENT_ID" \
    OIDC_CLIENT_SECRET "$OIDC_CLIENT_SECRET" \
    OIDC_AUDIENCE "$OIDC_AUDIENCE" \
    OIDC_REDIRECT_URIS "$OIDC_REDIRECT_URIS" \
    OIDC_DIR "$OIDC_DIR" \
    OIDC_ALICE_USERNAME alice OIDC_ALICE_PASSWORD alice-oidc-pw \
    OIDC_BOB_USERNAME bob OIDC_BOB_PASSWORD bob-oidc-pw
}

start() {
  install
  stop
  if [ -n "${OIDC_PORT:-}" ] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$OIDC_PORT/"; then
    log "127.0.0.1:$OIDC_PORT is already in use (set another OIDC_PORT)"; exit 1
  fi
  trap 'rc=$?; [ "$rc" = 0 ] || { log "start failed; tail of $OIDC_DIR/provider.log:"; tail -n 20 "$OIDC_DIR/provider.log" >&2 || true; stop; }' EXIT
  # No stdin/stdout/stderr shared with the caller: `eval "$(oidc.sh start)"` must not wait on it.
  (cd "$OIDC_DIR" && exec setsid node provider.mjs serve </dev/null >>"$OIDC_DIR/provider.log" 2>&1) &
  echo $! >"$PIDFILE"
  local pid=$!
  for _ in $(seq 300); do
    alive "$pid" || { log "provider exited"; exit 1; }
    if [ -s "$PORTFILE" ] && curl -fs -o /dev/null --max-time 2 \
      "http://127.0.0.1:$(cat "$PORTFILE")/.well-known/openid-configuration"; then
      log "serving http://127.0.0.1:$(cat "$PORTFILE") (pid $pid; log $OIDC_DIR/provider.log)"
      print_env
      return 0
    fi
    sleep 0.1
  done
  log "no discovery document after 30 s"; exit 1
}

rotate() {
  install
  local kid pid port
  kid="$(cd "$OIDC_DIR" && node provider.mjs rotate "${1:-keep}")"
  if pid="$(running_pid)"; then
    kill -HUP "$pid"
    port="$(cat "$PORTFILE")"
    for _ in $(seq 100); do
      curl -fs --max-time 2 "http://127.0.0.1:$port/jwks" | grep -q "\"kid\":\"$kid\"" && break
      sleep 0.1
    done
    curl -fs --max-time 2 "http://127.0.0.1:$port/jwks" | grep -q "\"kid\":\"$kid\"" ||
      { log "provider did not pick up key $kid"; exit 1; }
  fi
  log "signing with new key $kid${pid:+ (provider reloaded)}"
  printf 'export OIDC_SIGNING_KID=%q\n' "$kid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) running_pid >/dev/null || { log "not running"; exit 1; }; print_env ;;
  rotate) rotate "${2:-keep}" ;;
  *) echo "usage: $0 start|stop|env|rotate [drop]" >&2; exit 2 ;;
esac
