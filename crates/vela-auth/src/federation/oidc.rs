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

/// Verifies access tokens of the configured providers.
pub struct OidcVerifier {
    http: reqwest::Client,
    keys: Mutex<HashMap<String, Keys>>,
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
        })
    }

    async fn fetch_json(&self, url: &str) -> Result<Value, AuthError> {
        let unavailable = |e: String| AuthError::Unavailable(format!("identity provider: {e}"));
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("GET {url}: {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(unavailable(format!(
                    "GET {url}: larger than {MAX_DOCUMENT} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("GET {url}: {e}")))
    }

    /// The provider's key set URL: configured, or from its discovery document.
    async fn jwks_uri(&self, idp: &Idp) -> Result<String, AuthError> {
        if let Some(u) = &idp.jwks_uri {
            return Ok(u.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            idp.issuer.trim_end_matches('/')
        );
        let doc = self.fetch_json(&url).await?;
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AuthError::Unavailable(format!("{url} names no jwks_uri")))
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

    /// The claims of `token` when `idp` signed it for Vela and it is in date.
    pub async fn verify(&self, idp: &Idp, token: &str) -> Result<Map<String, Value>, AuthError> {
        if token.len() > MAX_TOKEN {
            return Err(invalid("access token too long"));
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
        v.set_audience(&[idp.audience.as_str()]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| invalid(format!("access token refused: {e}")))?;
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
