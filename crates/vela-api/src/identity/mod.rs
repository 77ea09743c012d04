//! The embedded identity service: the part of Keystone v3 that OpenStack clients need, so a
//! single node needs nothing else to authenticate users.
//!
//! Users, projects, roles and assignments live in the metadata database (one domain,
//! `Default`). Passwords are hashed with argon2id. A token is a signed (HMAC-SHA256) claim of
//! who, which scope, and until when; it carries no roles: they are read from the database when
//! the token is validated, so a removed role counts at once. A token is refused once expired,
//! revoked (`DELETE /v3/auth/tokens`), or issued before its user's last password change, or
//! when its user, project or roles are gone. Validations are cached per node for a few seconds
//! (`auth.token_cache_secs`); a revocation on one node reaches the others within that time.

pub mod routes;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vela_db::identity::{Project, Role, User, SYSTEM};
use vela_db::{Db, DbError};
use vela_domain::{Micros, RequestContext};

use crate::auth::{AuthError, TokenValidator};

const PREFIX: &str = "vela1";

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

/// Signs and checks tokens with the shared key.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Self {
        Signer { key }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// Signs `claims` into a token string.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{PREFIX}.{payload}");
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signed}.{sig}")
    }

    /// The claims of a token whose signature is good (expiry not checked).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let (signed, sig) = token
            .rsplit_once('.')
            .ok_or_else(|| invalid("not a token"))?;
        let payload = signed
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| invalid("not a Vela token"))?;
        let sig = B64
            .decode(sig)
            .map_err(|_| invalid("bad signature encoding"))?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| invalid("bad signature"))?;
        let raw = B64
            .decode(payload)
            .map_err(|_| invalid("bad payload encoding"))?;
        serde_json::from_slice(&raw).map_err(|_| invalid("bad payload"))
    }
}

/// The embedded token issuer and validator.
pub struct Identity {
    db: Db,
    signer: Signer,
    ttl: Duration,
    cache_ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (Resolved, Instant)>>,
    /// Password checks running at once: each takes argon2's 19 MiB and a core for a moment,
    /// so a burst of logins queues here instead of growing memory.
    /// Password checks run on a few dedicated threads (each check takes argon2's 19 MiB and
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
        let key = db.signing_key(new_signing_key).await?.into_bytes();
        Ok(Identity {
            db,
            signer: Signer::new(key),
            ttl: token_ttl,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
            decoy_hash: hash_password(&new_signing_key()).map_err(DbError::Config)?,
            hashing: PasswordCheckers::start(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            throttle: throttle::LoginThrottle::new(throttle),
            region,
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

    /// Signs `claims` into a token string.
    pub fn sign(&self, claims: &Claims) -> String {
        self.signer.sign(claims)
    }

    /// The claims of a token whose signature is good (expiry not checked).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.signer.verify(token)
    }

    /// New claims for `user` on a scope, valid for the configured lifetime (or until
    /// `not_after`, when rescoping a token).
    pub fn claims(
        &self,
        user: &User,
        project: Option<&Project>,
        system: bool,
        methods: Vec<String>,
        not_after: Option<Micros>,
    ) -> Claims {
        let now = vela_domain::now_micros();
        let exp = now + self.ttl.as_micros() as Micros;
        Claims {
            id: uuid::Uuid::new_v4().simple().to_string(),
            user: user.id.clone(),
            project: project.map(|p| p.id.clone()),
            system,
            methods,
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
        if self
            .db
            .is_token_revoked(&claims.id)
            .await
            .map_err(db_down)?
        {
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
        let claims = self.verify(token)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(r) = self.cached(&key) {
            if r.claims.exp > vela_domain::now_micros() {
                return Ok(r);
            }
        }
        let resolved = self.resolve_claims(claims).await?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= 10_000 {
                let now = Instant::now();
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= 10_000 {
                    cache.clear();
                }
            }
            cache.insert(key, (resolved.clone(), Instant::now() + self.cache_ttl));
        }
        Ok(resolved)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Resolved> {
        let cache = self.cache.lock().ok()?;
        let (r, until) = cache.get(key)?;
        (*until > Instant::now()).then(|| r.clone())
    }

    /// Revokes a token everywhere (and drops it from this node's cache at once).
    pub async fn revoke(&self, token: &str, claims: &Claims) -> Result<(), DbError> {
        self.db.revoke_token(&claims.id, claims.exp).await?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&key);
        }
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
