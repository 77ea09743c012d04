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

use axum::extract::{Path, RawQuery, State};
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

type Id = axum::Extension<Arc<Identity>>;

/// The caller: a valid token, or 401.
async fn caller(id: &Identity, headers: &HeaderMap) -> Result<Resolved, Response> {
    let token = request_token(headers).ok_or_else(unauthorized)?;
    id.resolve(token).await.map_err(from_auth)
}

/// Whether the caller may read every identity record: an admin, or a reader on the system.
fn reads_all(c: &Resolved) -> bool {
    let has = |n: &str| c.roles.iter().any(|r| r.name == n);
    has("admin") || (c.claims.system && has("reader"))
}

fn forbidden(rule: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        &format!("You are not authorized to perform the requested action: identity:{rule}."),
    )
}

fn not_found(kind: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("Could not find {kind}: {id}."),
    )
}

/// The query's parameters (the last of repeated ones).
fn params(query: &Option<String>) -> BTreeMap<String, String> {
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

/// `GET /v3/auth/projects`: the projects the token's user may scope to.
async fn auth_projects(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let base = base_url(&state, &headers);
    match projects_of(&id, &c.user.id).await {
        Ok(ps) => collection(
            "projects",
            ps.iter().map(|p| project_json(p, &base)).collect(),
            &base,
            "auth/projects",
        ),
        Err(r) => r,
    }
}

/// `GET /v3/auth/domains`: domains the user may scope to. Roles are held on projects and the
/// system only, so there are none.
async fn auth_domains(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = caller(&id, &headers).await {
        return r;
    }
    collection(
        "domains",
        Vec::new(),
        &base_url(&state, &headers),
        "auth/domains",
    )
}

/// `GET /v3/auth/system`: `[{"all": true}]` when the user holds a role on the system.
async fn auth_system(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let system = match id.roles(&c.user.id, SYSTEM).await {
        Ok(r) if !r.is_empty() => vec![json!({"all": true})],
        Ok(_) => Vec::new(),
        Err(e) => return db_error(e),
    };
    collection("system", system, &base_url(&state, &headers), "auth/system")
}

/// `GET /v3/auth/catalog`: the catalog of a scoped token.
async fn auth_catalog(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if c.project.is_none() && !c.claims.system {
        return forbidden("get_auth_catalog");
    }
    let base = base_url(&state, &headers);
    json_ok(json!({
        "catalog": super::catalog(&base, &id.region),
        "links": {"self": format!("{base}/v3/auth/catalog"), "previous": null, "next": null},
    }))
}

/// `GET /v3/users/{id}/projects`: the user's projects (the user itself, or a reader of all).
async fn user_projects(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if c.user.id != user_id && !reads_all(&c) {
        return forbidden("list_user_projects");
    }
    let base = base_url(&state, &headers);
    match projects_of(&id, &user_id).await {
        Ok(ps) => collection(
            "projects",
            ps.iter().map(|p| project_json(p, &base)).collect(),
            &base,
            &format!("users/{user_id}/projects"),
        ),
        Err(r) => r,
    }
}

/// Whether a record passes the `name`, `enabled` and `domain_id` filters.
fn passes(p: &BTreeMap<String, String>, name: &str, enabled: bool) -> bool {
    p.get("name").is_none_or(|n| n == name)
        && p.get("enabled")
            .is_none_or(|_| flag(p, "enabled") == enabled)
        && p.get("domain_id").is_none_or(|d| d == DOMAIN)
}

/// `GET /v3/projects`.
async fn list_projects(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !reads_all(&c) {
        return forbidden("list_projects");
    }
    let p = params(&query);
    let base = base_url(&state, &headers);
    match id.db().list_projects().await {
        Ok(ps) => collection(
            "projects",
            ps.iter()
                .filter(|x| passes(&p, &x.name, x.enabled))
                .map(|x| project_json(x, &base))
                .collect(),
            &base,
            "projects",
        ),
        Err(e) => db_error(e),
    }
}

/// `GET /v3/projects/{id}`: a reader of all, or a token scoped to that project.
async fn show_project(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    Path(project_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let own = c.project.as_ref().is_some_and(|p| p.id == project_id);
    if !own && !reads_all(&c) {
        return forbidden("get_project");
    }
    match id.db().find_project(&project_id).await {
        Ok(Some(p)) if p.id == project_id => {
            json_ok(json!({"project": project_json(&p, &base_url(&state, &headers))}))
        }
        Ok(_) => not_found("project", &project_id),
        Err(e) => db_error(e),
    }
}

/// `GET /v3/users`.
async fn list_users(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !reads_all(&c) {
        return forbidden("list_users");
    }
    let p = params(&query);
    let base = base_url(&state, &headers);
    match id.db().list_users().await {
        Ok(us) => collection(
            "users",
            us.iter()
                .filter(|u| passes(&p, &u.name, u.enabled))
                .map(|u| user_json(u, &base))
                .collect(),
            &base,
            "users",
        ),
        Err(e) => db_error(e),
    }
}

/// `GET /v3/users/{id}`: the user itself, or a reader of all.
async fn show_user(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if c.user.id != user_id && !reads_all(&c) {
        return forbidden("get_user");
    }
    match id.db().find_user(&user_id).await {
        Ok(Some(u)) if u.id == user_id => {
            json_ok(json!({"user": user_json(&u, &base_url(&state, &headers))}))
        }
        Ok(_) => not_found("user", &user_id),
        Err(e) => db_error(e),
    }
}

/// `GET /v3/roles`.
async fn list_roles(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !reads_all(&c) {
        return forbidden("list_roles");
    }
    let p = params(&query);
    let base = base_url(&state, &headers);
    match id.db().list_roles().await {
        Ok(rs) => collection(
            "roles",
            rs.iter()
                .filter(|r| p.get("name").is_none_or(|n| *n == r.name))
                .map(|r| role_json(r, &base))
                .collect(),
            &base,
            "roles",
        ),
        Err(e) => db_error(e),
    }
}

/// `GET /v3/roles/{id}`.
async fn show_role(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    Path(role_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !reads_all(&c) {
        return forbidden("get_role");
    }
    match id.db().list_roles().await {
        Ok(rs) => match rs.iter().find(|r| r.id == role_id) {
            Some(r) => json_ok(json!({"role": role_json(r, &base_url(&state, &headers))})),
            None => not_found("role", &role_id),
        },
        Err(e) => db_error(e),
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
    let (scope, link) = if a.target == SYSTEM {
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
    let mut scope = scope;
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

/// `GET /v3/role_assignments`: filters `user.id`, `scope.project.id`, `scope.system`,
/// `role.id`; `effective` adds the implied roles; `include_names`.
async fn role_assignments(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !reads_all(&c) {
        return forbidden("list_role_assignments");
    }
    let p = params(&query);
    let target = if p.contains_key("scope.system") {
        Some(SYSTEM.to_owned())
    } else {
        p.get("scope.project.id").cloned()
    };
    if p.contains_key("scope.domain.id") || p.contains_key("group.id") {
        // No domain roles and no groups here.
        return collection(
            "role_assignments",
            Vec::new(),
            &base_url(&state, &headers),
            "role_assignments",
        );
    }
    let mut list = match id
        .db()
        .assignments(p.get("user.id").map(String::as_str), target.as_deref())
        .await
    {
        Ok(l) => l,
        Err(e) => return db_error(e),
    };
    if flag(&p, "effective") {
        let mut expanded = Vec::new();
        let mut seen = BTreeSet::new();
        for a in &list {
            let roles = match id.roles(&a.user_id, &a.target).await {
                Ok(r) => r,
                Err(e) => return db_error(e),
            };
            for role in roles {
                if seen.insert((a.user_id.clone(), a.target.clone(), role.id.clone())) {
                    expanded.push(Assignment {
                        user_id: a.user_id.clone(),
                        target: a.target.clone(),
                        role,
                    });
                }
            }
        }
        list = expanded;
    }
    if let Some(r) = p.get("role.id") {
        list.retain(|a| a.role.id == *r);
    }
    let names = if flag(&p, "include_names") {
        let users = match id.db().list_users().await {
            Ok(u) => u.into_iter().map(|u| (u.id, u.name)).collect(),
            Err(e) => return db_error(e),
        };
        let projects = match id.db().list_projects().await {
            Ok(ps) => ps.into_iter().map(|p| (p.id, p.name)).collect(),
            Err(e) => return db_error(e),
        };
        Some(Names { users, projects })
    } else {
        None
    };
    let base = base_url(&state, &headers);
    let items = list
        .iter()
        .map(|a| assignment_json(a, names.as_ref(), &base))
        .collect();
    collection("role_assignments", items, &base, "role_assignments")
}

/// `GET /v3/domains`: the one domain, for readers of all.
async fn list_domains(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !reads_all(&c) {
        return forbidden("list_domains");
    }
    let base = base_url(&state, &headers);
    collection("domains", vec![domain_json(&base)], &base, "domains")
}

/// `GET /v3/domains/{id}`: any scoped token may read its own (the only) domain.
async fn show_domain(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    Path(domain): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if c.project.is_none() && !reads_all(&c) {
        return forbidden("get_domain");
    }
    if domain != DOMAIN {
        return not_found("domain", &domain);
    }
    json_ok(json!({"domain": domain_json(&base_url(&state, &headers))}))
}

/// An empty collection for a caller allowed to list it (`own`: the user in the path is the
/// caller).
async fn empty_list(
    state: &AppState,
    id: &Identity,
    headers: &HeaderMap,
    key: &str,
    path: &str,
    own: Option<&str>,
    rule: &str,
) -> Response {
    let c = match caller(id, headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let allowed = match own {
        Some(user) => c.user.id == user || reads_all(&c),
        None => true,
    };
    if !allowed {
        return forbidden(rule);
    }
    collection(key, Vec::new(), &base_url(state, headers), path)
}

/// `GET /v3/groups`: no groups here.
async fn list_groups(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !reads_all(&c) {
        return forbidden("list_groups");
    }
    collection("groups", Vec::new(), &base_url(&state, &headers), "groups")
}

/// `GET /v3/users/{id}/groups`.
async fn user_groups(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("users/{user_id}/groups");
    empty_list(
        &state,
        &id,
        &headers,
        "groups",
        &path,
        Some(&user_id),
        "list_groups_for_user",
    )
    .await
}

/// `GET /v3/credentials`: callers see their own, and there are none.
async fn list_credentials(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    headers: HeaderMap,
) -> Response {
    empty_list(
        &state,
        &id,
        &headers,
        "credentials",
        "credentials",
        None,
        "list_credentials",
    )
    .await
}

/// `GET /v3/users/{id}/application_credentials`.
async fn user_application_credentials(
    State(state): State<AppState>,
    axum::Extension(id): Id,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("users/{user_id}/application_credentials");
    empty_list(
        &state,
        &id,
        &headers,
        "application_credentials",
        &path,
        Some(&user_id),
        "list_application_credentials",
    )
    .await
}
