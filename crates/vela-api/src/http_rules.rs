//! Glance's HTTP rules that sit between routing and the handlers.
//!
//! [`route_layer`] also names the matched route on the request's tracing span.
//!
//! Glance marks some routes `body_reject`: a request to them that carries a body (a positive
//! `Content-Length`, or a chunked body with data) is answered 400 before any handler or policy
//! check runs. [`route_layer`] does the same for the same routes.

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::ApiError;

/// The routes (below `/v2`) on which Glance refuses a request body.
const BODY_REJECT: &[(&str, &str)] = &[
    ("GET", "/schemas/{name}"),
    ("GET", "/images/{id}"),
    ("DELETE", "/images/{id}"),
    ("GET", "/images/{id}/tasks"),
    ("DELETE", "/stores/{store}/{id}"),
    ("POST", "/images/{id}/actions/deactivate"),
    ("POST", "/images/{id}/actions/reactivate"),
    ("GET", "/images/{id}/file"),
    ("PUT", "/images/{id}/tags/{tag}"),
    ("DELETE", "/images/{id}/tags/{tag}"),
    ("GET", "/images/{id}/members"),
    ("GET", "/images/{id}/members/{member}"),
    ("DELETE", "/images/{id}/members/{member}"),
    ("GET", "/info/import"),
    ("GET", "/info/stores"),
    ("GET", "/info/stores/detail"),
    ("GET", "/cache"),
    ("GET", "/cache/nodes/{id}"),
    ("GET", "/schemas/metadefs/{name}"),
    ("GET", "/metadefs/resource_types"),
    ("GET", "/metadefs/namespaces/{ns}"),
    ("DELETE", "/metadefs/namespaces/{ns}"),
    ("GET", "/metadefs/namespaces/{ns}/objects/{name}"),
    ("DELETE", "/metadefs/namespaces/{ns}/objects/{name}"),
    ("GET", "/metadefs/namespaces/{ns}/tags/{name}"),
    ("POST", "/metadefs/namespaces/{ns}/tags/{name}"),
    ("DELETE", "/metadefs/namespaces/{ns}/tags/{name}"),
];

fn rejects_body(method: &Method, route: &str) -> bool {
    let route = route.strip_prefix("/v2").unwrap_or(route);
    BODY_REJECT
        .iter()
        .any(|(m, r)| *m == method.as_str() && *r == route)
}

fn body_error() -> Response {
    ApiError::bad_request("A body is not expected with this request.").into_response()
}

/// Records the matched route on the request's span, and answers 400 when a body comes with a
/// request to a `body_reject` route.
pub async fn route_layer(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>();
    if let Some(p) = route {
        tracing::Span::current().record("route", p.as_str());
    }
    let checked = route.is_some_and(|p| rejects_body(req.method(), p.as_str()));
    if !checked {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(0) => return next.run(req).await,
        Some(_) => return body_error(),
        None if req.body().is_end_stream() => return next.run(req).await,
        None => {}
    }
    // A chunked body: only data makes it a body (an empty chunked body is none).
    let (parts, mut body) = req.into_parts();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                    return body_error();
                }
            }
            Some(Err(_)) => return body_error(),
        }
    }
    next.run(Request::from_parts(parts, Body::empty())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_nested_and_bare_routes() {
        assert!(rejects_body(&Method::GET, "/v2/images/{id}"));
        assert!(rejects_body(&Method::DELETE, "/images/{id}"));
        assert!(!rejects_body(&Method::PATCH, "/v2/images/{id}"));
        assert!(!rejects_body(&Method::GET, "/v2/images"));
        assert!(!rejects_body(&Method::PUT, "/v2/images/{id}/file"));
    }
}
