//! `POST /v2/images/{id}/actions/{deactivate,reactivate}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use vela_domain::policy::Action;

use super::modify;
use crate::auth::Ctx;
use crate::wire::image_id;
use crate::{ApiError, AppState};

/// `active → deactivated` (no-op when already deactivated).
pub async fn deactivate(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    modify(&state, &ctx, &id, Action::Deactivate, |img| {
        img.deactivate()
    })
    .await?;
    crate::cache::evict(&state, &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `deactivated → active` (no-op when already active).
pub async fn reactivate(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    modify(&state, &ctx, &id, Action::Reactivate, |img| {
        img.reactivate()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
