"""Keystone's browser sign-on (WebSSO) on Vela against a real OpenID provider, as a browser
does it, with `requests` (the browser test e2e/horizon.sh does it in Chromium through Horizon).

usage: websso.py VELA_URL ISSUER TRUSTED_ORIGIN
The provider (scripts/oidc.sh) must list VELA_URL/v3/auth/OS-FEDERATION/websso/openid/redirect
for the client; Vela's [auth.federation] trusted_dashboard must hold TRUSTED_ORIGIN, and its
identity provider `corp` a client id and secret. Prints `ok - websso: ...` per check.
"""
import base64
import html
import json
import re
import sys
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

VELA, ISSUER, ORIGIN = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), sys.argv[3]
START = f"{VELA}/v3/auth/OS-FEDERATION/websso/openid"
START_IDP = f"{VELA}/v3/auth/OS-FEDERATION/identity_providers/corp/protocols/openid/websso"
PASSED = 0


def ok(msg):
    global PASSED
    PASSED += 1
    print(f"ok - websso: {msg}", flush=True)


def die(msg):
    print(f"not ok - websso: {msg}", flush=True)
    sys.exit(1)


def expect(resp, status, what):
    if resp.status_code != status:
        die(f"{what}: {resp.status_code} (wanted {status}): {resp.text[:300]}")
    return resp


def keystone_error(resp, status, what):
    expect(resp, status, what)
    body = resp.json()
    if body.get("error", {}).get("code") != status:
        die(f"{what}: not Keystone's error shape: {body}")
    return body["error"]["message"]


def start(browser, url=START, origin=ORIGIN):
    """The browser's first hop: Vela's 302 to the provider. Returns the redirect's query."""
    r = expect(browser.get(url, params={"origin": origin}, allow_redirects=False), 302, "start")
    loc = r.headers["Location"]
    if not loc.startswith(ISSUER + "/"):
        die(f"start sent the browser to {loc}, not to the provider")
    q = {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}
    return loc, q


def sign_in(browser, user, password, url=START):
    """A whole sign-on; returns (the provider's redirect back to Vela, Vela's answer)."""
    loc, q = start(browser, url)
    page = expect(browser.get(loc), 200, "the provider's login page")
    form = re.search(r'<form id="login" method="post" action="([^"]+)"', page.text)
    if not form:
        die(f"no login form at the provider: {page.text[:300]}")
    resp = browser.post(ISSUER + html.unescape(form.group(1)),
                        data={"username": user, "password": password}, allow_redirects=True)
    back = [h for h in resp.history if h.url.startswith(VELA)] + [resp]
    return q, back[0].url, resp


def token_of(resp):
    expect(resp, 200, "Vela's answer to the provider's redirect")
    m = re.search(r'<form id="sso" name="sso" action="([^"]+)" method="post">'
                  r'<input type="hidden" name="token" id="token" value="([^"]+)">', resp.text)
    if not m:
        die(f"no auto-posting form in {resp.text[:300]}")
    return html.unescape(m.group(1)), m.group(2)


# ---- refusals before the provider is asked ----------------------------------------------------
msg = keystone_error(requests.get(START, allow_redirects=False), 400, "no origin")
assert "origin" in msg, msg
msg = keystone_error(requests.get(START, params={"origin": "https://evil.example/auth/websso/"},
                                  allow_redirects=False), 401, "an untrusted origin")
assert "is not a trusted dashboard host" in msg, msg
keystone_error(requests.get(f"{VELA}/v3/auth/OS-FEDERATION/websso/saml2",
                            params={"origin": ORIGIN}, allow_redirects=False), 404, "protocol saml2")
keystone_error(requests.get(START_IDP.replace("/corp/", "/nobody/"), params={"origin": ORIGIN},
                            allow_redirects=False), 404, "an unknown provider")
ok("refused: no origin (400), an untrusted origin (401), another protocol and an unknown provider (404)")

# ---- the authorization request ----------------------------------------------------------------
b = requests.Session()
loc, q = start(b)
B_STATE = q["state"]
for k, want in (("response_type", "code"), ("code_challenge_method", "S256"),
                ("redirect_uri", f"{VELA}/v3/auth/OS-FEDERATION/websso/openid/redirect")):
    if q.get(k) != want:
        die(f"authorization request: {k}={q.get(k)!r}, wanted {want!r}")
if not all(len(q.get(k, "")) >= 43 for k in ("state", "nonce", "code_challenge")):
    die(f"authorization request lacks a long state, nonce or PKCE challenge: {q}")
cookie = [c for c in b.cookies if c.name == f"vela_sso_{q['state']}"]
if not cookie or not cookie[0].has_nonstandard_attr("HttpOnly"):
    die(f"no HttpOnly sign-on cookie for the state: {list(b.cookies)}")
ok("start: 302 to the provider's authorization endpoint with code, PKCE S256, state, nonce; "
   "an HttpOnly cookie per sign-on")

# ---- alice signs in ---------------------------------------------------------------------------
alice = requests.Session()
q, redirect_url, resp = sign_in(alice, "alice", "alice-oidc-pw", START_IDP)
action, token = token_of(resp)
if action != ORIGIN:
    die(f"the token is posted to {action}, not to {ORIGIN}")
csp = resp.headers.get("Content-Security-Policy", "")
if "form-action " + ORIGIN.split("/auth/")[0] not in csp or "script-src 'nonce-" not in csp:
    die(f"the page's CSP does not pin the form and script: {csp}")
for h, want in (("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer")):
    if resp.headers.get(h) != want:
        die(f"the page's {h} is {resp.headers.get(h)!r}")
if any(c.name.startswith("vela_sso_") for c in alice.cookies):
    die("the sign-on cookie outlived the sign-on")
ok("alice at the provider's login page: Vela's page posts a token to the trusted origin "
   "(CSP pins the form target and script; no-store; no-referrer; cookie removed)")

r = expect(requests.get(f"{VELA}/v3/auth/tokens",
                        headers={"X-Auth-Token": token, "X-Subject-Token": token}), 200, "validate")
t = r.json()["token"]
if t["user"]["name"] != "alice" or t["methods"] != ["openid"] or "project" in t:
    die(f"the token is not alice's unscoped federated token: {t}")
if t["user"].get("OS-FEDERATION", {}).get("identity_provider", {}).get("id") != "corp":
    die(f"the token does not name its provider: {t['user']}")
projects = [p["name"] for p in expect(requests.get(f"{VELA}/v3/auth/projects",
                                                   headers={"X-Auth-Token": token}), 200,
                                      "projects").json()["projects"]]
if projects != ["eng"]:
    die(f"alice's token may scope to {projects}, not [eng]")
body = {"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                 "scope": {"project": {"name": "eng", "domain": {"id": "default"}}}}}
r = expect(requests.post(f"{VELA}/v3/auth/tokens", json=body), 201, "rescope to eng")
images = expect(requests.get(f"{VELA}/v2/images",
                             headers={"X-Auth-Token": r.headers["X-Subject-Token"]}), 200, "list")
ok(f"the token is alice's unscoped federated token; it rescopes to eng and lists "
   f"{len(images.json()['images'])} image(s) there")

# ---- replays and tampering --------------------------------------------------------------------
keystone_error(alice.get(redirect_url, allow_redirects=False), 401, "the same redirect again")
keystone_error(requests.get(redirect_url, allow_redirects=False), 401, "the redirect in another browser")
ok("refused: the provider's redirect replayed, and taken to another browser (401)")


def tampered(change):
    """Bob's sign-on with its sealed cookie's content edited by `change` (the seal kept):
    Vela's answer to the provider's redirect."""
    s2 = requests.Session()
    loc, q = start(s2)
    name = f"vela_sso_{q['state']}"
    purpose, raw, sig = s2.cookies.get(name).split(".")
    if purpose != "sso":
        die(f"the sign-on cookie is not sealed: {purpose}")
    data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    change(data)
    raw = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    for c in s2.cookies:
        if c.name == name:
            c.value = f"{purpose}.{raw}.{sig}"
    page = expect(s2.get(loc), 200, "the login page")
    form = re.search(r'action="([^"]+)"', page.text).group(1)
    return s2.post(ISSUER + html.unescape(form), data={"username": "bob", "password": "bob-oidc-pw"})


def set_key(key, value):
    return lambda d: d.__setitem__(key, value)


keystone_error(tampered(set_key("nonce", "0" * 64)), 401, "another nonce")
keystone_error(tampered(set_key("verifier", "1" * 64)), 401, "another PKCE verifier")
keystone_error(tampered(set_key("origin", "https://evil.example/auth/websso/")), 401,
               "an untrusted origin in the cookie")
ok("refused: a sign-on cookie whose nonce, PKCE verifier or origin was changed (401)")

# The provider's own refusal comes back as an error, not a token.
r = b.get(f"{VELA}/v3/auth/OS-FEDERATION/websso/openid/redirect?"
          + urlencode({"state": B_STATE, "error": "access_denied"}), allow_redirects=False)
keystone_error(r, 401, "the provider's access_denied")
ok("refused: the provider's error answer (401)")
print(f"# {PASSED} websso checks passed")
