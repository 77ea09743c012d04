//! `/v2/metadefs/*`: the metadata definitions catalog, as Glance 33 serves it.
//!
//! Each handler finds the namespace (404 when it is missing or not visible to the caller),
//! checks the action's policy on it (404 when the caller may not even read it, else 403), then
//! reads or writes through the repository. Shapes, statuses and messages follow Glance; where
//! Glance answers 500 (an unknown sort key, a rename onto a taken name, a body that is not an
//! object) Vela answers 400 or 409.

mod items;
mod namespaces;
mod resource_types;

use axum::routing::{get, MethodRouter};
use axum::Router;
use serde_json::{Map, Value};
use vela_db::metadefs::{NsViewer, Page, SortKey};
use vela_domain::metadef::{Association, Namespace, NsVisibility};
use vela_domain::{format_timestamp, RequestContext};

use crate::{ApiError, AppState};

pub use items::{objects_routes, properties_routes, tags_routes};

/// The metadef routes, below `/v2`.
pub fn routes() -> Router<AppState> {
    let r: Vec<(&str, MethodRouter<AppState>)> = vec![
        (
            "/metadefs/namespaces",
            get(namespaces::list).post(namespaces::create),
        ),
        (
            "/metadefs/namespaces/{ns}",
            get(namespaces::show)
                .put(namespaces::update)
                .delete(namespaces::delete),
        ),
        (
            "/metadefs/namespaces/{ns}/resource_types",
            get(resource_types::list_associations).post(resource_types::associate),
        ),
        (
            "/metadefs/namespaces/{ns}/resource_types/{rt}",
            axum::routing::delete(resource_types::dissociate),
        ),
        ("/metadefs/resource_types", get(resource_types::list)),
    ];
    let mut router = Router::new();
    for (path, m) in r
        .into_iter()
        .chain(objects_routes())
        .chain(properties_routes())
        .chain(tags_routes())
    {
        router = router.route(path, m);
    }
    router
}

/// How a missing or invisible namespace is reported (Glance words it per route).
#[derive(Debug, Clone, Copy)]
enum Missing {
    /// `GET …/namespaces/{ns}`: "Metadata definition namespace=X was not found." when missing,
    /// the bare "The resource could not be found." when not visible.
    Show,
    /// The object routes: as `Show` when missing, "Namespace X not found" when not visible.
    Objects,
    /// Everything else: "Namespace X not found".
    Other,
}

fn visible(ns: &Namespace, viewer: NsViewer<'_>) -> bool {
    viewer.admin
        || ns.owner.is_none()
        || ns.visibility == NsVisibility::Public
        || (viewer.project.is_some() && ns.owner.as_deref() == viewer.project)
}

fn viewer<'a>(state: &AppState, ctx: &'a RequestContext) -> NsViewer<'a> {
    NsViewer {
        admin: state.policy.is_admin(ctx),
        project: ctx.project_id.as_deref(),
    }
}

/// The namespace `name` if the caller may see it.
async fn find(
    state: &AppState,
    ctx: &RequestContext,
    name: &str,
    missing: Missing,
) -> Result<Namespace, ApiError> {
    let other = || ApiError::not_found(format!("Namespace {name} not found"));
    let ns = match state.db.get_namespace(name).await {
        Ok(ns) => ns,
        Err(vela_db::DbError::NotFound) => {
            return Err(match missing {
                Missing::Show | Missing::Objects => ApiError::not_found(format!(
                    "Metadata definition namespace={name} was not found."
                )),
                Missing::Other => other(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if !visible(&ns, viewer(state, ctx)) {
        return Err(match missing {
            Missing::Show => ApiError::not_found("The resource could not be found."),
            Missing::Objects | Missing::Other => other(),
        });
    }
    Ok(ns)
}

fn protected_error(kind: &str, name: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        format!("Metadata definition {kind} {name} is protected and cannot be deleted."),
    )
}

/// 403 when the namespace is protected (deleting it, or everything of a kind in it).
fn check_unprotected(ns: &Namespace) -> Result<(), ApiError> {
    if ns.protected {
        return Err(protected_error("namespace", &ns.namespace));
    }
    Ok(())
}

/// The base fields of a namespace, nulls left out.
fn namespace_json(ns: &Namespace) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("namespace".into(), ns.namespace.clone().into());
    if let Some(v) = &ns.display_name {
        m.insert("display_name".into(), v.clone().into());
    }
    if let Some(v) = &ns.description {
        m.insert("description".into(), v.clone().into());
    }
    m.insert("visibility".into(), ns.visibility.as_str().into());
    m.insert("protected".into(), ns.protected.into());
    if let Some(v) = &ns.owner {
        m.insert("owner".into(), v.clone().into());
    }
    m.insert("created_at".into(), format_timestamp(ns.created_at).into());
    m.insert("updated_at".into(), format_timestamp(ns.updated_at).into());
    m
}

fn with_links(mut m: Map<String, Value>, ns: &Namespace) -> Value {
    m.insert(
        "self".into(),
        format!("/v2/metadefs/namespaces/{}", ns.namespace).into(),
    );
    m.insert("schema".into(), "/v2/schemas/metadefs/namespace".into());
    Value::Object(m)
}

fn association_json(a: &Association) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), a.resource_type.clone().into());
    if let Some(p) = &a.prefix {
        m.insert("prefix".into(), p.clone().into());
    }
    if let Some(t) = &a.properties_target {
        m.insert("properties_target".into(), t.clone().into());
    }
    m.insert("created_at".into(), format_timestamp(a.created_at).into());
    m.insert("updated_at".into(), format_timestamp(a.updated_at).into());
    Value::Object(m)
}

/// The query string as pairs.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `limit`: an integer ≥ 0 (`zero_ok`) or > 0.
fn parse_limit(raw: &str, zero_ok: bool) -> Result<usize, ApiError> {
    let n: i64 = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("limit param must be an integer"))?;
    if n < 0 || (n == 0 && !zero_ok) {
        return Err(ApiError::bad_request("limit param must be positive"));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn parse_sort_dir(params: &[(String, String)]) -> Result<bool, ApiError> {
    match param(params, "sort_dir").unwrap_or("desc") {
        "desc" => Ok(true),
        "asc" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "Invalid sort direction: {other}"
        ))),
    }
}

fn parse_sort_key(params: &[(String, String)], names: &[&str]) -> Result<SortKey, ApiError> {
    let raw = param(params, "sort_key").unwrap_or("created_at");
    SortKey::parse(raw)
        .filter(|_| names.contains(&raw) || raw == "created_at" || raw == "updated_at")
        .ok_or_else(|| ApiError::bad_request(format!("Invalid sort key: {raw}")))
}

/// `visibility` of the item lists: validated (public, private or shared), not applied.
fn check_visibility_param(params: &[(String, String)]) -> Result<(), ApiError> {
    match param(params, "visibility") {
        None | Some("") | Some("public") | Some("private") | Some("shared") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid visibility value: {other}"
        ))),
    }
}

/// A page of a list: `limit` (default and cap given), `marker`, `sort_key`, `sort_dir`.
fn parse_page(
    params: &[(String, String)],
    default_limit: usize,
    max_limit: usize,
    names: &[&str],
) -> Result<Page, ApiError> {
    let limit = match param(params, "limit") {
        Some(raw) => parse_limit(raw, true)?,
        None => default_limit,
    };
    Ok(Page {
        sort_key: parse_sort_key(params, names)?,
        descending: parse_sort_dir(params)?,
        marker: param(params, "marker")
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        limit: limit.min(max_limit),
    })
}
