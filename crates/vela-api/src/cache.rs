//! The image cache: the `/v2/cache` API, downloads served from and copied into the cache, the
//! prefetcher for queued images, and the periodic maintenance.
//!
//! The cache belongs to the node (its local disk): the API lists and changes this node's
//! cache, as Glance's default per-node cache does. A cached copy is served only while the image
//! is active and its checksums are the ones the copy was verified against; every node checks
//! that against the database on each download, so an image deleted or deactivated through
//! another node is never served from here either, and the maintenance pass evicts it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Notify;
use vela_domain::policy::{Action, Target};
use vela_domain::{Image, ImageId, ImageStatus, RequestContext};
use vela_store::cache::{Expected, Hit, ImageCache};
use vela_store::ByteStream;

use crate::auth::Ctx;
use crate::images::load_visible;
use crate::wire::{header_str, image_id, json_response};
use crate::{ApiError, AppState};

/// The node's cache and the prefetcher's wake-up call.
#[derive(Debug, Clone)]
pub struct CacheService {
    pub cache: ImageCache,
    wake: Arc<Notify>,
}

impl CacheService {
    pub fn new(cache: ImageCache) -> Self {
        CacheService {
            cache,
            wake: Arc::new(Notify::new()),
        }
    }
}

/// The `/v2/cache` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cache", get(list).delete(clear))
        .route("/cache/{id}", put(queue).delete(delete_entry))
        .route("/cache/nodes/{id}", get(nodes))
        .route("/cache/clean", post(clean))
        .route("/cache/prune", post(prune))
}

/// Checks `action`, then finds the cache (404 where there is none, as Glance says it).
fn enforce<'a>(
    state: &'a AppState,
    ctx: &RequestContext,
    action: Action,
    img: Option<&Image>,
) -> Result<&'a CacheService, ApiError> {
    match img {
        Some(img) => state.policy.enforce_on_image(action, ctx, img)?,
        None => state.policy.enforce(action, ctx, &Target::default())?,
    }
    state
        .cache
        .as_ref()
        .ok_or_else(|| ApiError::not_found("Caching via API is not supported at this site."))
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::internal(e)
}

/// `GET /v2/cache`: the cached and the queued images.
async fn list(State(state): State<AppState>, Ctx(ctx): Ctx) -> Result<Response, ApiError> {
    let svc = enforce(&state, &ctx, Action::CacheList, None)?;
    let cached = svc.cache.list().await.map_err(io_error)?;
    let queued = svc.cache.queued().await.map_err(io_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"cached_images": cached, "queued_images": queued}),
    ))
}

/// `PUT /v2/cache/{id}`: queues an active image for prefetching (202).
async fn queue(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    let img = load_visible(&state, &ctx, &id).await?;
    let svc = enforce(&state, &ctx, Action::CacheImage, Some(&img))?;
    if img.status != ImageStatus::Active {
        return Err(ApiError::bad_request(
            "Only images with status active can be targeted for queueing",
        ));
    }
    svc.cache.queue(&id).await.map_err(io_error)?;
    svc.wake.notify_one();
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /v2/cache/{id}`: removes the image from the cache and the queue.
async fn delete_entry(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    let img = match load_visible(&state, &ctx, &id).await {
        Ok(img) => Some(img),
        Err(e) if e.status == StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let svc = enforce(&state, &ctx, Action::CacheDelete, img.as_ref())?;
    let evicted = svc.cache.evict(&id).await.map_err(io_error)?;
    let dequeued = svc.cache.dequeue(&id).await.map_err(io_error)?;
    if img.is_none() && !evicted && !dequeued {
        return Err(ApiError::not_found(format!("Image {id} not found.")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v2/cache`: empties the cache, the queue, or both (`x-image-cache-clear-target`).
async fn clear(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let svc = enforce(&state, &ctx, Action::CacheDelete, None)?;
    let target = header_str(&headers, "x-image-cache-clear-target")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (cache, queue) = match target.as_str() {
        "" => (true, true),
        "cache" => (true, false),
        "queue" => (false, true),
        _ => return Err(ApiError::bad_request(
            "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string.",
        )),
    };
    if queue {
        let n = svc.cache.clear_queue().await.map_err(io_error)?;
        tracing::info!(removed = n, "image cache queue cleared");
    }
    if cache {
        let n = svc.cache.clear().await.map_err(io_error)?;
        tracing::info!(removed = n, "image cache cleared");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v2/cache/nodes/{id}`: Glance answers it only with its centralized cache driver; a Vela
/// node's cache is its own, so this is Glance's answer without that driver.
async fn nodes(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(_id): Path<String>,
) -> Result<Response, ApiError> {
    enforce(&state, &ctx, Action::ListCachedNodes, None)?;
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "Centralized caching is not enabled",
    ))
}

/// `POST /v2/cache/clean`: removes stalled partial files and half-written entries.
async fn clean(State(state): State<AppState>, Ctx(ctx): Ctx) -> Result<StatusCode, ApiError> {
    let svc = enforce(&state, &ctx, Action::CacheClean, None)?;
    let n = svc.cache.clean().await.map_err(io_error)?;
    tracing::info!(removed = n, "image cache cleaned");
    Ok(StatusCode::OK)
}

/// `POST /v2/cache/prune`: evicts the least recently used images down to the size limit.
async fn prune(State(state): State<AppState>, Ctx(ctx): Ctx) -> Result<Response, ApiError> {
    let svc = enforce(&state, &ctx, Action::CachePrune, None)?;
    let pruned = svc.cache.prune().await.map_err(io_error)?;
    Ok(json_response(StatusCode::OK, &pruned))
}

/// The cached copy of `img` to serve, if there is one. An image that is not active (an admin
/// downloading a deactivated one) is served from its store, and its copy evicted.
pub async fn cached(state: &AppState, img: &Image) -> Option<Hit> {
    let svc = state.cache.as_ref()?;
    if img.status != ImageStatus::Active {
        evict(state, &img.id).await;
        return None;
    }
    svc.cache.lookup(&img.id, &Expected::of(img)?).await
}

/// Counts a download served from the cache.
pub async fn count_hit(state: &AppState, id: &ImageId) {
    if let Some(svc) = &state.cache {
        svc.cache.touch(id).await;
    }
}

/// Passes a whole download of an active image through the cache, copying it in (unless it is
/// being copied already or does not fit).
pub fn copy_through(state: &AppState, img: &Image, body: ByteStream) -> ByteStream {
    let fill = match (&state.cache, Expected::of(img)) {
        (Some(svc), Some(want)) if img.status == ImageStatus::Active => {
            svc.cache.begin(&img.id, want)
        }
        _ => None,
    };
    match fill {
        Some(fill) => fill.tee(body).0,
        None => body,
    }
}

/// Removes `id` from this node's cache and queue (its image was deleted or deactivated).
pub async fn evict(state: &AppState, id: &ImageId) {
    let Some(svc) = &state.cache else { return };
    if let Err(e) = svc.cache.evict(id).await {
        tracing::warn!(image_id = %id, error = %e, "could not evict an image from the cache");
    }
    let _ = svc.cache.dequeue(id).await;
}

/// Copies one queued image into the cache from its first readable location.
async fn prefetch(state: &AppState, svc: &CacheService, raw: &str) {
    let Some(id) = ImageId::parse(raw) else {
        return;
    };
    let img = match state.db.get_image(&id, false).await {
        Ok(img) if img.status == ImageStatus::Active => img,
        Ok(_) | Err(vela_db::DbError::NotFound) => {
            tracing::info!(image_id = %id, "queued image is not active; dropped from the queue");
            let _ = svc.cache.dequeue(&id).await;
            return;
        }
        Err(e) => {
            tracing::warn!(image_id = %id, error = %e, "could not read a queued image");
            return;
        }
    };
    let Some(want) = Expected::of(&img) else {
        let _ = svc.cache.dequeue(&id).await;
        return;
    };
    if svc.cache.lookup(&id, &want).await.is_some() {
        let _ = svc.cache.dequeue(&id).await;
        return;
    }
    for loc in &img.locations {
        let Some(fill) = svc.cache.begin(&id, want.clone()) else {
            break;
        };
        let fetched = match state.stores.store_of(&loc.store) {
            Ok(store) => store.get(&loc.url, None).await,
            Err(e) => Err(e),
        };
        let body = match fetched {
            Ok(f) => f.body,
            Err(e) => {
                tracing::warn!(image_id = %id, location = %loc.url, error = %e, "prefetch could not read a location");
                continue;
            }
        };
        let (mut stream, done) = fill.tee(body);
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
        drop(stream);
        if matches!(done.await, Ok(Ok(()))) {
            break;
        }
    }
    // One attempt per queueing: a failing image is not fetched again and again.
    let _ = svc.cache.dequeue(&id).await;
}

/// The prefetcher: fetches queued images one at a time, when woken by a queueing and every
/// `every` (for images queued before a restart, or through `vela`).
pub async fn prefetcher(state: AppState, every: Duration) {
    let Some(svc) = state.cache.clone() else {
        return;
    };
    loop {
        match svc.cache.queued().await {
            Ok(ids) => {
                for id in ids {
                    prefetch(&state, &svc, &id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the image cache queue"),
        }
        let _ = tokio::time::timeout(every, svc.wake.notified()).await;
    }
}

/// One maintenance pass: evicts copies of images that are gone or no longer active, removes
/// stalled partial files, and prunes to the size limit.
pub async fn maintain(state: &AppState) -> Result<(), ApiError> {
    let Some(svc) = &state.cache else {
        return Ok(());
    };
    for entry in svc.cache.list().await.map_err(io_error)? {
        let Some(id) = ImageId::parse(&entry.image_id) else {
            continue;
        };
        let keep = match state.db.get_image(&id, false).await {
            Ok(img) => img.status == ImageStatus::Active,
            Err(vela_db::DbError::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        if !keep {
            tracing::info!(image_id = %id, "evicting the cached copy of an image that is not active");
            evict(state, &id).await;
        }
    }
    svc.cache.clean().await.map_err(io_error)?;
    let pruned = svc.cache.prune().await.map_err(io_error)?;
    if pruned.total_files_pruned > 0 {
        tracing::info!(
            files = pruned.total_files_pruned,
            bytes = pruned.total_bytes_pruned,
            "image cache pruned"
        );
    }
    Ok(())
}
