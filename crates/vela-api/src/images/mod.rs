//! `/v2/images…` handlers, one file per action.

pub mod actions;
pub mod create;
pub mod data;
pub mod delete;
pub mod import;
pub mod list;
pub mod locations;
pub mod members;
pub mod patch;
pub mod show;
pub mod stores;
pub mod tags;

use vela_domain::policy::{visible, Action};
use vela_domain::{DomainError, Image, ImageId, RequestContext};

use crate::{ApiError, AppState};

/// Loads a non-deleted image the caller may see; anything else is a 404.
pub async fn load_visible(
    state: &AppState,
    ctx: &RequestContext,
    id: &ImageId,
) -> Result<Image, ApiError> {
    let img = match state.db.get_image(id, false).await {
        Ok(img) => img,
        Err(vela_db::DbError::NotFound) => {
            return Err(DomainError::image_not_found(id.as_str()).into())
        }
        Err(e) => return Err(e.into()),
    };
    let is_member = match (&ctx.project_id, img.visibility) {
        (Some(p), vela_domain::Visibility::Shared) if !ctx.owns(img.owner.as_deref()) => {
            state.db.is_member(id, p).await?
        }
        _ => false,
    };
    if !visible(ctx, &img, is_member) {
        return Err(DomainError::image_not_found(id.as_str()).into());
    }
    Ok(img)
}

/// Loads a visible image and checks `action` on it (403 when refused, 404 when the caller
/// may not `get_image` it either).
pub async fn load_for(
    state: &AppState,
    ctx: &RequestContext,
    id: &ImageId,
    action: Action,
) -> Result<Image, ApiError> {
    let img = load_visible(state, ctx, id).await?;
    state.policy.enforce_on_image(action, ctx, &img)?;
    Ok(img)
}

/// Checks `action` on `id` (404 when the caller may not even see it), then changes the image in one transaction, re-checking the policy
/// on the current record.
pub async fn modify<T, F>(
    state: &AppState,
    ctx: &RequestContext,
    id: &ImageId,
    action: Action,
    f: F,
) -> Result<(Image, T), ApiError>
where
    F: FnOnce(&mut Image) -> Result<T, DomainError>,
{
    modify_guarded(state, ctx, id, action, None, f).await
}

/// [`modify`], with a quota guard deciding on the change in its transaction.
pub async fn modify_guarded<T, F>(
    state: &AppState,
    ctx: &RequestContext,
    id: &ImageId,
    action: Action,
    guard: Option<vela_db::quota::Guard<'_>>,
    f: F,
) -> Result<(Image, T), ApiError>
where
    F: FnOnce(&mut Image) -> Result<T, DomainError>,
{
    load_for(state, ctx, id, action).await?;
    let policy = state.policy.clone();
    let res = state
        .db
        .update_image_guarded(id, false, guard, |img| {
            policy.enforce_on_image(action, ctx, img)?;
            f(img)
        })
        .await;
    match res {
        Err(vela_db::DbError::NotFound) => Err(DomainError::image_not_found(id.as_str()).into()),
        other => Ok(other?),
    }
}

/// Deletes the data of locations an image no longer has (a deleted image, a removed
/// location). Failures are logged: the data is then unreferenced and `vela store gc` reclaims it.
pub async fn delete_data(
    state: &AppState,
    id: &ImageId,
    removed: &[vela_domain::image::ImageLocation],
) {
    for loc in removed {
        let deleted = match state.stores.store_of(&loc.store) {
            Ok(store) => store.delete(&loc.url).await,
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            tracing::error!(image_id = %id, location = %loc.url, error = %e, "could not delete image data");
        }
    }
}
