//! `keystone` mode: tokens are validated by a Keystone v3 service, as keystonemiddleware does.
//!
//! Vela authenticates as its own service user (password, project-scoped), then asks
//! `GET /v3/auth/tokens?nocatalog` with its token in `X-Auth-Token` and the caller's in
//! `X-Subject-Token`. A valid answer becomes the request context (user, project, domains,
//! roles, system scope) and is cached, keyed by the token's SHA-256, until the earlier of the
//! cache TTL and the token's expiry. Keystone's 404 means an invalid token (401 to the caller);
//! no answer, a timeout or a 5xx means 503. Tokens never appear in logs.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use vela_domain::RequestContext;

use crate::cache::TokenCache;
use crate::{AuthError, TokenValidator};

/// Where Keystone is and how Vela authenticates to it.
#[derive(Debug, Clone)]
pub struct KeystoneConfig {
    /// Keystone's v3 endpoint, e.g. `http://keystone:5000/v3`.
    pub auth_url: String,
    pub username: String,
    pub password: vela_domain::Secret,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// Per-request timeout towards Keystone.
    pub timeout: Duration,
    /// How long a validated token is trusted without asking again.
    pub cache_ttl: Duration,
    /// Most tokens kept in the cache.
    pub cache_size: usize,
}

/// A Keystone token validator.
pub struct Keystone {
    cfg: KeystoneConfig,
    http: reqwest::Client,
    service_token: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// The service user's system-scoped token, for reading unified limits.
    system_token: tokio::sync::Mutex<Option<(String, Instant)>>,
    cache: TokenCache<RequestContext>,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    domain: Option<Box<Named>>,
}

#[derive(Deserialize)]
struct Role {
    name: String,
}

#[derive(Deserialize)]
struct TokenInfo {
    expires_at: String,
    user: Named,
    #[serde(default)]
    project: Option<Named>,
    #[serde(default)]
    domain: Option<Named>,
    #[serde(default)]
    system: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    roles: Vec<Role>,
}

fn expiry(expires_at: &str) -> Result<DateTime<Utc>, AuthError> {
    DateTime::parse_from_rfc3339(expires_at)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| AuthError::Invalid("token has an unreadable expiry".into()))
}

/// The request context a Keystone (or Vela) token body describes, and when it expires.
fn context_of(t: TokenInfo) -> Result<(RequestContext, DateTime<Utc>), AuthError> {
    let expires = expiry(&t.expires_at)?;
    let mut ctx = RequestContext::new(
        Some(t.user.id),
        t.project.as_ref().map(|p| p.id.clone()),
        t.roles.into_iter().map(|r| r.name),
        String::new(),
    );
    ctx.user_domain_id = t.user.domain.map(|d| d.id);
    ctx.project_domain_id = t.project.and_then(|p| p.domain).map(|d| d.id);
    if t.system.is_some_and(|s| s.contains_key("all")) {
        ctx.system_scope = Some("all".into());
    }
    if t.domain.is_some() && ctx.project_id.is_none() && ctx.system_scope.is_none() {
        // Domain-scoped: no image rule passes, like a system-scoped token.
        ctx.system_scope = Some("domain".into());
    }
    Ok((ctx, expires))
}

fn unavailable(e: impl std::fmt::Display) -> AuthError {
    AuthError::Unavailable(format!("keystone: {e}"))
}

impl Keystone {
    pub fn new(cfg: KeystoneConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("keystone client: {e}"))?;
        Ok(Keystone {
            cache: TokenCache::new(cfg.cache_ttl, cfg.cache_size as u64),
            cfg,
            http,
            service_token: tokio::sync::Mutex::new(None),
            system_token: tokio::sync::Mutex::new(None),
        })
    }

    /// Sends a request, once more on a fresh connection if a pooled one turned out closed
    /// (servers such as uwsgi close connections without saying so). Timeouts are not retried.
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, AuthError> {
        let retry = rb.try_clone();
        match (rb.send().await, retry) {
            (Ok(resp), _) => Ok(resp),
            (Err(e), Some(again)) if !e.is_timeout() => again.send().await.map_err(unavailable),
            (Err(e), _) => Err(unavailable(e)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.auth_url.trim_end_matches('/'))
    }

    /// Vela's own token, fetched when missing or about to expire.
    async fn service_token(&self, refresh: bool) -> Result<String, AuthError> {
        self.token(false, refresh).await
    }

    /// Vela's own token, scoped to its project or (`system`) to the system.
    async fn token(&self, system: bool, refresh: bool) -> Result<String, AuthError> {
        let mut slot = if system {
            self.system_token.lock().await
        } else {
            self.service_token.lock().await
        };
        if let Some((tok, until)) = slot.as_ref() {
            if !refresh && *until > Instant::now() {
                return Ok(tok.clone());
            }
        }
        let c = &self.cfg;
        let scope = if system {
            json!({"system": {"all": true}})
        } else {
            json!({"project": {"name": c.project_name,
                "domain": {"name": c.project_domain_name}}})
        };
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "password": c.password.expose(),
                "domain": {"name": c.user_domain_name}}}},
            "scope": scope}});
        let resp = self
            .send(
                self.http
                    .post(self.url("/auth/tokens?nocatalog"))
                    .json(&body),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "service user '{}' could not authenticate: HTTP {}",
                c.username,
                resp.status()
            )));
        }
        let tok = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| unavailable("no X-Subject-Token in the service token answer"))?;
        let info: TokenBody = resp.json().await.map_err(unavailable)?;
        let expires = expiry(&info.token.expires_at).map_err(|_| unavailable("bad expiry"))?;
        let left = (expires - Utc::now()).to_std().unwrap_or_default();
        // Renew a minute early so a validation never carries an expiring service token.
        let until = Instant::now() + left.saturating_sub(Duration::from_secs(60));
        *slot = Some((tok.clone(), until));
        Ok(tok)
    }

    /// A GET under the v3 URL with the service user's system-scoped token (renewed once on
    /// a 401): Keystone lets system readers read every project's limits.
    pub async fn system_get(&self, path_and_query: &str) -> Result<serde_json::Value, AuthError> {
        let mut refreshed = false;
        loop {
            let tok = self.token(true, refreshed).await?;
            let resp = self
                .send(
                    self.http
                        .get(self.url(path_and_query))
                        .header("x-auth-token", tok),
                )
                .await?;
            match resp.status().as_u16() {
                200 => return resp.json().await.map_err(unavailable),
                401 if !refreshed => refreshed = true,
                s => {
                    return Err(unavailable(format!(
                        "GET {path_and_query} answered HTTP {s}"
                    )))
                }
            }
        }
    }

    async fn ask(&self, token: &str) -> Result<(RequestContext, DateTime<Utc>), AuthError> {
        let mut refreshed = false;
        loop {
            let svc = self.service_token(refreshed).await?;
            let resp = self
                .send(
                    self.http
                        .get(self.url("/auth/tokens?nocatalog"))
                        .header("x-auth-token", svc)
                        .header("x-subject-token", token),
                )
                .await?;
            match resp.status().as_u16() {
                200 => {
                    let body: TokenBody = resp.json().await.map_err(unavailable)?;
                    return context_of(body.token);
                }
                // Our own token was refused (expired or revoked early): get a new one once.
                401 | 403 if !refreshed => refreshed = true,
                400 | 404 => return Err(AuthError::Invalid("keystone: token not found".into())),
                s => return Err(unavailable(format!("validation answered HTTP {s}"))),
            }
        }
    }
}

#[async_trait::async_trait]
impl TokenValidator for Keystone {
    async fn validate(&self, token: &str, request_id: &str) -> Result<RequestContext, AuthError> {
        let mut ctx = match self.cache.get(token) {
            Some(ctx) => ctx,
            None => {
                let (ctx, expires) = self.ask(token).await?;
                let left = (expires - Utc::now())
                    .to_std()
                    .map_err(|_| AuthError::Invalid("token expired".into()))?;
                self.cache.insert(token, ctx.clone(), Instant::now() + left);
                ctx
            }
        };
        ctx.request_id = request_id.to_owned();
        Ok(ctx)
    }
}
