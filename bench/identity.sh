#!/usr/bin/env bash
# Identity benchmark: the embedded identity service's dashboard reads and OpenID Connect
# federated logins, with wrk at concurrency 8 (SQLite, embedded identity, the admin from the
# first-run openrc). Federated logins verify a real provider's JWT (npm oidc-provider,
# scripts/oidc.sh) and sync the mapped user's roles each time.
#
# usage: bench/identity.sh [SECONDS]   (BIN=path/to/vela; default target/release/vela)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
BIN="${BIN:-$REPO/target/release/vela}"
DURATION="${1:-10}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
DIR="$(mktemp -d)"
export OIDC_ACCESS_TOKEN_TTL=3600
cleanup() { kill "${PID:-}" 2>/dev/null || true; bash "$REPO/scripts/oidc.sh" stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
eval "$(bash "$REPO/scripts/oidc.sh" start)"

DASHBOARD="http://dashboard.example/auth/websso/"
printf '[auth.federation]\ntrusted_dashboard = ["%s"]\n' "$DASHBOARD" >"$DIR/vela.toml"
"$BIN" --config "$DIR/vela.toml" serve --bind 127.0.0.1:0 --data-dir "$DIR" >"$DIR/out" 2>"$DIR/err" &
PID=$!
for _ in $(seq 100); do [ -s "$DIR/openrc" ] && grep -q listening "$DIR/out" && break; sleep 0.1; done
URL=$(sed -n 's/^vela listening on //p' "$DIR/out")
PASSWORD=$(sed -n 's/^export OS_PASSWORD=//p' "$DIR/openrc")
TOKEN=$(curl -sf -D - -o /dev/null -X POST "$URL/v3/auth/tokens?nocatalog" -H 'Content-Type: application/json' \
  -d "{\"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": {\"user\": {\"name\": \"admin\",
       \"domain\": {\"id\": \"default\"}, \"password\": \"$PASSWORD\"}}},
       \"scope\": {\"project\": {\"name\": \"admin\", \"domain\": {\"id\": \"default\"}}}}}" |
  awk 'tolower($1) == "x-subject-token:" {print $2}' | tr -d '\r')
ADMIN_ID=$(curl -sf -H "X-Auth-Token: $TOKEN" "$URL/v3/users?name=admin" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["users"][0]["id"])')

printf '%s\n' '{"rules": [
  {"remote": [{"type": "OIDC-preferred_username"}], "local": [{"user": {"name": "{0}"}}]},
  {"remote": [{"type": "OIDC-groups", "any_one_of": ["engineers"]}],
   "local": [{"projects": [{"name": "eng", "roles": [{"name": "member"}]}]}]}]}' >"$DIR/map.json"
"$BIN" --data-dir "$DIR" identity mapping create m --rules "$DIR/map.json" >/dev/null 2>&1
VELA_IDP_CLIENT_SECRET="$OIDC_CLIENT_SECRET" "$BIN" --data-dir "$DIR" identity idp create corp \
  --issuer "$OIDC_ISSUER" --audience "$OIDC_AUDIENCE" --mapping m --client-id "$OIDC_CLIENT_ID" >/dev/null 2>&1
ACCESS=$(curl -sf -u "$OIDC_CLIENT_ID:$OIDC_CLIENT_SECRET" "$OIDC_ISSUER/token" \
  -d grant_type=password -d username=alice -d password=alice-oidc-pw -d scope=openid |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); SQLite; wrk -t2 -c8 -d${DURATION}s"
run() { bench_wrk "$@"; }
run "GET /v3/auth/projects" -H "X-Auth-Token: $TOKEN" "$URL/v3/auth/projects"
run "GET /v3/users/{id}/projects" -H "X-Auth-Token: $TOKEN" "$URL/v3/users/$ADMIN_ID/projects"
run "GET /v3/role_assignments (effective, names)" -H "X-Auth-Token: $TOKEN" \
  "$URL/v3/role_assignments?effective&include_names"
printf 'wrk.method = "POST"\n' >"$DIR/post.lua"
run "federated login (JWT check, role sync, token)" -s "$DIR/post.lua" \
  -H "Authorization: Bearer $ACCESS" "$URL/v3/OS-FEDERATION/identity_providers/corp/protocols/openid/auth"
# WebSSO's first hop (a 302 to the provider with a sealed cookie; discovery is cached).
bench_wrk "WebSSO start (302 to the provider, sealed cookie)" \
  "$URL/v3/auth/OS-FEDERATION/websso/openid?origin=$DASHBOARD"
echo "server peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$PID/status)"
