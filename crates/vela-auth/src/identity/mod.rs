//! The embedded identity service: the part of Keystone v3 that OpenStack clients need, so a
//! single node needs nothing else to authenticate users.
//!
//! Users, projects, roles and assignments live in the metadata database (one domain,
//! `Default`). Passwords are hashed with argon2id. A token is a signed (HMAC-SHA256) claim of
//! who, which scope, and until when; it carries no roles: they are read from the database when
//! the token is validated, so a removed role counts at once. A token is refused once expired,
//! revoked (`DELETE /v3/auth/tokens`), or issued before its user's last password change, or
//! when its user, project or roles are gone. Revoking a token also revokes the tokens rescoped
//! from it (each token names its ancestors). Validations are cached per node for a few seconds
//! (`auth.token_cache_secs`); a revocation on one node reaches the others within that time.
//!
//! The signing keys live in the database too. `vela identity rotate-key` makes a new key the
//! signing one; the old key keeps verifying until its overlap ends, so tokens it signed stay
//! good that long. Nodes sign with the key read afresh at each issue, and read the keys again
//! when a token matches none they know (at most once a second) or their copy is older than
//! the validation cache time (at most 5 s: a retired key stops verifying everywhere by then).

pub mod throttle;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vela_db::identity::{Project, Role, SigningKey, User, SYSTEM};
use vela_db::{Db, DbError};
use vela_domain::{Micros, RequestContext};

use crate::cache::TokenCache;
use crate::{AuthError, TokenValidator};

const PREFIX: &str = "vela1";

/// Keys a token is checked against at most (the signing key and those still in overlap).
const MAX_KEYS: usize = 16;

/// How many times a token may be rescoped from a rescoped token.
pub const MAX_RESCOPE_DEPTH: usize = 16;

/// Most validations cached per node.
const CACHE_SIZE: u64 = 10_000;

/// Least time between two key reloads caused by tokens no known key signed.
const KEY_MISS_RELOAD: Duration = Duration::from_secs(1);

/// Longest time a node uses the keys it read (so a retired key stops verifying everywhere
/// within it).
const KEY_REFRESH: Duration = Duration::from_secs(5);

/// argon2id with OWASP's 7 MiB / 5 passes / 1 lane setting: as strong as the 19 MiB / 2 passes
/// default, with less memory held per login.
fn argon2() -> Argon2<'static> {
    let params = Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password (argon2id, random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| format!("salt: {e}"))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("password hashing failed: {e}"))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A fresh random signing key, hex.
pub fn new_signing_key() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// What a token asserts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Unique id (revocation and audit id).
    pub id: String,
    pub user: String,
    /// Project scope, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// System scope.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    pub methods: Vec<String>,
    /// The tokens this one was rescoped from, oldest first: revoking any of them revokes
    /// this one too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Issued and expiry instants, microseconds since the epoch.
    pub iat: Micros,
    pub exp: Micros,
}

/// A validated token: the claims and what they refer to now.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub claims: Claims,
    pub user: User,
    pub project: Option<Project>,
    /// Effective roles (assigned plus implied).
    pub roles: Vec<Role>,
}

impl Resolved {
    /// The request context of this token's bearer.
    pub fn context(&self, request_id: &str) -> RequestContext {
        let mut ctx = RequestContext::new(
            Some(self.user.id.clone()),
            self.project.as_ref().map(|p| p.id.clone()),
            self.roles.iter().map(|r| r.name.clone()),
            request_id.to_owned(),
        );
        ctx.user_domain_id = Some("default".into());
        if self.project.is_some() {
            ctx.project_domain_id = Some("default".into());
        }
        if self.claims.system {
            ctx.system_scope = Some("all".into());
        }
        ctx
    }
}

/// The roles Keystone's default hierarchy implies: admin ⇒ member ⇒ reader.
fn with_implied(mut roles: Vec<Role>, all: &[Role]) -> Vec<Role> {
    let mut i = 0;
    while i < roles.len() {
        let implied = match roles[i].name.as_str() {
            "admin" => Some("member"),
            "member" => Some("reader"),
            _ => None,
        };
        if let Some(name) = implied {
            if !roles.iter().any(|r| r.name == name) {
                let role = all
                    .iter()
                    .find(|r| r.name == name)
                    .cloned()
                    .unwrap_or(Role {
                        id: name.to_owned(),
                        name: name.to_owned(),
                    });
                roles.push(role);
            }
        }
        i += 1;
    }
    roles
}

fn invalid(why: &str) -> AuthError {
    AuthError::Invalid(why.to_owned())
}

fn db_down(e: DbError) -> AuthError {
    AuthError::Unavailable(format!("identity database: {e}"))
}

/// Signs tokens with the current key and checks them against every key that still verifies.
pub struct Signer {
    /// The signing key first; each with the instant it stops verifying (`None`: never).
    keys: Vec<(Vec<u8>, Option<Micros>)>,
}

impl Signer {
    /// A signer with one key that never retires.
    pub fn new(key: Vec<u8>) -> Self {
        Signer {
            keys: vec![(key, None)],
        }
    }

    /// A signer over the database's keys (the signing key first).
    fn from_keys(keys: Vec<SigningKey>) -> Self {
        Signer {
            keys: keys
                .into_iter()
                .take(MAX_KEYS)
                .map(|k| (k.secret.expose().as_bytes().to_vec(), k.retire_at))
                .collect(),
        }
    }

    fn mac(key: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!())
    }

    /// Signs `claims` into a token string.
    pub fn sign(&self, claims: &Claims) -> String {
        self.seal(PREFIX, &serde_json::to_vec(claims).unwrap_or_default())
    }

    /// The claims of a token signed by a key that has not retired (expiry not checked).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let raw = self.unseal(PREFIX, token)?;
        serde_json::from_slice(&raw).map_err(|_| invalid("bad payload"))
    }

    /// `payload`, signed for `purpose`: `<purpose>.<payload>.<mac>` (base64url). The purpose
    /// is signed too, so what is sealed for one use never passes for another (or for a token).
    pub fn seal(&self, purpose: &str, payload: &[u8]) -> String {
        let signed = format!("{purpose}.{}", B64.encode(payload));
        let key = self.keys.first().map_or(&[][..], |(k, _)| k.as_slice());
        let mut mac = Self::mac(key);
        mac.update(signed.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signed}.{sig}")
    }

    /// The payload of `sealed` when a key that has not retired sealed it for `purpose`.
    pub fn unseal(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, AuthError> {
        let (signed, sig) = sealed
            .rsplit_once('.')
            .ok_or_else(|| invalid("not a token"))?;
        let payload = signed
            .strip_prefix(purpose)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| invalid("not a Vela token"))?;
        let sig = B64
            .decode(sig)
            .map_err(|_| invalid("bad signature encoding"))?;
        let now = vela_domain::now_micros();
        let good = self
            .keys
            .iter()
            .filter(|(_, retire_at)| retire_at.is_none_or(|r| r > now))
            .any(|(key, _)| {
                let mut mac = Self::mac(key);
                mac.update(signed.as_bytes());
                mac.verify_slice(&sig).is_ok()
            });
        if !good {
            return Err(invalid("bad signature"));
        }
        B64.decode(payload)
            .map_err(|_| invalid("bad payload encoding"))
    }
}

/// The database's signing keys as last read, and when.
struct Keyring {
    signer: Arc<Signer>,
    loaded: Instant,
}

/// The embedded token issuer and validator.
pub struct Identity {
    db: Db,
    keys: std::sync::RwLock<Keyring>,
    /// When a token signed by no known key last made the keys be read again.
    key_miss: Mutex<Option<Instant>>,
    ttl: Duration,
    cache_ttl: Duration,
    cache: TokenCache<Resolved>,
    /// Password checks run on a few dedicated threads (each check takes argon2's 7 MiB and
    /// a core for a moment): a burst of logins queues instead of growing memory, a client
    /// that goes away does not stop (or free the place of) a check already running, and the
    /// hash memory stays in those threads' allocator arenas.
    hashing: PasswordCheckers,
    /// Failed-login counts and locks.
    pub throttle: throttle::LoginThrottle,
    /// Checked for unknown users, so a login takes as long whether the user exists or not.
    decoy_hash: String,
    /// Region named in the catalog.
    pub region: String,
    /// Checks federated logins' access tokens against their providers' keys.
    pub oidc: crate::federation::oidc::OidcVerifier,
}

type HmacSha256 = Hmac<Sha256>;

type PasswordCheck = (String, String, tokio::sync::oneshot::Sender<bool>);

/// A fixed set of threads that verify passwords, fed through a bounded queue.
struct PasswordCheckers {
    queue: tokio::sync::mpsc::Sender<PasswordCheck>,
}

impl PasswordCheckers {
    /// Checks waiting beyond the running ones (then callers wait to enqueue).
    const QUEUE: usize = 256;

    fn start(threads: usize) -> Self {
        let (queue, rx) = tokio::sync::mpsc::channel::<PasswordCheck>(Self::QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vela-password-{i}"))
                .spawn(move || loop {
                    let next = match rx.lock() {
                        Ok(mut rx) => rx.blocking_recv(),
                        Err(_) => None,
                    };
                    let Some((password, hash, reply)) = next else {
                        return;
                    };
                    let _ = reply.send(verify_password(&password, &hash));
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-checking thread");
            }
        }
        PasswordCheckers { queue }
    }

    async fn check(&self, password: String, hash: String) -> bool {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.queue.send((password, hash, reply)).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

impl Identity {
    /// The service over `db`, with its signing key (created on first start).
    pub async fn new(
        db: Db,
        token_ttl: Duration,
        cache_ttl: Duration,
        region: String,
        throttle: throttle::ThrottleConfig,
    ) -> Result<Self, DbError> {
        let keys = db.signing_keys(new_signing_key).await?;
        Ok(Identity {
            db,
            keys: std::sync::RwLock::new(Keyring {
                signer: Arc::new(Signer::from_keys(keys)),
                loaded: Instant::now(),
            }),
            key_miss: Mutex::new(None),
            ttl: token_ttl,
            cache_ttl,
            cache: TokenCache::new(cache_ttl, CACHE_SIZE),
            decoy_hash: hash_password(&new_signing_key()).map_err(DbError::Config)?,
            hashing: PasswordCheckers::start(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            throttle: throttle::LoginThrottle::new(throttle),
            region,
            oidc: crate::federation::oidc::OidcVerifier::new(Duration::from_secs(5))
                .map_err(DbError::Config)?,
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Checks a password against a user's hash (`None`: an unknown user, checked against a
    /// decoy so that timing does not tell), off the async threads, a few at a time.
    pub async fn check_password(&self, password: String, hash: Option<String>) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy_hash.clone());
        let ok = self.hashing.check(password, hash).await;
        ok && known
    }

    /// The keys as last read; read again when older than the validation cache time (1 to
    /// 5 s), or when `fresh`.
    async fn signer(&self, fresh: bool) -> Result<Arc<Signer>, AuthError> {
        let max_age = self.cache_ttl.clamp(KEY_MISS_RELOAD, KEY_REFRESH);
        if let Ok(k) = self.keys.read() {
            if !fresh && k.loaded.elapsed() < max_age {
                return Ok(k.signer.clone());
            }
        }
        let keys = self
            .db
            .signing_keys(new_signing_key)
            .await
            .map_err(db_down)?;
        let signer = Arc::new(Signer::from_keys(keys));
        if let Ok(mut k) = self.keys.write() {
            *k = Keyring {
                signer: signer.clone(),
                loaded: Instant::now(),
            };
        }
        Ok(signer)
    }

    /// Signs `claims` into a token string with the current key (read afresh, so a node
    /// signs with a new key as soon as it is made).
    pub async fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        Ok(self.signer(true).await?.sign(claims))
    }

    /// The claims of a token whose signature is good (expiry not checked). A token no
    /// known key signed makes the keys be read again (at most once a second), in case
    /// another node has just made a new one.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let raw = self.unseal(PREFIX, token).await?;
        serde_json::from_slice(&raw).map_err(|_| invalid("bad payload"))
    }

    /// `payload` signed for `purpose` with the current key (see [`Signer::seal`]): state
    /// that a client carries and any node can trust again.
    pub async fn seal(&self, purpose: &str, payload: &[u8]) -> Result<String, AuthError> {
        Ok(self.signer(true).await?.seal(purpose, payload))
    }

    /// The payload of `sealed` when it was sealed for `purpose` by a key still verifying
    /// (the keys are read again on a miss, as for tokens).
    pub async fn unseal(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, AuthError> {
        let first = self.signer(false).await?.unseal(purpose, sealed);
        if first.is_ok() {
            return first;
        }
        let reload = match self.key_miss.lock() {
            Ok(mut last) if last.is_none_or(|t| t.elapsed() >= KEY_MISS_RELOAD) => {
                *last = Some(Instant::now());
                true
            }
            _ => false,
        };
        if reload {
            self.signer(true).await?.unseal(purpose, sealed)
        } else {
            first
        }
    }

    /// New claims for `user` on a scope, valid for the configured lifetime (or until
    /// `not_after`, when rescoping a token, whose `chain` then names the token rescoped
    /// and its own ancestors).
    pub fn claims(
        &self,
        user: &User,
        project: Option<&Project>,
        system: bool,
        methods: Vec<String>,
        not_after: Option<Micros>,
        chain: Vec<String>,
    ) -> Claims {
        let now = vela_domain::now_micros();
        let exp = now + self.ttl.as_micros() as Micros;
        Claims {
            id: uuid::Uuid::new_v4().simple().to_string(),
            user: user.id.clone(),
            project: project.map(|p| p.id.clone()),
            system,
            methods,
            chain,
            iat: now,
            exp: not_after.map_or(exp, |n| n.min(exp)),
        }
    }

    /// The effective roles of `user` on a scope; empty means no access.
    pub async fn roles(&self, user_id: &str, target: &str) -> Result<Vec<Role>, DbError> {
        let direct = self.db.roles_on(user_id, target).await?;
        if direct.is_empty() {
            return Ok(direct);
        }
        let all = self.db.list_roles().await?;
        Ok(with_implied(direct, &all))
    }

    /// Checks `claims` against the database: user, scope, roles, revocation.
    pub async fn resolve_claims(&self, claims: Claims) -> Result<Resolved, AuthError> {
        if claims.exp <= vela_domain::now_micros() {
            return Err(invalid("token expired"));
        }
        let user = self
            .db
            .find_user(&claims.user)
            .await
            .map_err(db_down)?
            .filter(|u| u.id == claims.user && u.enabled)
            .ok_or_else(|| invalid("user gone or disabled"))?;
        if claims.iat < user.tokens_valid_after {
            return Err(invalid("token issued before the password changed"));
        }
        let lineage: Vec<&str> = std::iter::once(claims.id.as_str())
            .chain(claims.chain.iter().map(String::as_str))
            .collect();
        if self.db.any_token_revoked(&lineage).await.map_err(db_down)? {
            return Err(invalid("token revoked"));
        }
        let project = match &claims.project {
            None => None,
            Some(p) => Some(
                self.db
                    .find_project(p)
                    .await
                    .map_err(db_down)?
                    .filter(|pr| pr.id == *p && pr.enabled)
                    .ok_or_else(|| invalid("project gone or disabled"))?,
            ),
        };
        let target = match (&project, claims.system) {
            (Some(p), _) => Some(p.id.as_str()),
            (None, true) => Some(SYSTEM),
            (None, false) => None,
        };
        let roles = match target {
            Some(t) => {
                let roles = self.roles(&user.id, t).await.map_err(db_down)?;
                if roles.is_empty() {
                    return Err(invalid("no role on the token's scope any more"));
                }
                roles
            }
            None => Vec::new(),
        };
        Ok(Resolved {
            claims,
            user,
            project,
            roles,
        })
    }

    /// Validates a token string, through the cache.
    pub async fn resolve(&self, token: &str) -> Result<Resolved, AuthError> {
        let claims = self.verify(token).await?;
        if let Some(r) = self.cache.get(token) {
            return Ok(r);
        }
        let resolved = self.resolve_claims(claims).await?;
        let left = resolved
            .claims
            .exp
            .saturating_sub(vela_domain::now_micros());
        let deadline = Instant::now() + Duration::from_micros(u64::try_from(left).unwrap_or(0));
        self.cache.insert(token, resolved.clone(), deadline);
        Ok(resolved)
    }

    /// Revokes a token and the tokens rescoped from it everywhere (and drops them from
    /// this node's cache at once).
    pub async fn revoke(&self, claims: &Claims) -> Result<(), DbError> {
        // Rescoped tokens expire no later than their parent, so the entry can go then.
        self.db.revoke_token(&claims.id, claims.exp).await?;
        let id = claims.id.clone();
        self.cache
            .invalidate_if(move |r| r.claims.id == id || r.claims.chain.contains(&id));
        Ok(())
    }
}

#[async_trait::async_trait]
impl TokenValidator for Identity {
    async fn validate(&self, token: &str, request_id: &str) -> Result<RequestContext, AuthError> {
        Ok(self.resolve(token).await?.context(request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret ", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn tokens_are_signed() {
        let signer = Signer::new(b"k1".to_vec());
        let claims = Claims {
            id: "t1".into(),
            user: "u1".into(),
            project: Some("p1".into()),
            system: false,
            methods: vec!["password".into()],
            chain: vec![],
            iat: 1,
            exp: 2,
        };
        let token = signer.sign(&claims);
        assert_eq!(signer.verify(&token).unwrap(), claims);
        // Another key, a changed payload, a cut signature: all refused.
        assert!(Signer::new(b"k2".to_vec()).verify(&token).is_err());
        let (head, sig) = token.rsplit_once('.').unwrap();
        let forged = Claims {
            project: Some("p2".into()),
            ..claims
        };
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert!(signer
            .verify(&format!("{PREFIX}.{forged_payload}.{sig}"))
            .is_err());
        assert!(signer.verify(&format!("{head}.{}", &sig[1..])).is_err());
        assert!(signer.verify("garbage").is_err());
    }

    #[test]
    fn retired_keys_stop_verifying() {
        let key = |secret: &str, retire_at: Option<Micros>| SigningKey {
            id: secret.into(),
            secret: vela_domain::Secret::new(secret.to_owned()),
            created_at: 0,
            retire_at,
        };
        let now = vela_domain::now_micros();
        let claims = Claims {
            id: "t1".into(),
            user: "u1".into(),
            project: None,
            system: false,
            methods: vec!["password".into()],
            chain: vec!["t0".into()],
            iat: 1,
            exp: 2,
        };
        let old = Signer::new(b"old".to_vec()).sign(&claims);
        let older = Signer::new(b"older".to_vec()).sign(&claims);
        let ring = Signer::from_keys(vec![
            key("new", None),
            key("old", Some(now + 60_000_000)),
            key("older", Some(now - 1)),
        ]);
        // The new key signs; a key in its overlap still verifies; a retired one does not.
        let fresh = ring.sign(&claims);
        assert_eq!(Signer::new(b"new".to_vec()).verify(&fresh).unwrap(), claims);
        assert_eq!(ring.verify(&old).unwrap(), claims);
        assert!(ring.verify(&older).is_err());
    }

    #[test]
    fn implied_roles_expand() {
        let r = |n: &str| Role {
            id: format!("id-{n}"),
            name: n.into(),
        };
        let got = with_implied(vec![r("admin")], &[r("member"), r("reader")]);
        let names: Vec<_> = got.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["admin", "member", "reader"]);
        assert_eq!(got[1].id, "id-member");
    }
}
