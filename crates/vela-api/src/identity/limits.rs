//! Keystone's unified limits over the embedded identity service: `/v3/registered_limits`,
//! `/v3/limits` (flat model) and the `/v3/services` and `/v3/regions` reads the clients use
//! to name them. Writes need an admin, as Keystone's default policy asks of a system admin;
//! registered limits are readable by anyone with a token, project limits by readers of all
//! and by tokens of the limit's project.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use vela_db::quota::{UnifiedLimit, IMAGE_SERVICE_ID};

use super::directory::{forbidden, not_found, reads_all, Call};
use super::{db_error, error, json_ok};
use crate::AppState;

type Answer = Result<Response, Response>;

/// The identity service's id in the catalog.
const IDENTITY_SERVICE_ID: &str = "vela-identity";
/// Longest `resource_name` and `description`.
const MAX_NAME: usize = 255;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/registered_limits",
            get(list_registered).post(create_registered),
        )
        .route(
            "/registered_limits/{id}",
            get(show_registered)
                .patch(update_registered)
                .delete(delete_limit),
        )
        .route("/limits", get(list_limits).post(create_limits))
        .route("/limits/model", get(model))
        .route(
            "/limits/{id}",
            get(show_limit).patch(update_limit).delete(delete_limit),
        )
        .route("/services", get(list_services))
        .route("/services/{id}", get(show_service))
        .route("/regions", get(list_regions))
        .route("/regions/{id}", get(show_region))
}

fn bad(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, msg)
}

/// Registered limits carry no project; the JSON differs in the limit's key and links.
fn limit_json(l: &UnifiedLimit, base: &str) -> Value {
    let mut v = json!({
        "id": l.id, "service_id": l.service_id, "region_id": l.region_id,
        "resource_name": l.resource_name, "description": l.description,
    });
    match &l.project_id {
        None => {
            v["default_limit"] = json!(l.limit);
            v["links"] = json!({"self": format!("{base}/v3/registered_limits/{}", l.id)});
        }
        Some(p) => {
            v["resource_limit"] = json!(l.limit);
            v["project_id"] = json!(p);
            v["domain_id"] = Value::Null;
            v["links"] = json!({"self": format!("{base}/v3/limits/{}", l.id)});
        }
    }
    v
}

fn services(region: &str, base: &str) -> Vec<Value> {
    [
        (IMAGE_SERVICE_ID, "image", "glance"),
        (IDENTITY_SERVICE_ID, "identity", "keystone"),
    ]
    .iter()
    .map(|(id, ty, name)| {
        json!({"id": id, "type": ty, "name": name, "enabled": true, "description": null,
               "region": region, "links": {"self": format!("{base}/v3/services/{id}")}})
    })
    .collect()
}

async fn list_services(call: Call) -> Answer {
    call.caller().await?;
    let mut all = services(&call.id.region, &call.base);
    for key in ["name", "type"] {
        if let Some(want) = call.query.get(key) {
            all.retain(|s| s[key] == json!(want));
        }
    }
    Ok(call.list("services", all, "services"))
}

async fn show_service(call: Call, Path(id): Path<String>) -> Answer {
    call.caller().await?;
    services(&call.id.region, &call.base)
        .into_iter()
        .find(|s| s["id"] == json!(id))
        .map(|s| json_ok(json!({ "service": s })))
        .ok_or_else(|| not_found("service", &id))
}

fn region_json(region: &str, base: &str) -> Value {
    json!({"id": region, "description": "", "parent_region_id": null,
           "links": {"self": format!("{base}/v3/regions/{region}")}})
}

async fn list_regions(call: Call) -> Answer {
    call.caller().await?;
    let r = region_json(&call.id.region, &call.base);
    Ok(call.list("regions", vec![r], "regions"))
}

async fn show_region(call: Call, Path(id): Path<String>) -> Answer {
    call.caller().await?;
    if id != call.id.region {
        return Err(not_found("region", &id));
    }
    Ok(json_ok(
        json!({"region": region_json(&call.id.region, &call.base)}),
    ))
}

/// `GET /v3/limits/model`: the flat model, the one Glance's limits use.
async fn model(call: Call) -> Answer {
    call.caller().await?;
    Ok(json_ok(json!({"model": {"name": "flat",
        "description": "Limit enforcement and validation does not take project hierarchy into consideration."}})))
}

/// Applies the list filters Keystone takes.
fn filtered(call: &Call, mut ls: Vec<UnifiedLimit>) -> Vec<UnifiedLimit> {
    let q = &call.query;
    ls.retain(|l| {
        q.get("service_id").is_none_or(|s| *s == l.service_id)
            && q.get("region_id")
                .is_none_or(|r| Some(r) == l.region_id.as_ref())
            && q.get("resource_name").is_none_or(|n| *n == l.resource_name)
            && q.get("project_id")
                .is_none_or(|p| Some(p) == l.project_id.as_ref())
    });
    ls
}

async fn list_registered(call: Call) -> Answer {
    call.caller().await?;
    let all = call
        .id
        .db()
        .unified_limits(None, None, None)
        .await
        .map_err(db_error)?;
    let items = filtered(&call, all)
        .iter()
        .map(|l| limit_json(l, &call.base))
        .collect();
    Ok(call.list("registered_limits", items, "registered_limits"))
}

async fn list_limits(call: Call) -> Answer {
    let c = call.caller().await?;
    let all = call.id.db().all_project_limits().await.map_err(db_error)?;
    let mut ls = filtered(&call, all);
    if !reads_all(&c) {
        let own = c.project.as_ref().map(|p| p.id.clone());
        ls.retain(|l| l.project_id == own);
    }
    let items = ls.iter().map(|l| limit_json(l, &call.base)).collect();
    Ok(call.list("limits", items, "limits"))
}

/// The limit `id` of the wanted kind (registered or project), or 404.
async fn find(call: &Call, id: &str, registered: bool) -> Result<UnifiedLimit, Response> {
    let kind = if registered {
        "registered limit"
    } else {
        "limit"
    };
    match call.id.db().unified_limit(id).await.map_err(db_error)? {
        Some(l) if l.project_id.is_none() == registered => Ok(l),
        _ => Err(not_found(kind, id)),
    }
}

async fn show_registered(call: Call, Path(id): Path<String>) -> Answer {
    call.caller().await?;
    let l = find(&call, &id, true).await?;
    Ok(json_ok(
        json!({"registered_limit": limit_json(&l, &call.base)}),
    ))
}

async fn show_limit(call: Call, Path(id): Path<String>) -> Answer {
    let c = call.caller().await?;
    let l = find(&call, &id, false).await?;
    let own = c.project.as_ref().map(|p| p.id.clone());
    if !reads_all(&c) && l.project_id != own {
        return Err(forbidden("get_limit"));
    }
    Ok(json_ok(json!({"limit": limit_json(&l, &call.base)})))
}

/// The caller, when it may change limits.
async fn admin(call: &Call, rule: &str) -> Result<(), Response> {
    let c = call.caller().await?;
    if c.roles.iter().any(|r| r.name == "admin") {
        Ok(())
    } else {
        Err(forbidden(rule))
    }
}

fn text(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("Invalid input for field '{key}': not a string.")),
    }
}

fn number(o: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match o.get(key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (-1..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "Invalid input for field '{key}': an integer from -1 to 2147483647 is required."
            )),
        },
    }
}

/// Reads one limit from a request object over `base` (the stored one when updating), and
/// checks its references: a known service, this region or none, an existing project.
async fn read_limit(
    call: &Call,
    o: &Map<String, Value>,
    mut l: UnifiedLimit,
    value_key: &str,
) -> Result<UnifiedLimit, Response> {
    if let Some(s) = text(o, "service_id").map_err(|m| bad(&m))? {
        l.service_id = s;
    }
    if o.contains_key("region_id") {
        l.region_id = text(o, "region_id").map_err(|m| bad(&m))?;
    }
    if let Some(n) = text(o, "resource_name").map_err(|m| bad(&m))? {
        l.resource_name = n;
    }
    if let Some(v) = number(o, value_key).map_err(|m| bad(&m))? {
        l.limit = v;
    }
    if o.contains_key("description") {
        l.description = text(o, "description").map_err(|m| bad(&m))?;
    }
    if o.contains_key("project_id") {
        l.project_id = text(o, "project_id").map_err(|m| bad(&m))?;
    }
    if ![IMAGE_SERVICE_ID, IDENTITY_SERVICE_ID].contains(&l.service_id.as_str()) {
        return Err(bad(&format!(
            "Invalid input for field 'service_id': no service {}.",
            l.service_id
        )));
    }
    if l.region_id.as_ref().is_some_and(|r| *r != call.id.region) {
        return Err(bad("Invalid input for field 'region_id': no such region."));
    }
    if l.resource_name.is_empty() || l.resource_name.len() > MAX_NAME {
        return Err(bad(
            "Invalid input for field 'resource_name': 1 to 255 characters are required.",
        ));
    }
    if l.description.as_ref().is_some_and(|d| d.len() > MAX_NAME) {
        return Err(bad(
            "Invalid input for field 'description': at most 255 characters.",
        ));
    }
    if let Some(p) = &l.project_id {
        let found = call.id.db().find_project(p).await.map_err(db_error)?;
        if found.is_none_or(|x| x.id != *p) {
            return Err(bad(&format!(
                "Invalid input for field 'project_id': no project {p}."
            )));
        }
    }
    Ok(l)
}

fn objects(body: &Bytes, key: &str) -> Result<Vec<Map<String, Value>>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| "Malformed request body.".to_owned())?;
    let items = v
        .get(key)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= 100)
        .ok_or_else(|| format!("'{key}' must be a list of 1 to 100 objects."))?;
    items
        .iter()
        .map(|i| {
            i.as_object()
                .cloned()
                .ok_or_else(|| format!("'{key}' must be a list of objects."))
        })
        .collect()
}

fn object(body: &Bytes, key: &str) -> Result<Map<String, Value>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| "Malformed request body.".to_owned())?;
    v.get(key)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| format!("'{key}' must be an object."))
}

fn blank(project: Option<String>) -> UnifiedLimit {
    UnifiedLimit {
        id: UnifiedLimit::new_id(),
        project_id: project,
        service_id: String::new(),
        region_id: None,
        resource_name: String::new(),
        limit: -2,
        description: None,
    }
}

async fn store(call: &Call, l: &UnifiedLimit) -> Result<(), Response> {
    call.id
        .db()
        .put_unified_limit(l)
        .await
        .map_err(|e| match e {
            vela_db::DbError::Conflict(m) => error(StatusCode::CONFLICT, &m),
            other => db_error(other),
        })
}

/// A project limit needs a registered limit of the same service, region and resource.
async fn check_registered(call: &Call, l: &UnifiedLimit) -> Result<(), Response> {
    let registered = call
        .id
        .db()
        .unified_limits(None, Some(&l.service_id), None)
        .await
        .map_err(db_error)?;
    if registered
        .iter()
        .any(|r| r.resource_name == l.resource_name && r.region_id == l.region_id)
    {
        return Ok(());
    }
    Err(forbidden(
        "create_limits: no registered limit with these references exists",
    ))
}

/// Creates limits (all or none), answering 201 with them.
async fn create(call: Call, body: Bytes, registered: bool) -> Answer {
    let (key, value, rule) = if registered {
        (
            "registered_limits",
            "default_limit",
            "create_registered_limits",
        )
    } else {
        ("limits", "resource_limit", "create_limits")
    };
    admin(&call, rule).await?;
    let mut made = Vec::new();
    for o in objects(&body, key).map_err(|m| bad(&m))? {
        let l = read_limit(&call, &o, blank(None), value).await?;
        if l.limit < -1 || l.project_id.is_some() == registered {
            return Err(bad(&format!(
                "Invalid input: '{value}'{} is required.",
                if registered { "" } else { " and 'project_id'" }
            )));
        }
        if !registered {
            check_registered(&call, &l).await?;
        }
        made.push(l);
    }
    for l in &made {
        store(&call, l).await?;
    }
    let items: Vec<Value> = made.iter().map(|l| limit_json(l, &call.base)).collect();
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json!({ key: items }).to_string(),
    )
        .into_response())
}

async fn create_registered(call: Call, body: Bytes) -> Answer {
    create(call, body, true).await
}

async fn create_limits(call: Call, body: Bytes) -> Answer {
    create(call, body, false).await
}

/// Changes one limit (the fields given), answering 200 with it.
async fn update(call: Call, id: String, body: Bytes, registered: bool) -> Answer {
    let (key, value, rule) = if registered {
        (
            "registered_limit",
            "default_limit",
            "update_registered_limit",
        )
    } else {
        ("limit", "resource_limit", "update_limit")
    };
    admin(&call, rule).await?;
    let current = find(&call, &id, registered).await?;
    let mut o = object(&body, key).map_err(|m| bad(&m))?;
    if !registered {
        // A project limit's references are fixed; only its value and description change.
        o.retain(|k, _| k == value || k == "description");
    }
    let l = read_limit(&call, &o, current, value).await?;
    store(&call, &l).await?;
    Ok(json_ok(json!({ key: limit_json(&l, &call.base) })))
}

async fn update_registered(call: Call, Path(id): Path<String>, body: Bytes) -> Answer {
    update(call, id, body, true).await
}

async fn update_limit(call: Call, Path(id): Path<String>, body: Bytes) -> Answer {
    update(call, id, body, false).await
}

async fn delete_limit(call: Call, Path(id): Path<String>) -> Answer {
    admin(&call, "delete_limit").await?;
    if call
        .id
        .db()
        .delete_unified_limit(&id)
        .await
        .map_err(db_error)?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found("limit", &id))
    }
}
