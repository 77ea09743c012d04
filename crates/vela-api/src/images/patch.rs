//! `PATCH /v2/images/{id}` with either JSON-patch media type.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use vela_domain::patch::{self, Dialect, MEDIA_TYPE_V20, MEDIA_TYPE_V21};
use vela_domain::policy::Action;

use super::modify;
use crate::auth::Ctx;
use crate::wire::{header_str, image_id, json_body, json_response, ImageView};
use crate::{ApiError, AppState};

/// Applies a patch atomically and returns the updated image.
pub async fn patch(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let accepted = format!("{MEDIA_TYPE_V20}, {MEDIA_TYPE_V21}");
    let dialect = header_str(&headers, header::CONTENT_TYPE.as_str())
        .as_deref()
        .and_then(Dialect::from_content_type)
        .ok_or_else(|| {
            ApiError::unsupported_media_type(format!(
                "Image PATCH expects Content-Type one of: {accepted}"
            ))
            .with_header(header::HeaderName::from_static("accept-patch"), &accepted)
        })?;
    let id = image_id(&id)?;
    let doc = json_body(&body)?;
    let ops = patch::parse(&doc, dialect)?;
    state.cfg.rules.check_patch_size(ops.len())?;
    if ops.iter().any(|op| op.path[0] == "locations") {
        let img = super::locations::patch_with_locations(&state, &ctx, &id, &ops, dialect).await?;
        return Ok(json_response(
            StatusCode::OK,
            &ImageView::new(&state, &ctx, &state.policy.redact(&img, &ctx)),
        ));
    }
    let rules = state.cfg.rules.clone();
    let policy = state.policy.clone();
    let (img, ()) = modify(&state, &ctx, &id, Action::ModifyImage, |img| {
        patch::apply(img, &ops, dialect, &ctx, &rules, &policy)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &ImageView::new(&state, &ctx, &state.policy.redact(&img, &ctx)),
    ))
}
