//! Image locations: JSON-patch operations on `/locations` (behind `show_multiple_locations`),
//! and the location API for services (`POST`/`GET /v2/images/{id}/locations`).
//!
//! A new location must be a URL of a store that accepts external locations (the HTTP store);
//! the store is asked for its size before the location is recorded. Locations whose data is
//! reached with Vela's own store credentials (file, S3, Swift) cannot be added by clients:
//! that would let a client point its image at another image's data. HTTP URLs must pass the
//! guarded outbound client's filters and address refusal (`[import_filtering_opts]`,
//! docs/outbound.md) at request time, and are fetched through it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use vela_domain::image::ImageLocation;
use vela_domain::import::IMPORT_LOCK;
use vela_domain::location::{LocationChange, LocationValue, ResolvedLocation, ValidationData};
use vela_domain::patch::{self, Dialect, PatchOp};
use vela_domain::policy::Action;
use vela_domain::task::{Task, TaskType};
use vela_domain::{DomainError, Image, ImageId, ImageStatus, LocationUrl, RequestContext};
use vela_store::outbound::OutboundError;
use vela_store::{Store, StoreError};

use super::{load_for, load_visible, modify};
use crate::auth::Ctx;
use crate::wire::{image_id, json_body, json_response, location_json};
use crate::{ApiError, AppState};

fn invalid_location() -> ApiError {
    ApiError::bad_request("Invalid location")
}

/// The store that serves `url`, if clients may add its locations.
fn external_store<'a>(state: &'a AppState, url: &LocationUrl) -> Option<&'a Arc<dyn Store>> {
    state
        .stores
        .owner_of(url)
        .filter(|s| s.external_locations())
}

/// Checks a URL of the http store against `[import_filtering_opts]` and the address refusal
/// (resolving its host) before anything is sent to it or recorded.
async fn check_outbound(
    state: &AppState,
    store: &dyn Store,
    url: &LocationUrl,
) -> Result<(), OutboundError> {
    if store.kind() != "http" {
        return Ok(());
    }
    match state.cfg.outbound.check_resolved(url.as_str()).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::info!(%url, error = %e, "location URL refused");
            Err(e)
        }
    }
}

/// Finds the store of each value and asks it for the size.
async fn resolve(
    state: &AppState,
    values: &[LocationValue],
    queued: bool,
) -> Result<Vec<ResolvedLocation>, ApiError> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let url = LocationUrl::from(v.url.as_str());
        let store = external_store(state, &url).ok_or_else(invalid_location)?;
        match check_outbound(state, store.as_ref(), &url).await {
            Ok(()) => {}
            Err(OutboundError::Refused(_) | OutboundError::BadUrl(_)) => {
                return Err(invalid_location())
            }
            // The name does not resolve: as an unreachable URL below.
            Err(_) if queued => return Err(ApiError::bad_request("The Store URI was malformed.")),
            Err(_) => return Err(invalid_location()),
        }
        let size = match store.size(&url).await {
            Ok(n) if n > 0 => n,
            Ok(_) | Err(StoreError::NotFound(_) | StoreError::BadLocation(_)) => {
                return Err(invalid_location())
            }
            // Glance's wording when it cannot reach the URL of a queued image.
            Err(e) if queued => {
                tracing::info!(%url, error = %e, "location not reachable");
                return Err(ApiError::bad_request("The Store URI was malformed."));
            }
            Err(e) => {
                tracing::info!(%url, error = %e, "location not reachable");
                return Err(invalid_location());
            }
        };
        let mut metadata = v.metadata.clone();
        if state.stores.is_multi() {
            // The store is the one serving the URL, whatever the client said (as Glance).
            metadata.remove("store");
        }
        out.push(ResolvedLocation {
            location: ImageLocation {
                store: store.id().to_owned(),
                url,
                metadata,
            },
            size,
            validation: v.validation.clone(),
        });
    }
    Ok(out)
}

/// A PATCH that touches `/locations`: Glance's checks before the image is changed, then the
/// whole patch in one transaction. Returns the image and the locations removed (their data
/// has been deleted).
pub async fn patch_with_locations(
    state: &AppState,
    ctx: &RequestContext,
    id: &ImageId,
    ops: &[PatchOp],
    dialect: Dialect,
) -> Result<Image, ApiError> {
    let mut changes: Vec<Option<LocationChange>> = ops
        .iter()
        .map(LocationChange::from_patch)
        .collect::<Result<_, _>>()?;
    if changes
        .iter()
        .flatten()
        .any(|c| matches!(c, LocationChange::Replace(v) if v.is_empty()))
    {
        return Err(ApiError::forbidden("Cannot set locations to empty list."));
    }
    let current = load_visible(state, ctx, id).await?;
    for change in changes.iter_mut().flatten() {
        change.restore_credentials(&current.locations);
    }
    for change in changes.iter().flatten() {
        let action = match change {
            LocationChange::Remove(_) => Action::DeleteImageLocation,
            _ => Action::SetImageLocation,
        };
        state.policy.enforce_on_image(action, ctx, &current)?;
        if !state.cfg.show_multiple_locations {
            let verb = match change {
                LocationChange::Replace(_) => "update",
                other => other.verb(),
            };
            return Err(ApiError::forbidden(format!(
                "It's not allowed to {verb} locations if locations are invisible."
            )));
        }
    }
    let queued = current.status == ImageStatus::Queued;
    let mut resolved = Vec::with_capacity(changes.len());
    for change in &changes {
        resolved.push(match change {
            Some(c) => resolve(state, c.values(), queued).await?,
            None => Vec::new(),
        });
    }
    let (rules, policy) = (state.cfg.rules.clone(), state.policy.clone());
    let algo = state.cfg.hash_algo;
    let (img, removed) = modify(state, ctx, id, Action::ModifyImage, |img| {
        let mut removed = Vec::new();
        for ((op, change), resolved) in ops.iter().zip(&changes).zip(&resolved) {
            match change {
                Some(c) => removed.extend(img.change_locations(
                    c,
                    resolved,
                    algo.name(),
                    algo.digest_len(),
                )?),
                None => patch::apply_op(img, op, dialect, ctx, &rules, &policy)?,
            }
        }
        rules.check_quotas(img)?;
        Ok(removed)
    })
    .await?;
    super::delete_data(state, id, &removed).await;
    Ok(img)
}

/// `GET /v2/images/{id}/locations` (`fetch_image_location`, services by default).
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = image_id(&id)?;
    let img = load_for(&state, &ctx, &id, Action::FetchImageLocation).await?;
    let multi = state.stores.is_multi();
    let locations: Vec<Value> = img
        .locations
        .iter()
        .map(|l| location_json(l, multi, true))
        .collect();
    Ok(json_response(StatusCode::OK, &locations))
}

/// The body of `POST /v2/images/{id}/locations`.
fn parse_add_body(body: &Bytes) -> Result<(String, ValidationData), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("Body expected in request."));
    }
    let doc = json_body(body)?;
    let schema = |reason: &str| {
        ApiError::bad_request(format!(
            "Provided object does not match schema 'location': {reason}"
        ))
    };
    let obj = doc
        .as_object()
        .ok_or_else(|| schema(&format!("{doc} is not of type 'object'")))?;
    let url = match obj.get("url") {
        Some(Value::String(u)) => u.clone(),
        Some(other) => return Err(schema(&format!("{other} is not of type 'string'"))),
        None => return Err(schema("'url' is a required property")),
    };
    let Some(v) = obj.get("validation_data") else {
        return Ok((url, ValidationData::default()));
    };
    let vd = v
        .as_object()
        .ok_or_else(|| schema(&format!("{v} is not of type 'object'")))?;
    if let Some(k) = vd
        .keys()
        .find(|k| !matches!(k.as_str(), "os_hash_algo" | "os_hash_value"))
    {
        return Err(schema(&format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let field = |k: &str| -> Result<Option<String>, ApiError> {
        match vd.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(schema(&format!("{other} is not of type 'string'"))),
        }
    };
    let (algo, value) = (field("os_hash_algo")?, field("os_hash_value")?);
    match (&algo, &value) {
        (Some(_), None) => return Err(schema("'os_hash_value' is a dependency of 'os_hash_algo'")),
        (None, Some(_)) => return Err(schema("'os_hash_algo' is a dependency of 'os_hash_value'")),
        _ => {}
    }
    if let Some(a) = &algo {
        if !matches!(a.as_str(), "sha1" | "sha256" | "sha512" | "md5") {
            return Err(schema(&format!(
                "'{a}' is not one of ['sha1', 'sha256', 'sha512', 'md5']"
            )));
        }
    }
    if value.as_ref().is_some_and(|v| v.len() > 128) {
        return Err(schema("os_hash_value is too long"));
    }
    Ok((
        url,
        ValidationData {
            checksum: None,
            os_hash_algo: algo,
            os_hash_value: value,
        },
    ))
}

/// `POST /v2/images/{id}/locations`: gives a `queued` image its data location. As in Glance,
/// the answer is 202 and the work (size, hashing, activation) happens in the background; a
/// failure leaves the image `queued`.
pub async fn add(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    let img = load_visible(&state, &ctx, &id).await?;
    if img.status != ImageStatus::Queued {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "It's not allowed to add locations if image status is {}.",
                img.status.as_str()
            ),
        ));
    }
    state
        .policy
        .enforce_on_image(Action::AddImageLocation, &ctx, &img)?;
    let (raw_url, validation) = parse_add_body(&body)?;
    let url = LocationUrl::from(raw_url.as_str());
    let store = external_store(&state, &url).cloned();
    if !ctx.has_role("service") && store.as_ref().is_none_or(|s| s.kind() != "http") {
        return Err(ApiError::forbidden(
            "http store must be enabled to use location API by normal user.",
        ));
    }
    if let (Some(algo), Some(value)) = (&validation.os_hash_algo, &validation.os_hash_value) {
        let want = vela_store::digest::HashAlgo::parse(algo).map_or(0, |a| a.digest_len());
        if !value.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::bad_request(format!(
                "os_hash_value ({value}) is not a valid hexadecimal value"
            )));
        }
        if value.len() != want * 2 {
            return Err(ApiError::bad_request(format!(
                "os_hash_value: ({value}) is not the correct size for ({algo}) (should be ({want}) bytes)"
            )));
        }
    }
    let store = store.ok_or_else(invalid_location)?;
    // Refused URLs are a 400 now, before the image is touched; the background fetch goes
    // through the same guarded client (redirects included). Names that do not resolve fail
    // in the background, as unreachable servers do.
    if let Err(OutboundError::Refused(why) | OutboundError::BadUrl(why)) =
        check_outbound(&state, store.as_ref(), &url).await
    {
        // Glance's wording for a filtered URL, which clients (tempest) look for.
        return Err(ApiError::bad_request(format!(
            "URI for location does not pass filtering: {why}"
        )));
    }
    // The image is locked for the background task (Glance's `os_glance_import_task`), so a
    // second request is refused until it is done, and a client can see when it is.
    if super::import::live_lock(&state, &img).await?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "Image has active task"));
    }
    let stale = img.properties.get(IMPORT_LOCK).cloned();
    let mut task = Task::new(TaskType::LocationImport, vela_domain::now_micros());
    task.owner = ctx.project_id.clone();
    task.user_id = ctx.user_id.clone();
    task.request_id = Some(ctx.request_id.clone());
    task.image_id = Some(id.as_str().to_owned());
    let mut validation_json = serde_json::Map::new();
    for (k, v) in [
        ("os_hash_algo", &validation.os_hash_algo),
        ("os_hash_value", &validation.os_hash_value),
    ] {
        if let Some(v) = v {
            validation_json.insert(k.into(), v.clone().into());
        }
    }
    task.input = Some(serde_json::json!({
        "image_id": id.as_str(),
        "loc_url": url.to_string(),
        "validation_data": validation_json,
    }));
    super::import::lock_with_task(
        &state,
        &ctx,
        &id,
        &task,
        Action::AddImageLocation,
        stale,
        "Image has active task",
        |img| {
            if img.status != ImageStatus::Queued {
                return Err(DomainError::Conflict(format!(
                    "It's not allowed to add locations if image status is {}.",
                    img.status.as_str()
                )));
            }
            Ok(())
        },
    )
    .await?;
    state.importer.start_location(
        task.id,
        vela_import::LocationJob {
            store,
            value: LocationValue {
                url: raw_url,
                metadata: Default::default(),
                validation,
            },
        },
    );
    Ok(StatusCode::ACCEPTED)
}
