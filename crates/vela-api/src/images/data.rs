//! `PUT`/`GET /v2/images/{id}/file`: the data path.
//!
//! Upload records intent first (`queued → saving` in the database), streams the body through
//! the digester into the store, and marks the image `active` only after the store has made the
//! data durable. Any failure removes the partial data and returns the image to `queued`; an
//! image deleted meanwhile gets 410 and its data is removed.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use vela_db::quota::Guard;
use vela_domain::image::ImageLocation;
use vela_domain::import::STAGED_DATA;
use vela_domain::policy::Action;
use vela_domain::quota::{self, Resource};
use vela_domain::range::{self, RangeError, RangeSpec};
use vela_domain::{DomainError, Image, ImageId, ImageStatus, RequestContext};
use vela_store::digest::{FormatCheck, Limits, Options};
use vela_store::ingest::{ingest, IngestError, Ingested};
use vela_store::{ByteRange, ByteStream, Store, StoreError};

use super::{load_for, modify_guarded};
use crate::auth::Ctx;
use crate::wire::{header_str, image_id};
use crate::{ApiError, AppState};

fn parse_size_header(h: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match header_str(h, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("Invalid {name} header value: {v}"))),
    }
}

/// Receives image data (`PUT /v2/images/{id}/file`).
pub async fn upload(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    // A refused upload may leave its body unread, so the connection cannot carry another
    // request: say so, or a client reusing it would see the connection drop.
    accept_data(state, ctx, id, headers, body, Target::Image)
        .await
        .map_err(|e| e.with_header(header::CONNECTION, "close"))
}

/// Receives data for a later `glance-direct` import (`PUT /v2/images/{id}/stage`).
pub async fn stage(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    if !state
        .cfg
        .import_methods
        .iter()
        .any(|m| m == "glance-direct")
    {
        return Err(crate::wire::not_found().await);
    }
    accept_data(state, ctx, id, headers, body, Target::Staging)
        .await
        .map_err(|e| e.with_header(header::CONNECTION, "close"))
}

/// Where received data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A store, as the image's data (`queued → saving → active`).
    Image,
    /// The staging area (`queued → uploading`, which it stays in until imported).
    Staging,
}

impl Target {
    /// The quota the data counts against.
    fn budget(self) -> Resource {
        match self {
            Target::Image => Resource::ImageSizeTotal,
            Target::Staging => Resource::ImageStageTotal,
        }
    }

    fn receiving(self) -> ImageStatus {
        match self {
            Target::Image => ImageStatus::Saving,
            Target::Staging => ImageStatus::Uploading,
        }
    }
}

async fn accept_data(
    state: AppState,
    ctx: vela_domain::RequestContext,
    id: String,
    headers: HeaderMap,
    body: Body,
    target: Target,
) -> Result<StatusCode, ApiError> {
    // A refusal before any data is read drains (a bounded part of) the body first, so that a
    // client still sending reads the answer rather than a reset connection.
    let (id, store, opts, commit_guard) = match prepare(&state, &ctx, id, &headers, target).await {
        Ok(p) => p,
        Err(e) => {
            crate::limits::drain(body).await;
            return Err(e);
        }
    };
    let stream: ByteStream = Box::pin(body.into_data_stream().map_err(io::Error::other));
    // The upload runs in its own task so that its clean-up happens even if the client goes
    // away and the request future is dropped.
    let task = tokio::spawn(store_data(
        state,
        store,
        id,
        stream,
        opts,
        target,
        commit_guard,
    ));
    match task.await {
        Ok(r) => r.map(|_| StatusCode::NO_CONTENT),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// What an accepted upload needs: the image, its store, the ingest options and the quota
/// guard of recording the data.
type Prepared = (ImageId, Arc<dyn Store>, Options, Option<Guard<'static>>);

/// Checks an upload and marks the image as receiving data.
async fn prepare(
    state: &AppState,
    ctx: &RequestContext,
    id: String,
    headers: &HeaderMap,
    target: Target,
) -> Result<Prepared, ApiError> {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str());
    let base = content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim();
    if !base.eq_ignore_ascii_case("application/octet-stream") {
        return Err(ApiError::unsupported_media_type(format!(
            "Invalid content type {}",
            content_type.as_deref().unwrap_or("None")
        )));
    }
    let id = image_id(&id)?;
    let store = match target {
        Target::Image => chosen_store(state, headers)?,
        Target::Staging => state.importer.staging().clone(),
    };
    let announced = parse_size_header(headers, "x-openstack-image-size")?;
    let length = parse_size_header(headers, header::CONTENT_LENGTH.as_str())?;
    let cap = state.cfg.image_size_cap;
    if announced.or(length).is_some_and(|n| n > cap) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Image exceeds the storage quota: the upload is larger than {cap} bytes"),
        ));
    }
    let limits = Limits {
        max_size: Some(cap),
        expected_size: announced.or(length),
    };
    // Glance's early quota check, with the declared size; the same check is made again when
    // the data is recorded, in that transaction, against the usage then.
    let budget = (
        target.budget(),
        quota::mib(announced.or(length).unwrap_or(0)),
    );
    let scoped = crate::quota::precheck(state, ctx, &[budget]).await?;
    let start_guard = scoped
        .as_ref()
        .and_then(|s| s.guard(true, vec![(Resource::ImageCountUploading, 0)]));
    let commit_guard = scoped.and_then(|s| s.guard(false, vec![budget]));

    let lease = lease_micros(state);
    let (action, receiving) = match target {
        Target::Image => (Action::UploadImage, ImageStatus::Saving),
        Target::Staging => (Action::ModifyImage, ImageStatus::Uploading),
    };
    let (img, ()) = modify_guarded(state, ctx, &id, action, start_guard, |img| {
        if target == Target::Image {
            img.check_can_receive_data()?;
        }
        img.set_status(receiving)?;
        img.upload_lease_until = Some(vela_domain::now_micros() + lease);
        Ok(())
    })
    .await?;
    tracing::info!(image_id = %id, request_id = %ctx.request_id, ?target, "receiving data");

    let opts = match target {
        Target::Image => Options {
            algo: Some(state.cfg.hash_algo),
            limits,
            check: Some(FormatCheck {
                disk_format: img.disk_format.clone(),
                container_format: img.container_format.clone(),
                rules: state.cfg.inspection.clone(),
            }),
        },
        // Staged data is inspected when it is imported, against the formats the image has
        // then (they may still change while it is `uploading`).
        Target::Staging => Options {
            algo: None,
            limits,
            check: None,
        },
    };
    Ok((id, store, opts, commit_guard))
}

/// The store an upload goes to: `X-Image-Meta-Store`, else the default one.
fn chosen_store(state: &AppState, headers: &HeaderMap) -> Result<Arc<dyn Store>, ApiError> {
    let Some(asked) = headers.get("x-image-meta-store") else {
        return Ok(state.stores.default_store().clone());
    };
    let asked = asked.to_str().unwrap_or_default().trim();
    state
        .stores
        .get(asked)
        .cloned()
        .ok_or_else(|| ApiError::bad_request(format!("Store for identifier {asked} not found")))
}

fn lease_micros(state: &AppState) -> i64 {
    i64::try_from(state.cfg.upload_lease.as_micros()).unwrap_or(i64::MAX / 2)
}

/// Renews the upload's lease until dropped.
fn keep_lease(state: &AppState, id: &ImageId, target: Target) -> tokio::task::JoinHandle<()> {
    let (db, id, lease) = (state.db.clone(), id.clone(), lease_micros(state));
    let period = (state.cfg.upload_lease / 3).max(std::time::Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let renewed = db
                .update_image(&id, true, |img| {
                    if img.status == target.receiving()
                        && !img.deleted
                        && img.upload_lease_until.is_some()
                    {
                        img.upload_lease_until = Some(vela_domain::now_micros() + lease);
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = renewed {
                tracing::warn!(image_id = %id, error = %e, "could not renew upload lease");
            }
        }
    })
}

fn gone(id: &ImageId) -> DomainError {
    DomainError::Gone(format!(
        "Image {id} could not be found after upload. The image may have been deleted during the upload."
    ))
}

async fn store_data(
    state: AppState,
    store: Arc<dyn Store>,
    id: ImageId,
    body: ByteStream,
    opts: Options,
    target: Target,
    guard: Option<Guard<'static>>,
) -> Result<(), ApiError> {
    let _in_flight = state.metrics.upload_started();
    let heartbeat = keep_lease(&state, &id, target);
    let result = receive(&state, store.as_ref(), id, body, opts, target, guard).await;
    heartbeat.abort();
    result
}

/// Records what was received: an active image, or staged data.
fn record(
    img: &mut Image,
    store: &dyn Store,
    got: &Ingested,
    target: Target,
) -> Result<(), DomainError> {
    match target {
        Target::Image => {
            got.digest.record(img);
            img.locations = vec![ImageLocation {
                store: store.id().to_owned(),
                url: got.stored.location.clone(),
                metadata: Default::default(),
            }];
            img.set_status(ImageStatus::Active)
        }
        Target::Staging => {
            img.size = i64::try_from(got.digest.size).ok();
            img.upload_lease_until = None;
            img.properties.insert(
                STAGED_DATA.to_owned(),
                got.stored.location.as_str().to_owned(),
            );
            Ok(())
        }
    }
}

async fn receive(
    state: &AppState,
    store: &dyn Store,
    id: ImageId,
    body: ByteStream,
    opts: Options,
    target: Target,
    guard: Option<Guard<'static>>,
) -> Result<(), ApiError> {
    let result = match ingest(store, &id, body, opts).await {
        Ok(got) => {
            state.metrics.uploaded(store.id(), got.digest.size);
            let recorded = state
                .db
                .update_image_guarded(&id, true, guard, |img| {
                    if img.deleted || img.status != target.receiving() {
                        return Err(gone(&id));
                    }
                    record(img, store, &got, target)
                })
                .await;
            match recorded {
                Ok(_) => {
                    tracing::info!(image_id = %id, size = got.digest.size, ?target, "data received");
                    return Ok(());
                }
                Err(e) => {
                    if let Err(del) = store.delete(&got.stored.location).await {
                        tracing::error!(image_id = %id, error = %del, "could not remove data of a failed upload");
                    }
                    ApiError::from(e)
                }
            }
        }
        Err(IngestError::Body(e)) => e.into(),
        Err(IngestError::Store(e)) => {
            state.metrics.store_error(store.id(), &e);
            e.into()
        }
    };
    tracing::warn!(image_id = %id, status = %result.status, error = %result.message, "upload failed");
    let reverted = state
        .db
        .update_image(&id, true, |img| {
            if img.deleted || img.status == ImageStatus::Deleted {
                return Err(gone(&id));
            }
            if img.status == target.receiving() {
                img.set_status(ImageStatus::Queued)?;
            }
            Ok(())
        })
        .await;
    match reverted {
        Err(vela_db::DbError::Domain(g @ DomainError::Gone(_))) => Err(g.into()),
        Err(e) => {
            tracing::error!(image_id = %id, error = %e, "could not return image to queued");
            Err(result)
        }
        Ok(_) => Err(result),
    }
}

fn range_error(size: u64, msg: &str) -> ApiError {
    ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, msg.to_owned())
        .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))
}

/// Parses a `Range` header, refused in Glance's words.
fn parse_range(v: &str) -> Result<RangeSpec, ApiError> {
    range::parse_range(v).map_err(|e| match e {
        RangeError::Multiple => ApiError::bad_request("Multiple ranges are not supported."),
        _ => range_error(0, "Invalid Range header."),
    })
}

/// Resolves a range against the object size.
fn resolve(spec: &RangeSpec, size: u64) -> Result<ByteRange, ApiError> {
    let (start, end) = range::resolve(spec, size).map_err(|_| {
        range_error(
            size,
            &format!(
                "Invalid start position in Range header. Start position MUST be in the inclusive range [0, {}].",
                size.saturating_sub(1)
            ),
        )
    })?;
    Ok(ByteRange { start, end })
}

/// Sends image data, whole or one range.
pub async fn download(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = image_id(&id)?;
    let img = load_for(&state, &ctx, &id, Action::DownloadImage).await?;
    if img.status == ImageStatus::Deactivated && !ctx.is_admin() {
        return Err(ApiError::forbidden(
            "The requested image has been deactivated. Image data download is forbidden.",
        ));
    }
    let requested = header_str(&headers, header::RANGE.as_str())
        .or_else(|| header_str(&headers, header::CONTENT_RANGE.as_str()))
        .map(|v| parse_range(&v))
        .transpose()?;
    if let Some(hit) = crate::cache::cached(&state, &img).await {
        let size = hit.size;
        let range = requested.as_ref().map(|r| resolve(r, size)).transpose()?;
        crate::cache::count_hit(&state, &img.id).await;
        let body = counted(
            &state,
            &ctx,
            &img,
            (hit.stream(range), "cache"),
            size,
            range,
        );
        return Ok(data_response(&img, body, size, range));
    }
    // Each location in turn, as Glance: a store that fails to open the data passes to the
    // next copy. A range the data cannot satisfy is the client's error, not the store's.
    let mut failed = None;
    for loc in &img.locations {
        match serve_location(&state, &ctx, &img, loc, &requested).await {
            Ok(resp) => return Ok(resp),
            Err(Served::Client(e)) => return Err(e),
            Err(Served::Store(e)) => {
                state.metrics.store_error(&loc.store, &e);
                tracing::warn!(image_id = %id, location = %loc.url, error = %e, "could not read image data; trying the next location");
                failed = Some(e);
            }
        }
    }
    match failed {
        None | Some(StoreError::NotFound(_)) => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(e) => Err(e.into()),
    }
}

/// Why a location could not be served.
enum Served {
    /// The request cannot be served from any copy.
    Client(ApiError),
    /// This copy failed.
    Store(StoreError),
}

async fn serve_location(
    state: &AppState,
    ctx: &RequestContext,
    img: &Image,
    loc: &ImageLocation,
    requested: &Option<RangeSpec>,
) -> Result<Response, Served> {
    let store = state
        .stores
        .store_of(&loc.store)
        .map_err(Served::Store)?
        .clone();
    let size = match img.size {
        Some(s) => u64::try_from(s).unwrap_or(0),
        None => store.size(&loc.url).await.map_err(Served::Store)?,
    };
    let range = match requested {
        Some(r) => Some(resolve(r, size).map_err(Served::Client)?),
        None => None,
    };
    let fetched = store.get(&loc.url, range).await.map_err(Served::Store)?;
    let body = match range {
        None => crate::cache::copy_through(state, img, fetched.body),
        Some(_) => fetched.body,
    };
    let body = counted(
        state,
        ctx,
        img,
        (body, &loc.store),
        fetched.total_size,
        range,
    );
    Ok(data_response(img, body, fetched.total_size, range))
}

/// Counts what a download sends (`vela_store_bytes_downloaded_total` of `store`) and, with
/// notifications on, stores `image.send` when the body ends or is dropped (ERROR priority
/// when the client got less than it asked for).
fn counted(
    state: &AppState,
    ctx: &RequestContext,
    img: &Image,
    (body, store): (ByteStream, &str),
    total: u64,
    range: Option<ByteRange>,
) -> ByteStream {
    let bytes = state.metrics.downloaded(store);
    if state.db.notifications().is_none() {
        return Box::pin(body.inspect_ok(move |chunk| {
            bytes.inc_by(chunk.len() as u64);
        }));
    }
    struct Report {
        db: vela_db::Db,
        img: Image,
        expected: u64,
        sent: u64,
        project: Option<String>,
        user: Option<String>,
    }
    impl Report {
        fn add(&mut self, n: usize) {
            self.sent += n as u64;
        }
    }
    impl Drop for Report {
        fn drop(&mut self) {
            let notice = vela_domain::notify::image_sent(
                &self.img,
                self.sent,
                self.expected,
                self.project.as_deref(),
                self.user.as_deref(),
            );
            let (db, id) = (self.db.clone(), self.img.id.clone());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = db.notify(notice).await {
                        tracing::warn!(image_id = %id, error = %e, "image.send not stored");
                    }
                });
            }
        }
    }
    let mut report = Report {
        db: state.db.clone(),
        img: img.clone(),
        expected: range.map_or(total, |r| r.len()),
        sent: 0,
        project: ctx.project_id.clone(),
        user: ctx.user_id.clone(),
    };
    Box::pin(body.inspect_ok(move |chunk| {
        bytes.inc_by(chunk.len() as u64);
        report.add(chunk.len());
    }))
}

/// A download response: the whole data (200) or one range of it (206).
fn data_response(
    img: &Image,
    body: ByteStream,
    total_size: u64,
    range: Option<ByteRange>,
) -> Response {
    let (status, length) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.len()),
        None => (StatusCode::OK, total_size),
    };
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(md5) = img
        .checksum
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("content-md5", md5);
    }
    if let Some(r) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end, total_size))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}
