//! The tasks API (`/v2/tasks`, admin-only by Glance's default `tasks_api_access`) and the
//! task list of an image (`GET /v2/images/{id}/tasks`, for whoever may see the image).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use vela_domain::policy::{Action, Target};
use vela_domain::task::{Task, TaskQuery, TaskType};
use vela_domain::{format_timestamp, DomainError, RequestContext};

use crate::auth::Ctx;
use crate::wire::{base_url, image_id, json_body, json_response};
use crate::{ApiError, AppState};

/// The task as `GET /v2/tasks/{id}` shows it (`full`), or as a list entry.
pub fn task_json(t: &Task, full: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), t.id.clone().into());
    m.insert("type".into(), t.kind.as_str().into());
    m.insert("status".into(), t.status.as_str().into());
    m.insert("owner".into(), t.owner.clone().into());
    if let Some(e) = t.expires_at {
        m.insert("expires_at".into(), format_timestamp(e).into());
    }
    m.insert("created_at".into(), format_timestamp(t.created_at).into());
    m.insert("updated_at".into(), format_timestamp(t.updated_at).into());
    m.insert("self".into(), format!("/v2/tasks/{}", t.id).into());
    m.insert("schema".into(), "/v2/schemas/task".into());
    if full {
        m.insert("input".into(), t.input.clone().unwrap_or(Value::Null));
        m.insert("result".into(), t.result.clone().unwrap_or(Value::Null));
        m.insert("message".into(), t.message.clone().into());
        for (k, v) in [
            ("image_id", &t.image_id),
            ("request_id", &t.request_id),
            ("user_id", &t.user_id),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
    }
    Value::Object(m)
}

/// The raw record shape `GET /v2/images/{id}/tasks` uses (naive timestamps with
/// microseconds, as Glance's database layer renders them).
fn raw_task_json(t: &Task) -> Value {
    let ts = |v: Option<i64>| {
        v.filter(|t| chrono::DateTime::from_timestamp_micros(*t).is_some())
            .map(|t| vela_domain::format_utc(t, 'T', true))
    };
    json!({
        "id": t.id,
        "type": t.kind.as_str(),
        "status": t.status.as_str(),
        "owner": t.owner,
        "expires_at": ts(t.expires_at),
        "created_at": ts(Some(t.created_at)),
        "updated_at": ts(Some(t.updated_at)),
        "deleted_at": ts(t.deleted_at),
        "deleted": t.deleted,
        "image_id": t.image_id,
        "request_id": t.request_id,
        "user_id": t.user_id,
        "input": t.input,
        "result": t.result,
        "message": t.message,
    })
}

fn check_access(state: &AppState, ctx: &RequestContext, action: Action) -> Result<(), ApiError> {
    let target = Target::project(ctx);
    state.policy.enforce(Action::TasksApiAccess, ctx, &target)?;
    state.policy.enforce(action, ctx, &target)?;
    Ok(())
}

/// Admins see every task; others (if the policy lets them in) their project's.
fn owner_filter(ctx: &RequestContext) -> Option<&str> {
    if ctx.is_admin() {
        None
    } else {
        Some(ctx.project_id.as_deref().unwrap_or(""))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Could not find task {id}"))
}

/// `GET /v2/tasks`.
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    check_access(&state, &ctx, Action::GetTasks)?;
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let paging = &state.cfg.paging;
    let q = TaskQuery::parse(&params, paging.default_limit, paging.max_limit)?;
    let now = vela_domain::now_micros();
    let tasks = state.db.list_tasks(&q, owner_filter(&ctx), now).await?;
    let rest: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    let encode = |p: &[(String, String)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(p)
            .finish()
    };
    let mut body = json!({
        "tasks": tasks.iter().map(|t| task_json(t, false)).collect::<Vec<_>>(),
        "first": "/v2/tasks",
        "schema": "/v2/schemas/tasks",
    });
    if !rest.is_empty() {
        body["first"] = format!("/v2/tasks?{}", encode(&rest)).into();
    }
    if let Some(last) = tasks.last().filter(|_| tasks.len() as i64 == q.limit) {
        let mut next = rest.clone();
        next.push(("marker".into(), last.id.clone()));
        body["next"] = format!("/v2/tasks?{}", encode(&next)).into();
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v2/tasks/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_access(&state, &ctx, Action::GetTask)?;
    let task = match state.db.get_task(&id).await {
        Ok(t) => t,
        Err(vela_db::DbError::NotFound) => return Err(not_found(&id)),
        Err(e) => return Err(e.into()),
    };
    let hidden = owner_filter(&ctx).is_some_and(|o| task.owner.as_deref() != Some(o));
    if hidden || task.expired(vela_domain::now_micros()) {
        return Err(not_found(&id));
    }
    Ok(json_response(StatusCode::OK, &task_json(&task, true)))
}

/// `DELETE /v2/tasks/{id}`: tasks cannot be deleted (405, as Glance).
pub async fn delete(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(_id): Path<String>,
) -> Result<Response, ApiError> {
    check_access(&state, &ctx, Action::GetTask)?;
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "This operation is currently not permitted on Glance Tasks. They are auto deleted after reaching the time based on their expires_at property.",
    )
    .verbatim()
    .with_header(header::ALLOW, "GET"))
}

/// The body of `POST /v2/tasks`: `{"type": "import", "input": {"import_from": URL,
/// "import_from_format": FORMAT, "image_properties": {...}}}`.
fn legacy_input(doc: &Value) -> Result<(Value, String), ApiError> {
    let bad = |m: &str| ApiError::bad_request(m.to_owned());
    let schema = |m: &str| {
        bad(&format!(
            "Provided object does not match schema 'task': {m}"
        ))
    };
    let obj = doc
        .as_object()
        .ok_or_else(|| schema(&format!("{doc} is not of type 'object'")))?;
    let kind = obj
        .get("type")
        .ok_or_else(|| bad("Task 'type' is required"))?;
    let input = obj
        .get("input")
        .ok_or_else(|| bad("Task 'input' is required"))?;
    let kind = kind.as_str().unwrap_or_default();
    if kind != "import" {
        return Err(schema(&format!(
            "'{kind}' is not one of ['import', 'api_image_import', 'location_import']"
        )));
    }
    let fields = match input {
        Value::Object(m) => m,
        Value::String(v) => return Err(schema(&format!("'{v}' is not of type 'null', 'object'"))),
        other => return Err(schema(&format!("{other} is not of type 'null', 'object'"))),
    };
    let from = fields
        .get("import_from")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if from.is_empty() {
        return Err(bad("Invalid location: None"));
    }
    if from.starts_with("file:") || from.starts_with("filesystem:") {
        return Err(bad(
            "File based imports are not allowed. Please use a non-local source of image data.",
        ));
    }
    if !(from.starts_with("http://") || from.starts_with("https://")) {
        return Err(bad(&format!(
            "The given uri is not valid. Please specify a valid uri from the following list of supported uri ['http', 'https']: {}",
            vela_store::outbound::redact_str(&from)
        )));
    }
    Ok((input.clone(), from))
}

/// `POST /v2/tasks`: the legacy import task. The image is made from `image_properties` at
/// once (locked by the task) and the task runs as a web-download into it.
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_access(&state, &ctx, Action::AddTask)?;
    let doc = json_body(&body)?;
    let (input, from) = legacy_input(&doc)?;
    if state
        .importer
        .web_client()
        .check_resolved(&from)
        .await
        .is_err()
    {
        return Err(ApiError::bad_request(format!(
            "URI for legacy import task does not pass filtering: {}",
            vela_store::outbound::redact_str(&from)
        )));
    }
    let props = match &input["image_properties"] {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    let now = vela_domain::now_micros();
    let mut img =
        vela_domain::create::new_image(&props, &ctx, &state.cfg.rules, &state.policy, now)?;
    let mut task = Task::new(TaskType::Import, now);
    task.owner = ctx.project_id.clone();
    task.user_id = ctx.user_id.clone();
    task.request_id = Some(ctx.request_id.clone());
    task.image_id = Some(img.id.as_str().to_owned());
    task.input = Some(input);
    img.properties
        .insert(vela_domain::import::IMPORT_LOCK.to_owned(), task.id.clone());
    state.db.create_image(&img).await?;
    state.db.create_task(&task).await?;
    state.importer.start(
        task.id.clone(),
        vela_import::Caller {
            token: None,
            roles: ctx.roles.clone(),
        },
    );
    // As Glance, the new task shows its image only once it runs.
    let mut shown = task_json(&task, true);
    if let Some(m) = shown.as_object_mut() {
        m.remove("image_id");
    }
    let mut resp = json_response(StatusCode::CREATED, &shown);
    let location = format!("{}/v2/tasks/{}", base_url(&state, &headers), task.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /v2/images/{id}/tasks`.
pub async fn of_image(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Glance's answer for a missing image here is the generic one.
    let missing = |e: ApiError| {
        if e.status == StatusCode::NOT_FOUND {
            ApiError::not_found("The resource could not be found.")
        } else {
            e
        }
    };
    let id = image_id(&id).map_err(missing)?;
    crate::images::load_for(&state, &ctx, &id, Action::GetImage)
        .await
        .map_err(missing)?;
    let tasks = state
        .db
        .image_tasks(&id, owner_filter(&ctx), vela_domain::now_micros())
        .await?;
    let body = json!({"tasks": tasks.iter().map(raw_task_json).collect::<Vec<_>>()});
    Ok(json_response(StatusCode::OK, &body))
}

impl From<vela_import::ImportError> for ApiError {
    fn from(e: vela_import::ImportError) -> Self {
        match e {
            vela_import::ImportError::Db(d) => d.into(),
            other => ApiError::from(DomainError::BadRequest(other.to_string())),
        }
    }
}
