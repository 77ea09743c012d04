//! `/v3`: Keystone's version document and token API, as far as OpenStack clients use them,
//! and the read calls of [`directory`].

mod directory;
mod federation;
mod limits;
mod websso;

pub use websso::WebSsoConfig;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use vela_db::identity::{Project, User};

use crate::auth::{request_token, AuthError};
use crate::wire::{base_url, ClientAddr};
use crate::AppState;
use vela_auth::identity::throttle::Refusal;
use vela_auth::identity::{Identity, Resolved, MAX_RESCOPE_DEPTH};

/// A Keystone-style error: always JSON.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = json!({"error": {"code": status.as_u16(), "message": message, "title": title}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

pub(super) fn from_auth(e: AuthError) -> Response {
    match e {
        AuthError::Invalid(why) => {
            tracing::info!(reason = %why, "token refused");
            unauthorized()
        }
        AuthError::Unavailable(why) => {
            tracing::error!(reason = %why, "identity service unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The identity service is temporarily unavailable.",
            )
        }
    }
}

pub(super) fn db_error(e: vela_db::DbError) -> Response {
    from_auth(AuthError::Unavailable(e.to_string()))
}

/// A 200 with a JSON body.
pub(super) fn json_ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The `/v3` routes over the embedded identity service.
pub fn router(identity: Arc<Identity>) -> Router<AppState> {
    Router::new()
        .route("/", get(version))
        .route(
            "/auth/tokens",
            get(validate).head(validate).post(issue).delete(revoke),
        )
        .route("/users/{id}/password", axum::routing::post(change_password))
        .route(
            "/OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/auth",
            get(federation::federated_auth).post(federation::federated_auth),
        )
        .merge(directory::routes())
        .merge(limits::routes())
        .merge(websso::routes())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "The resource could not be found.") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for the requested URL. Vela's embedded identity \
                 service is managed with `vela identity …`.",
            )
        })
        .layer(axum::Extension(identity))
}

/// `GET /v3`: Keystone's version document.
pub async fn version(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    let body = json!({"version": {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.identity-v3+json"}],
    }});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn timestamp(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

pub(super) const DOMAIN: &str = "default";

fn domain() -> Value {
    json!({"id": DOMAIN, "name": "Default"})
}

/// The service catalog: this node's image API, and its identity API.
pub(super) fn catalog(base: &str, region: &str) -> Value {
    let endpoints = |service: &str, url: &str| -> Vec<Value> {
        ["public", "internal", "admin"]
            .iter()
            .map(|iface| {
                json!({"id": format!("vela-{service}-{iface}"), "interface": iface,
                       "region": region, "region_id": region, "url": url})
            })
            .collect()
    };
    json!([
        {"id": vela_db::quota::IMAGE_SERVICE_ID, "type": "image", "name": "glance",
         "endpoints": endpoints("image", base)},
        {"id": "vela-identity", "type": "identity", "name": "keystone",
         "endpoints": endpoints("identity", &format!("{base}/v3"))},
    ])
}

/// A token body as Keystone writes it.
fn token_body(r: &Resolved, with_catalog: bool, base: &str, region: &str) -> Value {
    let c = &r.claims;
    let mut t = json!({
        "methods": c.methods,
        "user": {"id": r.user.id, "name": r.user.name, "domain": domain(),
                 "password_expires_at": null},
        // Keystone's pair: this token's id, then the first of its rescoping chain.
        "audit_ids": std::iter::once(&c.id).chain(c.chain.first()).collect::<Vec<_>>(),
        "expires_at": timestamp(c.exp),
        "issued_at": timestamp(c.iat),
    });
    if let Some(idp) = &r.user.idp_id {
        t["user"]["OS-FEDERATION"] = json!({"identity_provider": {"id": idp},
                                            "protocol": {"id": "openid"}, "groups": []});
    }
    if let Some(p) = &r.project {
        t["project"] = json!({"id": p.id, "name": p.name, "domain": domain()});
        t["is_domain"] = json!(false);
    }
    if c.system {
        t["system"] = json!({"all": true});
    }
    if c.project.is_some() || c.system {
        t["roles"] = r
            .roles
            .iter()
            .map(|role| json!({"id": role.id, "name": role.name}))
            .collect();
        if with_catalog {
            t["catalog"] = catalog(base, region);
        }
    }
    json!({ "token": t })
}

pub(super) fn wants_catalog(query: &Option<String>) -> bool {
    !query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "nocatalog" || kv.starts_with("nocatalog="))
}

fn bad_request(m: &str) -> Response {
    error(StatusCode::BAD_REQUEST, m)
}

/// Whether a `{"id"}`/`{"name"}` domain reference names the one domain.
fn is_default_domain(d: Option<&Value>) -> bool {
    match d {
        None => true,
        Some(d) => {
            d.get("id").and_then(Value::as_str) == Some(DOMAIN)
                || d.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case("default"))
        }
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

enum Scope {
    Unscoped,
    Project(Project),
    System,
}

async fn requested_scope(id: &Identity, auth: &Value, user: &User) -> Result<Scope, Response> {
    // keystoneauth's `unscoped=True` (Horizon's first login step) asks for no scope at all,
    // not even the default project.
    if auth.get("scope").and_then(Value::as_str) == Some("unscoped") {
        return Ok(Scope::Unscoped);
    }
    let Some(scope) = auth.get("scope") else {
        // Keystone scopes to the user's default project when no scope is asked for.
        if let Some(p) = &user.default_project_id {
            if let Ok(Some(p)) = id.db().find_project(p).await {
                if p.enabled {
                    return Ok(Scope::Project(p));
                }
            }
        }
        return Ok(Scope::Unscoped);
    };
    if scope.get("system").is_some() {
        return Ok(Scope::System);
    }
    if scope.get("domain").is_some() {
        // Roles are held on projects and the system only: like Keystone for a user without a
        // role on the domain (Horizon tries a domain scope at login and goes on).
        return Err(unauthorized());
    }
    let Some(p) = scope.get("project") else {
        return Err(bad_request("Only project and system scopes are supported."));
    };
    if !is_default_domain(p.get("domain")) {
        return Err(unauthorized());
    }
    let key = str_field(p, "id")
        .or_else(|| str_field(p, "name"))
        .ok_or_else(|| bad_request("A project scope needs an id or a name."))?;
    match id.db().find_project(key).await {
        Ok(Some(p)) if p.enabled => Ok(Scope::Project(p)),
        Ok(_) => Err(unauthorized()),
        Err(e) => Err(db_error(e)),
    }
}

/// Who a password or token method authenticates.
struct Authenticated {
    user: User,
    methods: Vec<String>,
    /// For the token method: the token's expiry (the new one expires no later) and its
    /// lineage (the token and those it was rescoped from).
    not_after: Option<i64>,
    chain: Vec<String>,
}

/// The user a password or token method authenticates, and the methods used.
async fn authenticate(
    id: &Identity,
    identity: &Value,
    client: Option<std::net::IpAddr>,
) -> Result<Authenticated, Response> {
    let methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if methods.iter().any(|m| m == "password") {
        let u = identity
            .get("password")
            .and_then(|p| p.get("user"))
            .ok_or_else(|| bad_request("The password method needs a user."))?;
        let password = str_field(u, "password").ok_or_else(unauthorized)?;
        if !is_default_domain(u.get("domain")) {
            return Err(unauthorized());
        }
        let key = str_field(u, "id")
            .or_else(|| str_field(u, "name"))
            .ok_or_else(|| bad_request("The password method needs a user id or name."))?;
        let user = check_password(id, key, password, client).await?;
        return Ok(Authenticated {
            user,
            methods: vec!["password".into()],
            not_after: None,
            chain: Vec::new(),
        });
    }
    if methods.iter().any(|m| m == "token") {
        let token = identity
            .get("token")
            .and_then(|t| str_field(t, "id"))
            .ok_or_else(|| bad_request("The token method needs a token id."))?;
        let r = id.resolve(token).await.map_err(from_auth)?;
        if r.claims.chain.len() >= MAX_RESCOPE_DEPTH {
            return Err(error(
                StatusCode::FORBIDDEN,
                "This token was rescoped from rescoped tokens too many times; authenticate again.",
            ));
        }
        let mut methods = r.claims.methods.clone();
        if !methods.iter().any(|m| m == "token") {
            methods.push("token".into());
        }
        let mut chain = r.claims.chain;
        chain.push(r.claims.id);
        return Ok(Authenticated {
            user: r.user,
            methods,
            not_after: Some(r.claims.exp),
            chain,
        });
    }
    Err(unauthorized())
}

/// The enabled user `key` (id or name) whose password this is, through the failed-login
/// throttle; 401 (or 429 while throttled) otherwise.
async fn check_password(
    id: &Identity,
    key: &str,
    password: &str,
    client: Option<std::net::IpAddr>,
) -> Result<User, Response> {
    let shown_client = client.map_or_else(|| "-".to_owned(), |a| a.to_string());
    match id.throttle.check(key, client) {
        Ok(()) => {}
        Err(Refusal::Locked) => {
            tracing::warn!(user = %key, client = %shown_client, "login refused: user locked out");
            return Err(unauthorized());
        }
        Err(Refusal::Throttled(wait)) => {
            tracing::warn!(user = %key, client = %shown_client, "login refused: too many failures");
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed logins; try again later.",
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(resp);
        }
    }
    let user = match id.db().find_user(key).await {
        Ok(u) => u.filter(|u| u.enabled),
        Err(e) => return Err(db_error(e)),
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = id.check_password(password.to_owned(), hash).await;
    let Some(user) = user.filter(|_| ok) else {
        id.throttle.failed(key, client);
        tracing::warn!(user = %key, client = %shown_client, "password authentication failed");
        return Err(unauthorized());
    };
    id.throttle.succeeded(key);
    Ok(user)
}

/// `POST /v3/users/{id}/password`: a user changes its own password, proving the old one (no
/// token needed, as in Keystone). The user's earlier tokens stop working.
async fn change_password(
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    axum::extract::Path(user_id): axum::extract::Path<String>,
    client: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let client = client.map(|c| c.0 .0.ip());
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Expecting to find user in the request body.");
    };
    let u = body.get("user").unwrap_or(&Value::Null);
    let (Some(old), Some(new)) = (str_field(u, "original_password"), str_field(u, "password"))
    else {
        return bad_request("Expecting user.original_password and user.password.");
    };
    if new.is_empty() || new.len() > MAX_PASSWORD_BYTES {
        return bad_request(&format!(
            "The new password must have 1 to {MAX_PASSWORD_BYTES} bytes."
        ));
    }
    let user = match check_password(&id, &user_id, old, client).await {
        Ok(u) if u.id == user_id => u,
        Ok(_) => return unauthorized(),
        Err(resp) => return resp,
    };
    let new = new.to_owned();
    let hashed =
        match tokio::task::spawn_blocking(move || vela_auth::identity::hash_password(&new)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return from_auth(AuthError::Unavailable(e)),
            Err(e) => return from_auth(AuthError::Unavailable(e.to_string())),
        };
    if let Err(e) = id.db().set_password(&user.id, &hashed).await {
        return db_error(e);
    }
    tracing::info!(user = %user.name, "password changed by its user");
    StatusCode::NO_CONTENT.into_response()
}

/// Longest password accepted when changing one.
const MAX_PASSWORD_BYTES: usize = 4096;

/// `POST /v3/auth/tokens`: password or token authentication, project/system/no scope.
async fn issue(
    State(state): State<AppState>,
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    headers: HeaderMap,
    client: Option<axum::Extension<ClientAddr>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let client = client.map(|c| c.0 .0.ip());
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Expecting to find auth in the request body.");
    };
    let Some(auth) = body.get("auth") else {
        return bad_request("Expecting to find auth in the request body.");
    };
    let Some(ident) = auth.get("identity") else {
        return bad_request("Expecting to find identity in auth.");
    };
    let Authenticated {
        user,
        methods,
        not_after,
        chain,
    } = match authenticate(&id, ident, client).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let scope = match requested_scope(&id, auth, &user).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let (project, system) = match &scope {
        Scope::Unscoped => (None, false),
        Scope::Project(p) => (Some(p), false),
        Scope::System => (None, true),
    };
    let claims = id.claims(&user, project, system, methods, not_after, chain);
    let base = base_url(&state, &headers);
    issue_response(&id, claims, wants_catalog(&query), &base).await
}

/// A token for `claims`, checked against the database first.
pub(super) async fn mint(
    id: &Identity,
    claims: vela_auth::identity::Claims,
) -> Result<(String, Resolved), Response> {
    let resolved = id.resolve_claims(claims).await.map_err(from_auth)?;
    let token = id.sign(&resolved.claims).await.map_err(from_auth)?;
    tracing::info!(user = %resolved.user.name, methods = ?resolved.claims.methods,
                   audit_id = %resolved.claims.id, "token issued");
    Ok((token, resolved))
}

/// Issues a token for `claims` (checked against the database first): 201 with the token in
/// `X-Subject-Token` and Keystone's token body.
pub(super) async fn issue_response(
    id: &Identity,
    claims: vela_auth::identity::Claims,
    with_catalog: bool,
    base: &str,
) -> Response {
    let (token, resolved) = match mint(id, claims).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let body = token_body(&resolved, with_catalog, base, &id.region);
    let mut resp = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

/// The subject token (`X-Subject-Token`, raw and resolved) the caller may act on under
/// Keystone's `identity:<rule>`: admins and services may act on any token, users on their own.
/// An invalid subject is a 404, an invalid caller a 401.
async fn subject_for(
    id: &Identity,
    headers: &HeaderMap,
    rule: &str,
) -> Result<(String, Resolved), Response> {
    let caller = request_token(headers).ok_or_else(unauthorized)?;
    let caller = id.resolve(caller).await.map_err(from_auth)?;
    let raw = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad_request("X-Subject-Token is required."))?
        .to_owned();
    let subject = match id.resolve(&raw).await {
        Ok(s) => s,
        Err(AuthError::Invalid(_)) => {
            return Err(error(StatusCode::NOT_FOUND, "Could not find token."))
        }
        Err(e) => return Err(from_auth(e)),
    };
    let allowed = caller.user.id == subject.user.id
        || caller
            .roles
            .iter()
            .any(|r| r.name == "admin" || r.name == "service");
    if !allowed {
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!("You are not authorized to perform the requested action: identity:{rule}."),
        ));
    }
    Ok((raw, subject))
}

/// `GET`/`HEAD /v3/auth/tokens`: validates `X-Subject-Token`.
async fn validate(
    State(state): State<AppState>,
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (raw, subject) = match subject_for(&id, &headers, "validate_token").await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let base = base_url(&state, &headers);
    let body = token_body(&subject, wants_catalog(&query), &base, &id.region).to_string();
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        if method == Method::HEAD {
            String::new()
        } else {
            body
        },
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&raw) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

/// `DELETE /v3/auth/tokens`: revokes `X-Subject-Token`.
async fn revoke(
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    headers: HeaderMap,
) -> Response {
    let (_, subject) = match subject_for(&id, &headers, "revoke_token").await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if let Err(e) = id.revoke(&subject.claims).await {
        return db_error(e);
    }
    tracing::info!(audit_id = %subject.claims.id, "token revoked");
    StatusCode::NO_CONTENT.into_response()
}
