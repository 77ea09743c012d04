//! `POST /v2/images`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::auth::Ctx;
use crate::wire::{base_url, json_body, json_response, ImageView};
use crate::{ApiError, AppState};

/// Creates a `queued` image: 201 with the image, `Location` and the import methods header.
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let img = vela_domain::create::new_image(
        &body,
        &ctx,
        &state.cfg.rules,
        &state.policy,
        vela_domain::now_micros(),
    )?;
    let guard = crate::quota::create_guard(&state, &ctx).await?;
    state.db.create_image_guarded(&img, guard).await?;
    tracing::info!(image_id = %img.id, request_id = %ctx.request_id, "image created");
    let mut resp = json_response(
        StatusCode::CREATED,
        &ImageView::new(&state, &ctx, &state.policy.redact(&img, &ctx)),
    );
    let location = format!("{}/v2/images/{}", base_url(&state, &headers), img.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if !state.cfg.import_methods.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&state.cfg.import_methods.join(",")) {
            resp.headers_mut()
                .insert("OpenStack-image-import-methods", v);
        }
    }
    if state.stores.is_multi() {
        let ids: Vec<&str> = state.stores.all().iter().map(|s| s.id()).collect();
        if let Ok(v) = HeaderValue::from_str(&ids.join(",")) {
            resp.headers_mut().insert("OpenStack-image-store-ids", v);
        }
    }
    Ok(resp)
}
