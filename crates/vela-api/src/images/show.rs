//! `GET /v2/images/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use vela_domain::policy::Action;

use super::load_for;
use crate::auth::Ctx;
use crate::wire::{image_id, json_response, ImageView};
use crate::{ApiError, AppState};

/// Shows one image.
pub async fn show(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = image_id(&id)?;
    let img = load_for(&state, &ctx, &id, Action::GetImage).await?;
    Ok(json_response(
        StatusCode::OK,
        &ImageView::new(&state, &ctx, &state.policy.redact(&img, &ctx)),
    ))
}
