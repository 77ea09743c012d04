//! Keystone v3's read calls over the embedded identity service's users, projects, roles and
//! assignments: what Horizon and the OpenStack clients ask at login (`/v3/auth/projects`,
//! `/v3/auth/domains`, `/v3/auth/system`, `/v3/users/{id}/projects`) and in their panels
//! (projects, users, roles, role assignments, the one domain). Writes stay with
//! `vela identity …`.
//!
//! Groups, credentials and application credentials do not exist here: their lists are empty,
//! so the dashboard's panels for them show nothing rather than an error.
//!
//! Access follows Keystone's default policy: system readers and admins read everything; other
//! callers read themselves, their projects and the token's own project, and get 403 elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use vela_auth::identity::{Identity, Resolved};
use vela_db::identity::{Assignment, Project, Role, User, SYSTEM};

use super::{db_error, error, from_auth, json_ok, unauthorized, DOMAIN};
use crate::auth::request_token;
use crate::wire::base_url;
use crate::AppState;

/// The read routes, under `/v3`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/projects", get(auth_projects))
        .route("/auth/domains", get(auth_domains))
        .route("/auth/system", get(auth_system))
        .route("/auth/catalog", get(auth_catalog))
        .route("/users", get(list_users))
        .route("/users/{id}", get(show_user))
        .route("/users/{id}/projects", get(user_projects))
        .route("/projects", get(list_projects))
        .route("/projects/{id}", get(show_project))
        .route("/roles", get(list_roles))
        .route("/roles/{id}", get(show_role))
        .route("/role_assignments", get(role_assignments))
        .route("/domains", get(list_domains))
        .route("/domains/{id}", get(show_domain))
        .route("/groups", get(list_groups))
        .route("/users/{id}/groups", get(user_groups))
        .route("/credentials", get(list_credentials))
        .route(
            "/users/{id}/application_credentials",
            get(user_application_credentials),
        )
}

/// Handlers answer with either their body or the refusal.
type Answer = Result<Response, Response>;

/// What every read handler takes from its request: the identity service, the caller's
/// headers, the query and the base URL of links.
pub(super) struct Call {
    pub(super) id: Arc<Identity>,
    headers: HeaderMap,
    pub(super) query: BTreeMap<String, String>,
    pub(super) base: String,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let id = parts
            .extensions
            .get::<Arc<Identity>>()
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "The resource could not be found."))?;
        Ok(Call {
            id,
            query: params(&parts.uri.query().map(str::to_owned)),
            base: base_url(state, &parts.headers),
            headers: parts.headers.clone(),
        })
    }
}

impl Call {
    /// The caller: a valid token, or 401.
    pub(super) async fn caller(&self) -> Result<Resolved, Response> {
        caller(&self.id, &self.headers).await
    }

    /// The caller, when it may read everything (else 403 under `identity:<rule>`).
    pub(super) async fn reader(&self, rule: &str) -> Result<Resolved, Response> {
        let c = self.caller().await?;
        if reads_all(&c) {
            Ok(c)
        } else {
            Err(forbidden(rule))
        }
    }

    /// The caller, when it is `user_id` or may read everything.
    async fn self_or_reader(&self, user_id: &str, rule: &str) -> Result<Resolved, Response> {
        let c = self.caller().await?;
        if c.user.id == user_id || reads_all(&c) {
            Ok(c)
        } else {
            Err(forbidden(rule))
        }
    }

    pub(super) fn list(&self, key: &str, items: Vec<Value>, path: &str) -> Response {
        collection(key, items, &self.base, path)
    }
}

/// The caller: a valid token, or 401.
async fn caller(id: &Identity, headers: &HeaderMap) -> Result<Resolved, Response> {
    let token = request_token(headers).ok_or_else(unauthorized)?;
    id.resolve(token).await.map_err(from_auth)
}

/// Whether the caller may read every identity record: an admin, or a reader on the system.
pub(super) fn reads_all(c: &Resolved) -> bool {
    let has = |n: &str| c.roles.iter().any(|r| r.name == n);
    has("admin") || (c.claims.system && has("reader"))
}

pub(super) fn forbidden(rule: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        &format!("You are not authorized to perform the requested action: identity:{rule}."),
    )
}

pub(super) fn not_found(kind: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("Could not find {kind}: {id}."),
    )
}

/// The query's parameters (the last of repeated ones).
pub(super) fn params(query: &Option<String>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Keystone's boolean query values: absent or `0`/`false` (any case) is false.
fn flag(p: &BTreeMap<String, String>, key: &str) -> bool {
    p.get(key)
        .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false"))
}

/// A collection body with Keystone's `links`.
fn collection(key: &str, items: Vec<Value>, base: &str, path: &str) -> Response {
    json_ok(json!({
        key: items,
        "links": {"self": format!("{base}/v3/{path}"), "previous": null, "next": null},
    }))
}

fn project_json(p: &Project, base: &str) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": DOMAIN, "description": "",
        "enabled": p.enabled, "parent_id": DOMAIN, "is_domain": false, "tags": [],
        "options": {}, "links": {"self": format!("{base}/v3/projects/{}", p.id)},
    })
}

fn user_json(u: &User, base: &str) -> Value {
    let mut v = json!({
        "id": u.id, "name": u.name, "domain_id": DOMAIN, "enabled": u.enabled,
        "password_expires_at": null, "options": {},
        "links": {"self": format!("{base}/v3/users/{}", u.id)},
    });
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    v
}

fn role_json(r: &Role, base: &str) -> Value {
    json!({
        "id": r.id, "name": r.name, "domain_id": null, "description": null, "options": {},
        "links": {"self": format!("{base}/v3/roles/{}", r.id)},
    })
}

fn domain_json(base: &str) -> Value {
    json!({
        "id": DOMAIN, "name": "Default", "description": "The default domain",
        "enabled": true, "tags": [], "options": {},
        "links": {"self": format!("{base}/v3/domains/{DOMAIN}")},
    })
}

/// The enabled projects `user_id` holds a role on.
async fn projects_of(id: &Identity, user_id: &str) -> Result<Vec<Project>, Response> {
    let targets: BTreeSet<String> = id
        .db()
        .assignments(Some(user_id), None)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|a| a.target)
        .filter(|t| t != SYSTEM)
        .collect();
    let mut out = Vec::new();
    for p in id.db().list_projects().await.map_err(db_error)? {
        if targets.contains(&p.id) && p.enabled {
            out.push(p);
        }
    }
    Ok(out)
}

fn projects_body(call: &Call, ps: &[Project], path: &str) -> Response {
    let items = ps.iter().map(|p| project_json(p, &call.base)).collect();
    call.list("projects", items, path)
}

/// `GET /v3/auth/projects`: the projects the token's user may scope to.
async fn auth_projects(call: Call) -> Answer {
    let c = call.caller().await?;
    let ps = projects_of(&call.id, &c.user.id).await?;
    Ok(projects_body(&call, &ps, "auth/projects"))
}

/// `GET /v3/auth/domains`: domains the user may scope to. Roles are held on projects and the
/// system only, so there are none.
async fn auth_domains(call: Call) -> Answer {
    call.caller().await?;
    Ok(call.list("domains", Vec::new(), "auth/domains"))
}

/// `GET /v3/auth/system`: `[{"all": true}]` when the user holds a role on the system.
async fn auth_system(call: Call) -> Answer {
    let c = call.caller().await?;
    let roles = call.id.roles(&c.user.id, SYSTEM).await.map_err(db_error)?;
    let system = if roles.is_empty() {
        Vec::new()
    } else {
        vec![json!({"all": true})]
    };
    Ok(call.list("system", system, "auth/system"))
}

/// `GET /v3/auth/catalog`: the catalog of a scoped token.
async fn auth_catalog(call: Call) -> Answer {
    let c = call.caller().await?;
    if c.project.is_none() && !c.claims.system {
        return Err(forbidden("get_auth_catalog"));
    }
    Ok(json_ok(json!({
        "catalog": super::catalog(&call.base, &call.id.region),
        "links": {"self": format!("{}/v3/auth/catalog", call.base), "previous": null, "next": null},
    })))
}

/// `GET /v3/users/{id}/projects`: the user's projects (the user itself, or a reader of all).
async fn user_projects(call: Call, Path(user_id): Path<String>) -> Answer {
    call.self_or_reader(&user_id, "list_user_projects").await?;
    let ps = projects_of(&call.id, &user_id).await?;
    Ok(projects_body(
        &call,
        &ps,
        &format!("users/{user_id}/projects"),
    ))
}

/// Whether a record passes the `name`, `enabled` and `domain_id` filters.
fn passes(p: &BTreeMap<String, String>, name: &str, enabled: bool) -> bool {
    p.get("name").is_none_or(|n| n == name)
        && p.get("enabled")
            .is_none_or(|_| flag(p, "enabled") == enabled)
        && p.get("domain_id").is_none_or(|d| d == DOMAIN)
}

/// `GET /v3/projects`.
async fn list_projects(call: Call) -> Answer {
    call.reader("list_projects").await?;
    let mut ps = call.id.db().list_projects().await.map_err(db_error)?;
    ps.retain(|x| passes(&call.query, &x.name, x.enabled));
    Ok(projects_body(&call, &ps, "projects"))
}

/// `GET /v3/projects/{id}`: a reader of all, or a token scoped to that project.
async fn show_project(call: Call, Path(project_id): Path<String>) -> Answer {
    let c = call.caller().await?;
    let own = c.project.as_ref().is_some_and(|p| p.id == project_id);
    if !own && !reads_all(&c) {
        return Err(forbidden("get_project"));
    }
    match call
        .id
        .db()
        .find_project(&project_id)
        .await
        .map_err(db_error)?
    {
        Some(p) if p.id == project_id => {
            Ok(json_ok(json!({"project": project_json(&p, &call.base)})))
        }
        _ => Err(not_found("project", &project_id)),
    }
}

/// `GET /v3/users`.
async fn list_users(call: Call) -> Answer {
    call.reader("list_users").await?;
    let us = call.id.db().list_users().await.map_err(db_error)?;
    let items = us
        .iter()
        .filter(|u| passes(&call.query, &u.name, u.enabled))
        .map(|u| user_json(u, &call.base))
        .collect();
    Ok(call.list("users", items, "users"))
}

/// `GET /v3/users/{id}`: the user itself, or a reader of all.
async fn show_user(call: Call, Path(user_id): Path<String>) -> Answer {
    call.self_or_reader(&user_id, "get_user").await?;
    match call.id.db().find_user(&user_id).await.map_err(db_error)? {
        Some(u) if u.id == user_id => Ok(json_ok(json!({"user": user_json(&u, &call.base)}))),
        _ => Err(not_found("user", &user_id)),
    }
}

/// `GET /v3/roles`.
async fn list_roles(call: Call) -> Answer {
    call.reader("list_roles").await?;
    let rs = call.id.db().list_roles().await.map_err(db_error)?;
    let items = rs
        .iter()
        .filter(|r| call.query.get("name").is_none_or(|n| *n == r.name))
        .map(|r| role_json(r, &call.base))
        .collect();
    Ok(call.list("roles", items, "roles"))
}

/// `GET /v3/roles/{id}`.
async fn show_role(call: Call, Path(role_id): Path<String>) -> Answer {
    call.reader("get_role").await?;
    let rs = call.id.db().list_roles().await.map_err(db_error)?;
    match rs.iter().find(|r| r.id == role_id) {
        Some(r) => Ok(json_ok(json!({"role": role_json(r, &call.base)}))),
        None => Err(not_found("role", &role_id)),
    }
}

/// User and project names by id, for `include_names`.
struct Names {
    users: BTreeMap<String, String>,
    projects: BTreeMap<String, String>,
}

/// One assignment as Keystone lists it (`names`: with `include_names`).
fn assignment_json(a: &Assignment, names: Option<&Names>, base: &str) -> Value {
    let mut role = json!({"id": a.role.id});
    let mut user = json!({"id": a.user_id});
    let (mut scope, link) = if a.target == SYSTEM {
        (
            json!({"system": {"all": true}}),
            format!("{base}/v3/system/users/{}/roles/{}", a.user_id, a.role.id),
        )
    } else {
        (
            json!({"project": {"id": a.target}}),
            format!(
                "{base}/v3/projects/{}/users/{}/roles/{}",
                a.target, a.user_id, a.role.id
            ),
        )
    };
    if let Some(n) = names {
        role["name"] = json!(a.role.name);
        user["name"] = json!(n.users.get(&a.user_id));
        user["domain"] = json!({"id": DOMAIN, "name": "Default"});
        if a.target != SYSTEM {
            scope["project"]["name"] = json!(n.projects.get(&a.target));
            scope["project"]["domain"] = json!({"id": DOMAIN, "name": "Default"});
        }
    }
    json!({"role": role, "user": user, "scope": scope, "links": {"assignment": link}})
}

/// The assignments with the roles they imply (Keystone's `effective`), each once.
async fn effective(id: &Identity, list: &[Assignment]) -> Result<Vec<Assignment>, Response> {
    let mut expanded = Vec::new();
    let mut seen = BTreeSet::new();
    for a in list {
        for role in id.roles(&a.user_id, &a.target).await.map_err(db_error)? {
            if seen.insert((a.user_id.clone(), a.target.clone(), role.id.clone())) {
                expanded.push(Assignment {
                    user_id: a.user_id.clone(),
                    target: a.target.clone(),
                    role,
                });
            }
        }
    }
    Ok(expanded)
}

/// `GET /v3/role_assignments`: filters `user.id`, `scope.project.id`, `scope.system`,
/// `role.id`; `effective` adds the implied roles; `include_names`.
async fn role_assignments(call: Call) -> Answer {
    call.reader("list_role_assignments").await?;
    let p = &call.query;
    if p.contains_key("scope.domain.id") || p.contains_key("group.id") {
        // No domain roles and no groups here.
        return Ok(call.list("role_assignments", Vec::new(), "role_assignments"));
    }
    let target = if p.contains_key("scope.system") {
        Some(SYSTEM.to_owned())
    } else {
        p.get("scope.project.id").cloned()
    };
    let user = p.get("user.id").map(String::as_str);
    let db = call.id.db();
    let mut list = db
        .assignments(user, target.as_deref())
        .await
        .map_err(db_error)?;
    if flag(p, "effective") {
        list = effective(&call.id, &list).await?;
    }
    if let Some(r) = p.get("role.id") {
        list.retain(|a| a.role.id == *r);
    }
    let names = if flag(p, "include_names") {
        let users = db.list_users().await.map_err(db_error)?;
        let projects = db.list_projects().await.map_err(db_error)?;
        Some(Names {
            users: users.into_iter().map(|u| (u.id, u.name)).collect(),
            projects: projects.into_iter().map(|p| (p.id, p.name)).collect(),
        })
    } else {
        None
    };
    let items = list
        .iter()
        .map(|a| assignment_json(a, names.as_ref(), &call.base))
        .collect();
    Ok(call.list("role_assignments", items, "role_assignments"))
}

/// `GET /v3/domains`: the one domain, for readers of all.
async fn list_domains(call: Call) -> Answer {
    call.reader("list_domains").await?;
    Ok(call.list("domains", vec![domain_json(&call.base)], "domains"))
}

/// `GET /v3/domains/{id}`: any scoped token may read its own (the only) domain.
async fn show_domain(call: Call, Path(domain): Path<String>) -> Answer {
    let c = call.caller().await?;
    if c.project.is_none() && !reads_all(&c) {
        return Err(forbidden("get_domain"));
    }
    if domain != DOMAIN {
        return Err(not_found("domain", &domain));
    }
    Ok(json_ok(json!({"domain": domain_json(&call.base)})))
}

/// `GET /v3/groups`: no groups here.
async fn list_groups(call: Call) -> Answer {
    call.reader("list_groups").await?;
    Ok(call.list("groups", Vec::new(), "groups"))
}

/// `GET /v3/users/{id}/groups`.
async fn user_groups(call: Call, Path(user_id): Path<String>) -> Answer {
    call.self_or_reader(&user_id, "list_groups_for_user")
        .await?;
    Ok(call.list("groups", Vec::new(), &format!("users/{user_id}/groups")))
}

/// `GET /v3/credentials`: callers see their own, and there are none.
async fn list_credentials(call: Call) -> Answer {
    call.caller().await?;
    Ok(call.list("credentials", Vec::new(), "credentials"))
}

/// `GET /v3/users/{id}/application_credentials`.
async fn user_application_credentials(call: Call, Path(user_id): Path<String>) -> Answer {
    call.self_or_reader(&user_id, "list_application_credentials")
        .await?;
    let path = format!("users/{user_id}/application_credentials");
    Ok(call.list("application_credentials", Vec::new(), &path))
}
