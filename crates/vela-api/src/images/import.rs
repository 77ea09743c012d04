//! `POST /v2/images/{id}/import`: validates the request as Glance does, takes the image's
//! import lock and records the task in one transaction, and hands the task to the importer.
//! The answer is 202 with no body; the work happens in the background.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use vela_domain::import::{ImportMethod, ImportRequest, IMPORT_LOCK};
use vela_domain::policy::Action;
use vela_domain::task::{Task, TaskStatus, TaskType};
use vela_domain::{DomainError, Image, RequestContext};
use vela_import::Caller;

use super::load_visible;
use crate::auth::Ctx;
use crate::wire::{header_str, image_id, json_body};
use crate::{ApiError, AppState};

fn conflict(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, m)
}

/// The ids of the stores data may be imported to (not the read-only ones).
pub fn writable_stores(state: &AppState) -> Vec<&str> {
    state
        .stores
        .all()
        .iter()
        .filter(|s| !s.read_only())
        .map(|s| s.id())
        .collect()
}

/// The task holding the image's lock, if it is still alive. A lock whose task is missing,
/// finished, or whose runner's lease expired is stale and may be taken over.
pub(crate) async fn live_lock(state: &AppState, img: &Image) -> Result<Option<String>, ApiError> {
    let Some(holder) = img.properties.get(IMPORT_LOCK) else {
        return Ok(None);
    };
    let task = match state.db.get_task(holder).await {
        Ok(t) => t,
        Err(vela_db::DbError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let grace = i64::try_from(state.cfg.upload_lease.as_micros())
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(2);
    if task.status.is_final() || task.abandoned(vela_domain::now_micros(), grace) {
        return Ok(None);
    }
    Ok(Some(task.id))
}

/// Accepts an import request.
pub async fn import(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    // Glance's first check: a project over its image_size_total imports nothing. The import
    // itself checks again when it starts (see vela-import).
    crate::quota::precheck(
        &state,
        &ctx,
        &[(vela_domain::quota::Resource::ImageSizeTotal, 0)],
    )
    .await?;
    let doc = json_body(&body)?;
    let req = ImportRequest::parse(&doc, &state.cfg.import_methods)?;
    let img = load_visible(&state, &ctx, &id).await?;
    req.check_image(&img)?;
    let action = match req.method {
        ImportMethod::CopyImage => Action::CopyImage,
        _ => Action::ModifyImage,
    };
    state.policy.enforce_on_image(action, &ctx, &img)?;
    if live_lock(&state, &img).await?.is_some() {
        return Err(conflict("Image has active task"));
    }
    let stale = img.properties.get(IMPORT_LOCK).cloned();
    let header = header_str(&headers, "x-image-meta-store");
    let stores = req.target_stores(
        &img,
        header.as_deref().map(str::trim),
        &writable_stores(&state),
        state.stores.default_store().id(),
        state.stores.is_multi(),
    )?;
    if req.method == ImportMethod::CopyImage && stores.is_empty() {
        tracing::info!(image_id = %id, "the image is already in every store: nothing to copy");
        return Ok(StatusCode::ACCEPTED);
    }
    if let ImportMethod::WebDownload { uri } = &req.method {
        if let Err(e) = state.importer.web_client().check_resolved(uri).await {
            tracing::info!(image_id = %id, error = %e, "web-download URI refused");
            return Err(ApiError::bad_request(format!(
                "URI for web-download does not pass filtering: {}",
                vela_store::outbound::redact_str(uri)
            )));
        }
    }
    let task = new_task(&ctx, &img, &req, &stores);
    let busy = "Image is already being imported by another task";
    lock_with_task(&state, &ctx, &id, &task, action, stale, busy, |img| {
        req.check_image(img)
    })
    .await?;
    tracing::info!(image_id = %id, task_id = %task.id, method = req.method.name(), ?stores, request_id = %ctx.request_id, "import accepted");
    state.importer.start(
        task.id,
        Caller {
            token: header_str(&headers, "x-auth-token"),
            roles: ctx.roles.clone(),
        },
    );
    Ok(StatusCode::ACCEPTED)
}

/// Takes the image's import lock for `task` and records the task, in one transaction:
/// the policy (`action`) and `check` hold on the locked record, and the lock is still the one
/// seen before (`stale`, a dead task's, or none; else 409 `busy`). A taken-over lock's task
/// is failed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn lock_with_task(
    state: &AppState,
    ctx: &RequestContext,
    id: &vela_domain::ImageId,
    task: &Task,
    action: Action,
    stale: Option<String>,
    busy: &str,
    check: impl FnOnce(&Image) -> Result<(), DomainError>,
) -> Result<(), ApiError> {
    let policy = state.policy.clone();
    let taken = state
        .db
        .create_task_for_image(id, task, |img| {
            policy.enforce_on_image(action, ctx, img)?;
            check(img)?;
            if img.properties.get(IMPORT_LOCK) != stale.as_ref() {
                return Err(DomainError::Conflict(busy.into()));
            }
            img.properties
                .insert(IMPORT_LOCK.to_owned(), task.id.clone());
            Ok(())
        })
        .await;
    match taken {
        Ok(_) => {}
        Err(vela_db::DbError::NotFound) => {
            return Err(DomainError::image_not_found(id.as_str()).into())
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(old) = stale {
        bust(state, &old).await;
    }
    Ok(())
}

fn new_task(ctx: &RequestContext, img: &Image, req: &ImportRequest, stores: &[String]) -> Task {
    let mut task = Task::new(TaskType::ApiImageImport, vela_domain::now_micros());
    task.owner = ctx.project_id.clone();
    task.user_id = ctx.user_id.clone();
    task.request_id = Some(ctx.request_id.clone());
    task.image_id = Some(img.id.as_str().to_owned());
    task.input = Some(json!({
        "image_id": img.id.as_str(),
        "import_req": req.body,
        "backend": stores,
    }));
    task
}

/// Fails the task whose stale lock was taken over.
pub(crate) async fn bust(state: &AppState, task_id: &str) {
    let ttl = i64::try_from(state.importer.config().task_ttl.as_micros()).unwrap_or(i64::MAX / 4);
    let res = state
        .db
        .update_task(task_id, |t| {
            if !t.status.is_final() {
                t.set_status(TaskStatus::Failure, vela_domain::now_micros(), ttl)?;
                t.message = "Expired lock preempted".into();
            }
            Ok(())
        })
        .await;
    match res {
        Ok(_) | Err(vela_db::DbError::NotFound) => {}
        Err(e) => tracing::warn!(task_id, error = %e, "could not fail the task of a stale lock"),
    }
}
