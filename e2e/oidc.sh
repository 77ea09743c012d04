#!/usr/bin/env bash
# OpenID Connect federation of Vela's embedded identity service, against a real OpenID
# provider (npm oidc-provider, scripts/oidc.sh) and keystoneauth's OIDC plugins in the real
# OpenStack CLI (.venv-e2e, made by e2e/interop.sh):
#  - a mapping gives alice (group engineers) member on project eng, bob (group auditors)
#    reader on project audit, and the client's own tokens member on project automation;
#  - `openstack --os-auth-type v3oidcpassword | v3oidcclientcredentials | v3oidcaccesstoken`
#    log in and see only what their project may: bob does not see eng's image and may not
#    create one;
#  - tampered, expired, wrong-audience and wrong-issuer tokens are refused, and a rotated
#    signing key is picked up;
#  - browser sign-on (WebSSO, e2e/oidc/websso.py): code flow with PKCE through the provider's
#    login page, the token posted to the trusted dashboard, replays and tampering refused.
# Environment: VELA_BIN, VELA_E2E_VENV (default .venv-e2e).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VELA_BIN="${VELA_BIN:-$REPO/target/release/vela}"
case "$VELA_BIN" in /*) ;; *) VELA_BIN="$REPO/$VELA_BIN" ;; esac
VENV="${VELA_E2E_VENV:-$REPO/.venv-e2e}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vela-oidc.XXXXXX")"
export OIDC_DIR="${OIDC_DIR:-$REPO/.oidc}"
# Access tokens live 20 s: long enough for one CLI call, short enough to test expiry.
export OIDC_ACCESS_TOKEN_TTL=20
SERVER_PID=""
PASS=0
cleanup() {
  local rc=$?
  [ -n "$SERVER_PID" ] && { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; }
  bash "$REPO/scripts/oidc.sh" stop >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK/server.log" "$OIDC_DIR/provider.log"; do
      [ -s "$f" ] && { echo "---- $f (last 40 lines)"; tail -n 40 "$f"; }
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
die() { printf 'not ok - oidc: %s\n' "$*"; exit 1; }
ok() { PASS=$((PASS + 1)); printf 'ok - oidc: %s\n' "$*"; }
[ -x "$VENV/bin/openstack" ] || die "no OpenStack CLI in $VENV (run e2e/interop.sh first)"
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OS_' || true)

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
VELA="http://127.0.0.1:$PORT"
# Browser sign-on: the provider sends browsers back to Vela; Vela hands tokens to DASHBOARD.
export OIDC_REDIRECT_URIS="$VELA/v3/auth/OS-FEDERATION/websso/openid/redirect"
DASHBOARD="http://127.0.0.1:9/auth/websso/"
eval "$(bash "$REPO/scripts/oidc.sh" start)"
cat >"$WORK/vela.toml" <<TOML
[auth.federation]
trusted_dashboard = ["$DASHBOARD"]
websso_scope = "openid profile email groups"
TOML
"$VELA_BIN" --config "$WORK/vela.toml" --data-dir "$WORK/data" serve --bind "127.0.0.1:$PORT" \
  >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 300); do grep -q "vela listening" "$WORK/server.out" && break; sleep 0.1; done
grep -q "vela listening" "$WORK/server.out" || die "vela did not start"
vela() {
  "$VELA_BIN" --config "$WORK/vela.toml" --data-dir "$WORK/data" identity "$@" 2>"$WORK/cli.err" ||
    { cat "$WORK/cli.err"; die "vela identity $1 $2 failed"; }
}

vela mapping create corp-map --rules "$REPO/e2e/oidc/mapping.json" >/dev/null
VELA_IDP_CLIENT_SECRET="$OIDC_CLIENT_SECRET" vela idp create corp --issuer "$OIDC_ISSUER" \
  --audience "$OIDC_AUDIENCE" --mapping corp-map --client-id "$OIDC_CLIENT_ID" >/dev/null
# Two providers that must refuse corp's tokens: another audience, another issuer.
vela idp create wrong-aud --issuer "$OIDC_ISSUER" --audience urn:someone:else --mapping corp-map >/dev/null
vela idp create wrong-iss --issuer "http://127.0.0.1:9/" --jwks-uri "$OIDC_ISSUER/jwks" \
  --audience "$OIDC_AUDIENCE" --mapping corp-map >/dev/null
ok "mapping and identity providers configured with vela identity mapping|idp"

# access_token USER PASSWORD: a password-grant access token from the provider.
access_token() {
  curl -sf -u "$OIDC_CLIENT_ID:$OIDC_CLIENT_SECRET" "$OIDC_ISSUER/token" \
    -d grant_type=password -d "username=$1" -d "password=$2" -d scope=openid |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
# fed_status IDP TOKEN: the status of Vela's federated login with TOKEN as a bearer.
fed_status() {
  curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $2" \
    "$VELA/v3/OS-FEDERATION/identity_providers/$1/protocols/openid/auth"
}
EARLY_TOKEN="$(access_token alice alice-oidc-pw)"
EARLY_AT=$(date +%s)

osc_password() {   # osc_password USER PASSWORD PROJECT ARGS...
  local user="$1" password="$2" project="$3"; shift 3
  "$VENV/bin/openstack" --os-auth-type v3oidcpassword --os-auth-url "$VELA/v3" \
    --os-identity-provider corp --os-protocol openid \
    --os-client-id "$OIDC_CLIENT_ID" --os-client-secret "$OIDC_CLIENT_SECRET" \
    --os-discovery-endpoint "$OIDC_ISSUER/.well-known/openid-configuration" \
    --os-openid-scope "openid profile" --os-username "$user" --os-password "$password" \
    --os-project-name "$project" --os-project-domain-name Default "$@" </dev/null
}

head -c 65536 /dev/zero >"$WORK/disk.raw"
osc_password alice alice-oidc-pw eng image create --disk-format raw --container-format bare \
  --file "$WORK/disk.raw" eng-image -f value -c id >"$WORK/eng-image.id" 2>"$WORK/osc.err" ||
  { cat "$WORK/osc.err"; die "v3oidcpassword: alice cannot create an image in eng"; }
ok "v3oidcpassword: alice (engineers) created eng-image in project eng"
osc_password alice alice-oidc-pw eng image list -f value -c Name 2>"$WORK/osc.err" | grep -qx eng-image ||
  { cat "$WORK/osc.err"; die "alice does not see eng-image"; }
ok "v3oidcpassword: alice lists eng-image"
BOB_LIST="$(osc_password bob bob-oidc-pw audit image list -f value -c Name 2>"$WORK/osc.err")" ||
  { cat "$WORK/osc.err"; die "v3oidcpassword: bob cannot list in audit"; }
if grep -qx eng-image <<<"$BOB_LIST"; then die "bob (audit) sees eng's private image"; fi
ok "v3oidcpassword: bob (auditors) lists project audit and does not see eng-image"
if osc_password bob bob-oidc-pw audit image create --disk-format raw --container-format bare \
  bob-image >/dev/null 2>"$WORK/osc.err"; then
  die "bob, a reader, created an image"
fi
grep -q "403\|Forbidden\|not allowed" "$WORK/osc.err" || { cat "$WORK/osc.err"; die "bob's create failed oddly"; }
ok "v3oidcpassword: bob (reader) may not create an image (403)"
if osc_password bob bob-oidc-pw eng image list >/dev/null 2>"$WORK/osc.err"; then
  die "bob could scope to eng"
fi
ok "v3oidcpassword: bob cannot scope to project eng"

"$VENV/bin/openstack" --os-auth-type v3oidcclientcredentials --os-auth-url "$VELA/v3" \
  --os-identity-provider corp --os-protocol openid \
  --os-client-id "$OIDC_CLIENT_ID" --os-client-secret "$OIDC_CLIENT_SECRET" \
  --os-discovery-endpoint "$OIDC_ISSUER/.well-known/openid-configuration" \
  --os-openid-scope openid --os-project-name automation --os-project-domain-name Default \
  image list -f value -c Name </dev/null >"$WORK/client.out" 2>"$WORK/osc.err" ||
  { cat "$WORK/osc.err"; die "v3oidcclientcredentials failed"; }
if grep -qx eng-image "$WORK/client.out"; then die "the client sees eng-image"; fi
ok "v3oidcclientcredentials: the client logs in to project automation and sees none of eng's"

TOKEN="$(access_token alice alice-oidc-pw)"
"$VENV/bin/openstack" --os-auth-type v3oidcaccesstoken --os-auth-url "$VELA/v3" \
  --os-identity-provider corp --os-protocol openid --os-access-token "$TOKEN" \
  --os-project-name eng --os-project-domain-name Default image list -f value -c Name </dev/null \
  2>"$WORK/osc.err" | grep -qx eng-image || { cat "$WORK/osc.err"; die "v3oidcaccesstoken failed"; }
ok "v3oidcaccesstoken: alice's access token lists eng-image"

# The unscoped federated token and the projects it may scope to.
curl -s -D "$WORK/h" -o "$WORK/unscoped.json" -X POST -H "Authorization: Bearer $TOKEN" \
  "$VELA/v3/OS-FEDERATION/identity_providers/corp/protocols/openid/auth"
grep -q '^HTTP/1.1 201' "$WORK/h" || die "federated auth did not answer 201"
python3 - "$WORK/unscoped.json" <<'PY' || die "the federated token body is not Keystone's"
import json, sys
t = json.load(open(sys.argv[1]))["token"]
assert t["methods"] == ["openid"], t
assert "project" not in t, t
assert t["user"]["name"] == "alice", t
assert t["user"]["OS-FEDERATION"]["identity_provider"]["id"] == "corp", t
assert t["user"]["OS-FEDERATION"]["protocol"]["id"] == "openid", t
PY
UNSCOPED="$(sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: *\([^[:space:]]*\).*/\1/p' "$WORK/h")"
curl -sf -H "X-Auth-Token: $UNSCOPED" "$VELA/v3/auth/projects" |
  python3 -c 'import json,sys; n=[p["name"] for p in json.load(sys.stdin)["projects"]]; assert n == ["eng"], n' ||
  die "alice's federated token does not list exactly project eng"
ok "federated auth: an unscoped token (methods openid, OS-FEDERATION) whose user may scope to eng only"

# Browser sign-on (WebSSO): the authorization-code flow with PKCE through the provider's login
# page, the token posted to the trusted dashboard, replays and tampering refused.
"$VENV/bin/python" "$REPO/e2e/oidc/websso.py" "$VELA" "$OIDC_ISSUER" "$DASHBOARD" |
  tee "$WORK/websso.out" || die "browser sign-on (e2e/oidc/websso.py) failed"
PASS=$((PASS + $(grep -c '^ok - ' "$WORK/websso.out")))

# Refusals.
# One character of the signature changed (not the last one, whose low bits are padding).
TAMPERED="$(python3 -c 'import sys; t=sys.argv[1]; i=len(t)-10; print(t[:i] + ("B" if t[i] != "B" else "C") + t[i+1:])' "$TOKEN")"
[ "$(fed_status corp "$TAMPERED")" = 401 ] || die "a tampered token was accepted"
PAYLOAD_TAMPERED="$(python3 - "$TOKEN" <<'PY'
import base64, json, sys
h, p, s = sys.argv[1].split(".")
pad = lambda x: x + "=" * (-len(x) % 4)
claims = json.loads(base64.urlsafe_b64decode(pad(p)))
claims["groups"] = ["auditors", "engineers"]
p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
print(".".join([h, p2, s]))
PY
)"
[ "$(fed_status corp "$PAYLOAD_TAMPERED")" = 401 ] || die "a token with changed claims was accepted"
ok "refused: a token with a changed signature, and one with changed claims (401)"
[ "$(fed_status wrong-aud "$TOKEN")" = 401 ] || die "a token for another audience was accepted"
ok "refused: a token whose audience is not the provider's (401)"
[ "$(fed_status wrong-iss "$TOKEN")" = 401 ] || die "a token from another issuer was accepted"
ok "refused: a token whose issuer is not the provider's (401)"
# Mappings whose result does not fit: a user name of 256 characters, 65 projects.
python3 - "$WORK" <<'PY'
import json, sys
rule = lambda local: {"rules": [{"remote": [{"type": "OIDC-sub"}], "local": local}]}
json.dump(rule([{"user": {"name": "u" * 256, "type": "ephemeral"}}]), open(f"{sys.argv[1]}/long-name.json", "w"))
json.dump(rule([{"user": {"name": "{0}", "type": "ephemeral"}},
                {"projects": [{"name": f"p{i}", "roles": [{"name": "member"}]} for i in range(65)]}]),
          open(f"{sys.argv[1]}/many-projects.json", "w"))
PY
for m in long-name many-projects; do
  vela mapping create "$m" --rules "$WORK/$m.json" >/dev/null
  vela idp create "$m" --issuer "$OIDC_ISSUER" --audience "$OIDC_AUDIENCE" --mapping "$m" >/dev/null
done
FRESH="$(access_token alice alice-oidc-pw)"
[ "$(fed_status long-name "$FRESH")" = 401 ] || die "a mapped user name of 256 characters was accepted"
[ "$(fed_status many-projects "$FRESH")" = 401 ] || die "a mapping to 65 projects was accepted"
grep -q "longer than 255 characters" "$WORK/server.log" && grep -q "projects or roles are too many" "$WORK/server.log" ||
  die "the refusals of oversized mapping results are not logged"
ok "refused: a mapped user name over 255 characters, more than 64 mapped projects (401, logged)"
[ "$(fed_status corp "not-a-jwt")" = 401 ] || die "garbage was accepted"
[ "$(fed_status corp "")" = 401 ] || die "no bearer was accepted"
[ "$(fed_status nobody "$TOKEN")" = 404 ] || die "an unknown provider did not answer 404"
ok "refused: no token, garbage (401); unknown provider (404)"

# Key rotation: tokens signed with the new key are accepted (the key set is fetched again).
eval "$(bash "$REPO/scripts/oidc.sh" rotate)"
sleep 6   # past Vela's least gap between two fetches of a provider's keys
ROTATED="$(access_token alice alice-oidc-pw)"
KID="$(python3 -c 'import base64,json,sys; h=sys.argv[1].split(".")[0]; print(json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["kid"])' "$ROTATED")"
[ "$KID" = "$OIDC_SIGNING_KID" ] || die "the provider did not sign with its new key"
[ "$(fed_status corp "$ROTATED")" = 201 ] || die "a token signed with the rotated key was refused"
ok "a token signed with a rotated-in key (kid $KID) is accepted"

# Expiry: the first token (20 s lifetime) after the minute of clock leeway.
WAIT=$((EARLY_AT + 20 + 60 + 2 - $(date +%s)))
[ "$WAIT" -gt 0 ] && sleep "$WAIT"
[ "$(fed_status corp "$EARLY_TOKEN")" = 401 ] || die "an expired token was accepted"
ok "refused: an expired token (401)"
if grep -qF -- "$TOKEN" "$WORK/server.log"; then die "an access token reached the log"; fi
echo "$PASS passed"
