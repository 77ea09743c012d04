// A real OpenID Connect provider on loopback for Vela's federation tests, built on panva's
// certified `oidc-provider` (version pinned in package.json). Started by scripts/oidc.sh, which
// copies this file and package.json into $OIDC_DIR and runs it from there (node_modules stay out
// of the repo tree).
//
//   node provider.mjs serve          listen on 127.0.0.1:$OIDC_PORT (0 = any free port), write
//                                    provider.port / provider.pid; SIGHUP reloads jwks.json
//   node provider.mjs rotate [drop]  put a NEW RS256 key first in jwks.json (it signs from then
//                                    on); keep the previous key published (`drop`: publish only
//                                    the new one); print the new kid
//
// What it serves: issuer http://127.0.0.1:PORT; one confidential client ($OIDC_CLIENT_ID, secret
// $OIDC_CLIENT_SECRET, client_secret_basic or _post) with authorization_code (+ PKCE S256),
// refresh_token, client_credentials and a custom `password` grant; users alice and bob (below);
// a password-checking login page at /interaction/:uid (consent is given automatically: the
// client is first-party); JWT access tokens (typ at+jwt) with aud = $OIDC_AUDIENCE and the user
// claims preferred_username, email, groups; introspection and revocation (opaque tokens only:
// oidc-provider refuses to introspect JWTs; OIDC_ACCESS_TOKEN_FORMAT=opaque makes access
// tokens introspectable instead). The userinfo endpoint (/me) only takes access tokens without
// an audience, which this setup never issues: claims come in the access token and id_token.
// State (grants, sessions, refresh tokens) lives in memory.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import Provider, { errors } from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const env = process.env;
const DIR = env.OIDC_DIR || path.dirname(new URL(import.meta.url).pathname);
const JWKS_FILE = path.join(DIR, 'jwks.json');
const CLIENT_ID = env.OIDC_CLIENT_ID || 'vela';
const CLIENT_SECRET = env.OIDC_CLIENT_SECRET || 'vela-oidc-client-secret';
const AUDIENCE = env.OIDC_AUDIENCE || 'urn:vela:image'; // also the resource indicator
if (!URL.canParse(AUDIENCE)) throw new Error(`OIDC_AUDIENCE must be an absolute URI: ${AUDIENCE}`);
const REDIRECT_URIS = (env.OIDC_REDIRECT_URIS
  || 'http://127.0.0.1:9292/v3/auth/OS-FEDERATION/websso/openid/redirect').split(',').filter(Boolean);
const AT_TTL = Number(env.OIDC_ACCESS_TOKEN_TTL || 3600);
const AT_FORMAT = env.OIDC_ACCESS_TOKEN_FORMAT || 'jwt';
const RS_SCOPE = 'openid profile email groups offline_access';
const ADAPTER = createMemoryAdapter(); // one store for every instance: kept across SIGHUP reloads

const USERS = {
  alice: { password: 'alice-oidc-pw', email: 'alice@example.com', groups: ['engineers'], name: 'Alice' },
  bob: { password: 'bob-oidc-pw', email: 'bob@example.com', groups: ['auditors'], name: 'Bob' },
};
const userClaims = (id) => ({
  preferred_username: id, name: USERS[id].name, email: USERS[id].email, email_verified: true,
  groups: USERS[id].groups,
});
const checkPassword = (username, password) => {
  const user = Object.hasOwn(USERS, username || '') ? USERS[username] : undefined;
  if (!user || typeof password !== 'string') return false;
  const a = Buffer.from(password);
  const b = Buffer.from(user.password);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
};
async function findAccount(ctx, sub) {
  if (!Object.hasOwn(USERS, sub)) return undefined;
  return { accountId: sub, claims: async () => ({ sub, ...userClaims(sub) }) };
}
const log = (...a) => console.log(new Date().toISOString(), ...a);

// ---- keys -------------------------------------------------------------------------------------
function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const thumb = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }); // RFC 7638 thumbprint
  return { ...jwk, kid: crypto.createHash('sha256').update(thumb).digest('base64url'), alg: 'RS256', use: 'sig' };
}
function loadKeys() {
  if (!fs.existsSync(JWKS_FILE)) writeKeys([newKey()]);
  return JSON.parse(fs.readFileSync(JWKS_FILE, 'utf8'));
}
function writeKeys(keys) {
  fs.writeFileSync(`${JWKS_FILE}.tmp`, JSON.stringify({ keys }, null, 2), { mode: 0o600 });
  fs.renameSync(`${JWKS_FILE}.tmp`, JWKS_FILE);
}

// ---- the custom resource-owner password grant ---------------------------------------------------
// Checks username/password, then issues what the authorization_code grant would: a JWT access
// token for AUDIENCE, a refresh token and (with scope openid) an id_token.
async function passwordGrant(ctx) {
  const { provider, client, params } = ctx.oidc;
  if (!params.username || !params.password) throw new errors.InvalidRequest('username and password are required');
  if (!checkPassword(params.username, params.password)) throw new errors.InvalidGrant('invalid username or password');
  if (params.resource && params.resource !== AUDIENCE) throw new errors.InvalidTarget();
  const known = new Set(RS_SCOPE.split(' '));
  const scope = [...new Set((params.scope || '').split(' '))].filter((s) => known.has(s)).join(' ');
  const accountId = params.username;

  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  if (scope) { grant.addOIDCScope(scope); grant.addResourceScope(AUDIENCE, scope); }
  const grantId = await grant.save();

  const at = new provider.AccessToken({ accountId, client, grantId, gty: 'password', scope: scope || undefined });
  at.resourceServer = new provider.ResourceServer(AUDIENCE, await resourceServerInfo());
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  const rt = new provider.RefreshToken({
    accountId, client, grantId, gty: 'password', scope, resource: AUDIENCE, rotations: 0,
  });
  const refreshToken = await rt.save();

  let idToken;
  if (scope.split(' ').includes('openid')) {
    const claims = await (await findAccount(ctx, accountId)).claims();
    const token = new provider.IdToken(claims, { ctx });
    token.scope = scope;
    idToken = await token.issue({ use: 'idtoken' });
  }
  ctx.body = {
    access_token: accessToken, token_type: at.tokenType, expires_in: at.expiration,
    refresh_token: refreshToken, id_token: idToken, scope: scope || undefined,
  };
}

async function resourceServerInfo() {
  return { scope: RS_SCOPE, audience: AUDIENCE, accessTokenFormat: AT_FORMAT, accessTokenTTL: AT_TTL };
}

// ---- the provider -------------------------------------------------------------------------------
function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter: ADAPTER,
    jwks: loadKeys(),
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      // basic is the registered method; oidc-provider then also accepts client_secret_post.
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials', 'password'],
      response_types: ['code'],
      redirect_uris: REDIRECT_URIS,
      post_logout_redirect_uris: REDIRECT_URIS,
    }],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false, // id_tokens carry the scope's claims even beside JWT access tokens
    findAccount,
    extraTokenClaims: async (ctx, token) => (token.accountId && Object.hasOwn(USERS, token.accountId)
      ? userClaims(token.accountId) : undefined),
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: false }, // own login page below
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => AUDIENCE,
        useGrantedResource: async () => true, // JWT access tokens in the code flow too
        getResourceServerInfo: async (ctx, indicator) => {
          if (indicator !== AUDIENCE) throw new errors.InvalidTarget();
          return resourceServerInfo();
        },
      },
    },
    responseTypes: ['code'],
    pkce: { required: () => false }, // supported (S256 only); not forced on the confidential client
    // Same keys in every instance, so cookies survive a SIGHUP reload.
    cookies: { keys: [crypto.createHash('sha256').update(`cookies:${CLIENT_SECRET}`).digest('hex')] },
    ttl: {
      AccessToken: AT_TTL, ClientCredentials: AT_TTL, IdToken: 3600, Grant: 14 * 86400, RefreshToken: 14 * 86400, Session: 86400,
    },
  });
  provider.registerGrantType('password', passwordGrant, ['username', 'password', 'scope', 'resource']);
  provider.on('server_error', (ctx, err) => log('server_error', err));
  provider.on('grant.error', (ctx, err) => log('grant.error', err.message, err.error_detail || ''));
  return provider;
}

// ---- login page (prompt=login checks the password; prompt=consent is approved at once) ----------
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function loginPage(res, uid, message, username = '') {
  res.writeHead(message ? 401 : 200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign-in</title></head><body>
<h1>Sign-in</h1>${message ? `<p id="error" style="color:#b00">${esc(message)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}">
<label>Username <input id="username" name="username" autofocus value="${esc(username)}"></label><br>
<label>Password <input id="password" name="password" type="password"></label><br>
<button id="submit" type="submit">Sign-in</button></form></body></html>`);
}
async function interaction(provider, req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'consent') {
    const d = details.prompt.details;
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [ind, s] of Object.entries(d.missingResourceScopes || {})) grant.addResourceScope(ind, s.join(' '));
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } });
  }
  if (req.method !== 'POST') return loginPage(res, uid);
  let body = '';
  for await (const chunk of req) body += chunk;
  const form = new URLSearchParams(body);
  const username = form.get('username') || '';
  if (!checkPassword(username, form.get('password'))) {
    log('login failed for', JSON.stringify(username));
    return loginPage(res, uid, 'Invalid username or password.', username);
  }
  log('login ok for', username);
  return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
}

// ---- main ---------------------------------------------------------------------------------------
const [cmd = 'serve', arg] = process.argv.slice(2);
if (cmd === 'rotate') {
  const keys = fs.existsSync(JWKS_FILE) ? JSON.parse(fs.readFileSync(JWKS_FILE, 'utf8')).keys : [];
  const key = newKey();
  writeKeys(arg === 'drop' ? [key] : [key, ...keys.slice(0, 1)]); // new signs; previous stays published
  console.log(key.kid);
} else if (cmd === 'serve') {
  let provider;
  let handler;
  const server = http.createServer((req, res) => {
    if (!handler) { res.writeHead(503); res.end(); return; }
    res.on('finish', () => log(req.method, req.url.split('?')[0], res.statusCode));
    const m = /^\/interaction\/([\w-]+)$/.exec(req.url.split('?')[0]);
    if (!m) { handler(req, res); return; }
    interaction(provider, req, res, m[1]).catch((err) => {
      log('interaction error', err);
      if (!res.headersSent) { res.writeHead(400, { 'content-type': 'text/plain' }); }
      res.end(`interaction failed: ${err.message}\n`);
    });
  });
  const load = () => {
    provider = buildProvider(`http://127.0.0.1:${server.address().port}`);
    handler = provider.callback();
    log('signing kid', provider.issuer, loadKeys().keys[0].kid);
  };
  server.listen(Number(env.OIDC_PORT || 0), '127.0.0.1', () => {
    load();
    fs.writeFileSync(path.join(DIR, 'provider.port'), `${server.address().port}\n`);
    log('listening on', provider.issuer);
  });
  process.on('SIGHUP', () => { try { load(); } catch (err) { log('reload failed', err); } });
  process.on('SIGTERM', () => { server.close(); server.closeAllConnections(); process.exit(0); });
} else {
  console.error(`usage: node provider.mjs serve | rotate [drop]`);
  process.exit(2);
}
