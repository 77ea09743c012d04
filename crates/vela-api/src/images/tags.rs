//! `PUT`/`DELETE /v2/images/{id}/tags/{tag}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use vela_domain::policy::Action;
use vela_domain::DomainError;

use super::modify;
use crate::auth::Ctx;
use crate::wire::image_id;
use crate::{ApiError, AppState};

/// Adds a tag (idempotent).
pub async fn add(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    let tag = vela_domain::rules::tag_value(&Value::String(tag))?;
    let rules = state.cfg.rules.clone();
    modify(&state, &ctx, &id, Action::ModifyImage, |img| {
        img.tags.insert(tag);
        rules.check_quotas(img)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a tag; a tag the image does not carry is a 404.
pub async fn remove(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    modify(&state, &ctx, &id, Action::ModifyImage, |img| {
        if img.tags.remove(&tag) {
            Ok(())
        } else {
            Err(DomainError::NotFound(format!("Tag {tag} not found")))
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
