//! What the stores that talk HTTP to an OpenStack or VMware service have in common: reading an
//! answer with a size limit, mapping an HTTP status to a [`StoreError`], and Keystone v3
//! password login with the service's endpoint taken from the catalog.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::StoreError;

/// The HTTP client of a store that talks to a service's API: 10 s to connect, no redirects,
/// TLS checked against the system's roots plus `ca_file` (PEM), or not at all with `insecure`.
pub(crate) fn client(
    insecure: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, StoreError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(insecure);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| StoreError::Config(format!("reading ca_file {}: {e}", path.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| StoreError::Config(format!("ca_file {}: {e}", path.display())))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| StoreError::Config(e.to_string()))
}

/// `service: message`, as [`StoreError::Unavailable`].
pub(crate) fn unavailable(service: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{service}: {e}"))
}

/// The whole body of `resp`, refused beyond `max` bytes.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    max: usize,
    service: &str,
) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(service, e))? {
        if body.len() + chunk.len() > max {
            return Err(unavailable(
                service,
                format!("an answer larger than {} KiB", max >> 10),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Ok for a success; otherwise the error a store reports for `status` answered to `what`:
/// 404 is [`StoreError::NotFound`], 401/403 [`StoreError::Denied`], 413/507
/// [`StoreError::StorageFull`], anything else [`StoreError::Unavailable`].
pub(crate) fn check_status(
    service: &str,
    status: StatusCode,
    what: &str,
) -> Result<(), StoreError> {
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Err(StoreError::NotFound(what.to_owned())),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(StoreError::Denied(format!("{service} refused {what}")))
        }
        StatusCode::INSUFFICIENT_STORAGE | StatusCode::PAYLOAD_TOO_LARGE => {
            Err(StoreError::StorageFull(std::io::Error::other(format!(
                "{service}: {status} for {what}"
            ))))
        }
        s => Err(unavailable(service, format!("{s} for {what}"))),
    }
}

/// Keystone v3 password credentials scoped to a project, and which catalog endpoint to use.
#[derive(Debug, Clone)]
pub struct KeystoneAuth {
    pub auth_url: String,
    pub username: String,
    pub password: vela_domain::Secret,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// Catalog interface (`public`, `internal`, `admin`).
    pub interface: String,
    /// Catalog region; `None` takes the first.
    pub region: Option<String>,
}

/// A token with what came with it (the project and expiry are used by the cinder store, which
/// is built with the `rbd` feature).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "rbd"), allow(dead_code))]
pub(crate) struct KeystoneToken {
    pub token: String,
    pub project_id: String,
    /// The endpoint of the first of the asked service types found in the catalog.
    pub endpoint: Option<String>,
    /// When Keystone says the token expires.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Largest Keystone answer read (a token with a big catalog).
const MAX_TOKEN_ANSWER: usize = 1 << 20;

/// Logs in with `auth` and finds the endpoint of the first of `service_types` in the catalog.
pub(crate) async fn keystone_login(
    http: &reqwest::Client,
    auth: &KeystoneAuth,
    service_types: &[&str],
) -> Result<KeystoneToken, StoreError> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth.username, "password": auth.password.expose(),
            "domain": {"name": auth.user_domain_name}}}},
        "scope": {"project": {"name": auth.project_name,
            "domain": {"name": auth.project_domain_name}}}}});
    let resp = http
        .post(format!(
            "{}/auth/tokens",
            auth.auth_url.trim_end_matches('/')
        ))
        .json(&body)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| unavailable("Keystone", e))?;
    if resp.status() == StatusCode::UNAUTHORIZED {
        return Err(StoreError::Denied(
            "Keystone refused the credentials".into(),
        ));
    }
    if !resp.status().is_success() {
        return Err(unavailable(
            "Keystone",
            format!("answered {}", resp.status()),
        ));
    }
    let token = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| unavailable("Keystone", "no token in the answer"))?;
    let body = read_bounded(resp, MAX_TOKEN_ANSWER, "Keystone").await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| unavailable("Keystone", e))?;
    let endpoint = service_types.iter().find_map(|t| {
        v["token"]["catalog"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == *t)
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
            .filter(|e| e["interface"] == auth.interface.as_str())
            .find(|e| {
                auth.region
                    .as_deref()
                    .is_none_or(|r| e["region_id"] == r || e["region"] == r)
            })
            .and_then(|e| e["url"].as_str())
            .map(str::to_owned)
    });
    Ok(KeystoneToken {
        token,
        project_id: v["token"]["project"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        endpoint,
        expires_at: v["token"]["expires_at"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
    })
}
