//! `DELETE /v2/images/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use vela_domain::policy::Action;

use super::modify;
use crate::auth::Ctx;
use crate::wire::image_id;
use crate::{ApiError, AppState};

/// Soft-deletes the image record, then removes its data. Protected images are refused (403).
pub async fn delete(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    let (img, ()) = modify(&state, &ctx, &id, Action::DeleteImage, |img| {
        img.mark_deleted(vela_domain::now_micros(), state.cfg.delayed_delete)
    })
    .await?;
    // Staged data goes at once, whatever happens to the image's own data.
    if let Some(staged) = img.properties.get(vela_domain::import::STAGED_DATA) {
        state
            .importer
            .remove_staged(&id, Some(&staged.as_str().into()))
            .await;
    }
    crate::cache::evict(&state, &id).await;
    if img.status == vela_domain::ImageStatus::PendingDelete {
        tracing::info!(image_id = %id, request_id = %ctx.request_id, "image pending delete");
        return Ok(StatusCode::NO_CONTENT);
    }
    super::delete_data(&state, &id, &img.locations).await;
    tracing::info!(image_id = %id, request_id = %ctx.request_id, "image deleted");
    Ok(StatusCode::NO_CONTENT)
}
