//! `DELETE /v2/stores/{store}/{image}`: removes an image's data from one of several stores.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use vela_domain::policy::Action;
use vela_domain::{DomainError, ImageStatus};

use super::load_visible;
use crate::auth::Ctx;
use crate::wire::image_id;
use crate::{ApiError, AppState};

/// Glance's checks, in Glance's order: multi-store on (else 404), the store configured here
/// (409), the image (404), `get_image_location` and `delete_image_location` (admin by
/// default), `active` (409), not the image's only copy (403), stored there (404).
pub async fn delete_from_store(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((store_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !state.stores.is_multi() {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let Some(store) = state.stores.get(&store_id).cloned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("The selected store {store_id} is not available on this node."),
        ));
    };
    let missing = || ApiError::not_found(format!("Failed to find image {id}"));
    let image = image_id(&id).map_err(|_| missing())?;
    let img = load_visible(&state, &ctx, &image)
        .await
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND => missing(),
            _ => e,
        })?;
    for action in [Action::GetImageLocation, Action::DeleteImageLocation] {
        state.policy.enforce_on_image(action, &ctx, &img)?;
    }
    let checks = |img: &vela_domain::Image| -> Result<usize, DomainError> {
        if img.status != ImageStatus::Active {
            return Err(DomainError::Conflict(
                "It's not allowed to remove image data from store if image status is not 'active'"
                    .into(),
            ));
        }
        if img.locations.len() == 1 {
            return Err(DomainError::Forbidden(
                "Cannot delete image data from the only store containing it. Consider deleting \
                 the image instead."
                    .into(),
            ));
        }
        img.locations
            .iter()
            .position(|l| l.store == store_id)
            .ok_or_else(|| {
                DomainError::NotFound(format!("Image {id} is not stored in store {store_id}."))
            })
    };
    checks(&img)?;
    let policy = state.policy.clone();
    let (_, removed) = state
        .db
        .update_image(&image, false, |img| {
            policy.enforce_on_image(Action::DeleteImageLocation, &ctx, img)?;
            let at = checks(img)?;
            Ok(img.locations.remove(at))
        })
        .await
        .map_err(|e| match e {
            vela_db::DbError::NotFound => missing(),
            other => other.into(),
        })?;
    // The location is gone from the image first: a failed removal leaves unreferenced data,
    // which garbage collection reclaims, never a location without data. Data in use outside
    // Vela (clones of an RBD snapshot) was left untouched: the location comes back, 409.
    match store.delete(&removed.url).await {
        Ok(()) => {}
        Err(vela_store::StoreError::InUse(why)) => {
            let restored = state
                .db
                .update_image(&image, false, |img| {
                    if !img.locations.iter().any(|l| l.url == removed.url) {
                        img.locations.push(removed.clone());
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = restored {
                tracing::error!(image_id = %image, error = %e, "could not restore a location whose data is in use");
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "The data for Image {image} could not be deleted because it is in use: {why}"
                ),
            ));
        }
        Err(e) => {
            tracing::error!(image_id = %image, store = %store_id, error = %e, "could not delete image data");
        }
    }
    tracing::info!(image_id = %image, store = %store_id, request_id = %ctx.request_id, "image data removed from store");
    Ok(StatusCode::NO_CONTENT)
}
