//! Request-level limits: how many requests run at once (503 beyond, with `Retry-After`), the
//! length of query strings (400 beyond) and the size of JSON bodies (413 beyond). An oversized body is read to its end (up to a bound)
//! before the 413 goes out, so that the client, still sending, reads the answer instead of a
//! reset connection.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use crate::{ApiConfig, ApiError};

/// How much of an oversized body is read and dropped, at most, before answering 413.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// How long that may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// Longest query string (400 beyond): the request-line limit of Glance's eventlet server.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The shared state of [`layer`].
#[derive(Clone)]
pub struct Limiter {
    slots: Arc<Semaphore>,
    max_body: usize,
}

impl Limiter {
    pub fn new(cfg: &ApiConfig) -> Self {
        Limiter {
            slots: Arc::new(Semaphore::new(cfg.max_concurrent_requests.max(1))),
            max_body: cfg.max_request_body,
        }
    }
}

/// Image data (upload and stage) streams to the stores and is bounded by the image size cap.
fn carries_image_data(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == Method::PUT && (path.ends_with("/file") || path.ends_with("/stage"))
}

fn too_large(max: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("The request body is larger than the limit of {max} bytes."),
    )
    .into_response()
}

/// Reads and drops what is left of `body`, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
pub(crate) async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            if n > left {
                return;
            }
            left -= n;
        }
    })
    .await;
}

/// Reads a JSON body into memory, refusing more than `max` bytes.
async fn read_limited(mut body: Body, max: usize) -> Result<Bytes, Response> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("Error reading the request body: {e}")).into_response()
        })?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > max {
                drain(body).await;
                return Err(too_large(max));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Applies both limits.
pub async fn layer(State(limiter): State<Limiter>, req: Request, next: Next) -> Response {
    let Ok(_slot) = limiter.slots.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy; try again later.",
        )
        .with_header(header::RETRY_AFTER, "1")
        .into_response();
    };
    if req.uri().query().is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return ApiError::bad_request(format!(
            "The query string is longer than {MAX_QUERY_BYTES} bytes."
        ))
        .into_response();
    }
    if carries_image_data(&req) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limiter.max_body as u64) {
        drain(body).await;
        return too_large(limiter.max_body);
    }
    match read_limited(body, limiter.max_body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(resp) => resp,
    }
}
