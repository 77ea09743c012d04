//! Keystone's OS-FEDERATION login with OpenID Connect:
//! `POST /v3/OS-FEDERATION/identity_providers/{idp}/protocols/openid/auth` with the provider's
//! access token as a bearer (what keystoneauth's `v3oidcpassword`, `v3oidcclientcredentials`
//! and `v3oidcaccesstoken` send). The token is verified against the provider's keys, its
//! claims go through the provider's mapping, and the caller gets an unscoped token for the
//! mapped user, to rescope to a mapped project with the token method.
//!
//! An `ephemeral` mapped user is made on its first login and belongs to the provider; its
//! role assignments are set to what the mapping gives at each login (mapped projects are made
//! when missing), so a change of groups at the provider counts at the next login. A `local`
//! mapped user must exist already and keeps its own assignments.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use vela_auth::federation::mapping::{Mapped, Mapping, UserType};
use vela_auth::federation::oidc::assertion;
use vela_auth::identity::Identity;
use vela_auth::AuthError;
use vela_db::federation::Idp;
use vela_db::identity::User;

use super::{db_error, error, from_auth, issue_response, unauthorized, wants_catalog};
use crate::wire::base_url;
use crate::AppState;

/// The bearer token of `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Most projects one login may be mapped to.
const MAX_PROJECTS: usize = 64;

pub(super) fn refused(why: &str) -> Response {
    tracing::warn!(reason = %why, "federated login refused");
    unauthorized()
}

/// The local user a mapping result stands for, with its assignments brought up to date.
async fn mapped_user(id: &Identity, idp: &str, m: &Mapped) -> Result<User, Response> {
    let db = id.db();
    // Names come from the provider's claims: keep them to what the tables hold.
    let fits = |s: &str, max: usize| !s.is_empty() && s.chars().count() <= max;
    if !fits(&m.user_name, 255) {
        return Err(refused(
            "the mapped user name is empty or longer than 255 characters",
        ));
    }
    if m.projects.len() > MAX_PROJECTS
        || m.projects
            .iter()
            .any(|(p, roles)| !fits(p, 64) || roles.iter().any(|r| !fits(r, 255)))
    {
        return Err(refused(
            "the mapped projects or roles are too many or too long",
        ));
    }
    if m.user_type == UserType::Local {
        let key = m.user_id.as_deref().unwrap_or(&m.user_name);
        return match db.find_user(key).await.map_err(db_error)? {
            Some(u) if u.enabled && u.idp_id.is_none() => Ok(u),
            _ => Err(refused(
                "the mapped local user does not exist or is disabled",
            )),
        };
    }
    let user = match db.federated_user(idp, &m.user_name).await {
        Ok(u) if u.enabled => u,
        Ok(_) => return Err(refused("the federated user is disabled")),
        Err(vela_db::DbError::Conflict(why)) => return Err(refused(&why)),
        Err(e) => return Err(db_error(e)),
    };
    let mut wanted = Vec::new();
    for (project, roles) in &m.projects {
        let p = match db.find_project(project).await.map_err(db_error)? {
            Some(p) if p.name == *project => p,
            _ => match db.create_project(project).await {
                Ok(p) => p,
                Err(vela_db::DbError::Conflict(_)) => db
                    .find_project(project)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| refused("a mapped project vanished"))?,
                Err(e) => return Err(db_error(e)),
            },
        };
        for r in roles {
            let role = db.ensure_role(r).await.map_err(db_error)?;
            wanted.push((p.id.clone(), role.id));
        }
    }
    db.set_assignments(&user.id, &wanted)
        .await
        .map_err(db_error)?;
    Ok(user)
}

/// The local user the provider's verified `claims` map to, through its mapping.
pub(super) async fn login(
    id: &Identity,
    idp: &Idp,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<User, Response> {
    let mapping = match id.db().find_mapping(&idp.mapping_id).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(refused("the provider's mapping is gone")),
        Err(e) => return Err(db_error(e)),
    };
    let mapped = Mapping::parse(&mapping.rules)
        .and_then(|m| m.apply(&assertion(claims)))
        .map_err(|e| refused(&e.to_string()))?;
    mapped_user(id, &idp.id, &mapped).await
}

/// The enabled provider `idp_id`, or Keystone's 404 or 403.
pub(super) async fn enabled_idp(id: &Identity, idp_id: &str) -> Result<Idp, Response> {
    match id.db().find_idp(idp_id).await {
        Ok(Some(p)) if p.enabled => Ok(p),
        Ok(Some(_)) => Err(error(
            StatusCode::FORBIDDEN,
            &format!("Identity Provider {idp_id} is disabled"),
        )),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            &format!("Could not find Identity Provider: {idp_id}."),
        )),
        Err(e) => Err(db_error(e)),
    }
}

/// Keystone's 404 for a protocol other than `openid`.
pub(super) fn protocol_error(protocol: &str) -> Option<Response> {
    (protocol != "openid").then(|| {
        error(
            StatusCode::NOT_FOUND,
            &format!("Could not find federated protocol: {protocol}."),
        )
    })
}

/// `POST /v3/OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/auth`.
pub(super) async fn federated_auth(
    State(state): State<AppState>,
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    Path((idp_id, protocol)): Path<(String, String)>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if let Some(resp) = protocol_error(&protocol) {
        return resp;
    }
    let idp = match enabled_idp(&id, &idp_id).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some(access_token) = bearer(&headers) else {
        return refused("no bearer access token");
    };
    let claims = match id.oidc.verify(&idp, access_token).await {
        Ok(c) => c,
        Err(AuthError::Invalid(why)) => return refused(&why),
        Err(e) => return from_auth(e),
    };
    let user = match login(&id, &idp, &claims).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    tracing::info!(user = %user.name, idp = %idp.id, "federated login");
    let claims = id.claims(&user, None, false, vec!["openid".into()], None, Vec::new());
    let base = base_url(&state, &headers);
    issue_response(&id, claims, wants_catalog(&query), &base).await
}
