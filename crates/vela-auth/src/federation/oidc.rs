//! Verifying an OpenID Connect provider's access tokens (JWTs) against its published keys:
//! signature (asymmetric algorithms only), issuer, audience, expiry and not-before, with a
//! minute of clock leeway.
//!
//! Keys come from the provider's JWKS (its `jwks_uri`, or the one its discovery document
//! names) and are kept for [`KEYS_FRESH`]. A token signed with a key id the cached set lacks
//! makes the set be fetched again, at most once per [`REFETCH_GAP`] per provider, so a key
//! rotation is picked up at once and a stream of forged key ids cannot turn Vela into a
//! fetching loop. Fetches are operator-configured URLs with a timeout and a size cap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use vela_db::federation::Idp;

use crate::AuthError;

/// How long a fetched key set is used before it is fetched again.
pub const KEYS_FRESH: Duration = Duration::from_secs(600);
/// Least time between two fetches of one provider's keys.
pub const REFETCH_GAP: Duration = Duration::from_secs(5);
/// Largest discovery document or key set read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Longest access token accepted.
pub const MAX_TOKEN: usize = 16 * 1024;

const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// Verifies the configured providers' tokens and speaks to them as their client (browser
/// sign-on: the authorization-code flow with PKCE).
pub struct OidcVerifier {
    http: reqwest::Client,
    keys: Mutex<HashMap<String, Keys>>,
    /// Discovery documents by provider id, kept for [`KEYS_FRESH`].
    discovery: Mutex<HashMap<String, (Value, Instant)>>,
}

/// The endpoints of a provider a browser sign-on uses.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::Invalid(why.into())
}

impl OidcVerifier {
    /// A verifier whose fetches time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(OidcVerifier {
            http,
            keys: Mutex::new(HashMap::new()),
            discovery: Mutex::new(HashMap::new()),
        })
    }

    async fn fetch_json(&self, url: &str) -> Result<Value, AuthError> {
        let req = self.http.get(url).header("accept", "application/json");
        Self::read_json(req, &format!("GET {url}"))
            .await
            .map(|(_, v)| v)
    }

    /// Sends `req` and reads its JSON answer (at most [`MAX_DOCUMENT`] bytes) with its status;
    /// only a success or a 400/401 (an OAuth error body) is an answer at all.
    async fn read_json(
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Value), AuthError> {
        let unavailable = |e: String| AuthError::Unavailable(format!("identity provider: {e}"));
        let mut resp = req
            .send()
            .await
            .map_err(|e| unavailable(format!("{what}: {e}")))?;
        let status = resp.status();
        if !status.is_success()
            && status != reqwest::StatusCode::BAD_REQUEST
            && status != reqwest::StatusCode::UNAUTHORIZED
        {
            return Err(unavailable(format!("{what}: {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unavailable(format!("{what}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(unavailable(format!(
                    "{what}: larger than {MAX_DOCUMENT} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let v = serde_json::from_slice(&body).map_err(|e| unavailable(format!("{what}: {e}")))?;
        Ok((status, v))
    }

    /// The provider's discovery document (cached for [`KEYS_FRESH`]).
    async fn discover(&self, idp: &Idp) -> Result<Value, AuthError> {
        if let Ok(cache) = self.discovery.lock() {
            if let Some((doc, at)) = cache.get(&idp.id) {
                if at.elapsed() < KEYS_FRESH {
                    return Ok(doc.clone());
                }
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            idp.issuer.trim_end_matches('/')
        );
        let doc = self.fetch_json(&url).await?;
        if let Ok(mut cache) = self.discovery.lock() {
            cache.insert(idp.id.clone(), (doc.clone(), Instant::now()));
        }
        Ok(doc)
    }

    /// An endpoint URL the discovery document names.
    async fn endpoint(&self, idp: &Idp, name: &str) -> Result<String, AuthError> {
        self.discover(idp)
            .await?
            .get(name)
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .map(str::to_owned)
            .ok_or_else(|| {
                AuthError::Unavailable(format!(
                    "identity provider {}: its discovery document names no {name}",
                    idp.id
                ))
            })
    }

    /// The provider's key set URL: configured, or from its discovery document.
    async fn jwks_uri(&self, idp: &Idp) -> Result<String, AuthError> {
        match &idp.jwks_uri {
            Some(u) => Ok(u.clone()),
            None => self.endpoint(idp, "jwks_uri").await,
        }
    }

    /// The authorization and token endpoints of `idp` (browser sign-on).
    pub async fn endpoints(&self, idp: &Idp) -> Result<Endpoints, AuthError> {
        Ok(Endpoints {
            authorization: self.endpoint(idp, "authorization_endpoint").await?,
            token: self.endpoint(idp, "token_endpoint").await?,
        })
    }

    /// Exchanges an authorization code for the provider's tokens (RFC 6749 4.1.3 with the
    /// PKCE verifier of RFC 7636), authenticating as the client with HTTP Basic. Returns
    /// the `id_token`. A code the provider refuses is [`AuthError::Invalid`].
    pub async fn redeem_code(
        &self,
        idp: &Idp,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<String, AuthError> {
        let (Some(client_id), Some(secret)) = (&idp.client_id, &idp.client_secret) else {
            return Err(invalid("the provider has no client for browser sign-on"));
        };
        let token_url = self.endpoint(idp, "token_endpoint").await?;
        // RFC 6749 2.3.1: id and secret are form-encoded before they go into Basic.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        let req = self
            .http
            .post(&token_url)
            .basic_auth(enc(client_id), Some(enc(secret.expose())))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        let (status, v) = Self::read_json(req, &format!("POST {token_url}")).await?;
        if !status.is_success() {
            let code = v.get("error").and_then(Value::as_str).unwrap_or("error");
            return Err(invalid(format!(
                "the provider refused the authorization code: {status} {}",
                code.chars().take(100).collect::<String>()
            )));
        }
        v.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid("the provider's token answer has no id_token"))
    }

    /// The key `kid` of `idp`, from the cache or a fetch.
    async fn key(&self, idp: &Idp, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, AuthError> {
        let find = |set: &JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let refetch = {
            let cache = self
                .keys
                .lock()
                .map_err(|_| invalid("key cache poisoned"))?;
            match cache.get(&idp.id) {
                Some(k) if k.fetched.elapsed() < KEYS_FRESH => {
                    if let Some(jwk) = find(&k.set) {
                        return Ok(jwk);
                    }
                    k.fetched.elapsed() >= REFETCH_GAP
                }
                _ => true,
            }
        };
        if !refetch {
            return Err(invalid("token signed with an unknown key"));
        }
        let url = self.jwks_uri(idp).await?;
        let set: JwkSet = serde_json::from_value(self.fetch_json(&url).await?)
            .map_err(|e| AuthError::Unavailable(format!("{url}: not a key set: {e}")))?;
        let found = find(&set);
        if let Ok(mut cache) = self.keys.lock() {
            cache.insert(
                idp.id.clone(),
                Keys {
                    set,
                    fetched: Instant::now(),
                },
            );
        }
        found.ok_or_else(|| invalid("token signed with an unknown key"))
    }

    /// The claims of access token `token` when `idp` signed it for Vela and it is in date.
    pub async fn verify(&self, idp: &Idp, token: &str) -> Result<Map<String, Value>, AuthError> {
        self.decode(idp, token, &idp.audience, "access token").await
    }

    /// The claims of an `id_token` from a browser sign-on: signed by `idp` for Vela's client,
    /// in date, and carrying the `nonce` the sign-on started with.
    pub async fn verify_id_token(
        &self,
        idp: &Idp,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        let client = idp
            .client_id
            .as_deref()
            .ok_or_else(|| invalid("the provider has no client for browser sign-on"))?;
        let claims = self.decode(idp, token, client, "id_token").await?;
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(invalid("id_token refused: its nonce is not this sign-on's"));
        }
        Ok(claims)
    }

    async fn decode(
        &self,
        idp: &Idp,
        token: &str,
        audience: &str,
        what: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        if token.len() > MAX_TOKEN {
            return Err(invalid(format!("{what} too long")));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("not a JWT: {e}")))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(invalid(format!("algorithm {:?} not accepted", header.alg)));
        }
        let jwk = self.key(idp, header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(format!("unusable key: {e}")))?;
        let mut v = Validation::new(header.alg);
        v.leeway = 60;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[idp.issuer.as_str()]);
        v.set_audience(&[audience]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| invalid(format!("{what} refused: {e}")))?;
        Ok(data.claims)
    }
}

/// The assertion a mapping sees: each claim as `OIDC-<claim>` (the prefix Keystone's usual
/// mod_auth_openidc setup gives), lists joined with `;` (Keystone's separator of values).
pub fn assertion(claims: &Map<String, Value>) -> std::collections::BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    };
    claims
        .iter()
        .filter_map(|(k, v)| {
            let value = match v {
                Value::Array(items) => {
                    Some(items.iter().filter_map(text).collect::<Vec<_>>().join(";"))
                }
                other => text(other),
            }?;
            Some((format!("OIDC-{k}"), value))
        })
        .collect()
}
