//! Version discovery and URL version negotiation.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Same order as Glance lists them, without the image cache (v2.17 current)…
const VERSIONS: &[&str] = &[
    "v2.15", "v2.9", "v2.17", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0",
];
/// …and with it (v2.14 and v2.16 add the cache API, v2.18 its clean and prune calls).
const CACHE_VERSIONS: &[&str] = &[
    "v2.18", "v2.17", "v2.16", "v2.15", "v2.14", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3",
    "v2.2", "v2.1", "v2.0",
];

fn versions(cache: bool) -> &'static [&'static str] {
    if cache {
        CACHE_VERSIONS
    } else {
        VERSIONS
    }
}

fn document(h: &HeaderMap, public_endpoint: Option<&str>, cache: bool) -> serde_json::Value {
    let base = match public_endpoint {
        Some(p) => p.trim_end_matches('/').to_owned(),
        None => crate::wire::host_base(h),
    };
    let href = format!("{base}/v2/");
    let current = if cache { "v2.18" } else { "v2.17" };
    let versions: Vec<_> = versions(cache)
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "status": if *id == current { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": href}],
            })
        })
        .collect();
    json!({ "versions": versions })
}

fn respond(status: StatusCode, h: &HeaderMap, neg: &Negotiation) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        document(h, neg.public.as_deref(), neg.cache).to_string(),
    )
        .into_response()
}

/// What version negotiation needs to know.
#[derive(Debug, Clone)]
pub struct Negotiation {
    /// The base URL configured for links, if any.
    pub public: Option<String>,
    /// `/v3` is the embedded identity service's, not an unknown image API version.
    pub identity: bool,
    /// The image cache is enabled (its API versions are offered).
    pub cache: bool,
}

fn accepted_prefix(seg: &str, cache: bool) -> bool {
    seg == "v2" || versions(cache).contains(&seg)
}

/// The media type prefix of Glance's `Accept`-header versioning.
const VND: &str = "application/vnd.openstack.images-";

/// Routes `req` below `/v2` to the API. HEAD is not served there (Glance answers it 405 with
/// `Allow`, and the router would take it for GET), so it is routed as a method no route has.
async fn route(mut req: Request, next: Next) -> Response {
    let head = req.method() == Method::HEAD && req.uri().path().starts_with("/v2");
    if head {
        if let Ok(m) = Method::from_bytes(b"X-HEAD") {
            *req.method_mut() = m;
        }
    }
    let mut resp = next.run(req).await;
    crate::wire::tidy_allow(&mut resp);
    if head && resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        *resp.body_mut() = axum::body::Body::empty();
    }
    resp
}

fn rewrite(req: &mut Request, path: &str) {
    let new = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    if let Ok(uri) = new.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
}

/// Answers `/` and `/versions`, maps `/v2.N/…` onto `/v2/…` (or, with an `Accept` of
/// `application/vnd.openstack.images-v2.N`, `/…` onto `/v2/…`), redirects `/v2` to `/v2/`,
/// and answers every other unversioned path with the version document, as Glance's version
/// negotiation does.
pub async fn negotiate(State(neg): State<Negotiation>, mut req: Request, next: Next) -> Response {
    let public = neg.public.as_deref();
    let path = req.uri().path().to_owned();
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if path == "/versions" {
        return respond(StatusCode::OK, req.headers(), &neg);
    }
    if neg.identity && path == "/v3/" {
        // Keystone answers its version document with or without the slash.
        rewrite(&mut req, "/v3");
    }
    if first == "healthcheck" || (neg.identity && first == "v3") {
        return next.run(req).await;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(version) = accept.strip_prefix(VND) {
        if !accepted_prefix(version, neg.cache) {
            return respond(StatusCode::MULTIPLE_CHOICES, req.headers(), &neg);
        }
        rewrite(&mut req, &format!("/v2{path}"));
        return route(req, next).await;
    }
    if path == "/v2" {
        let base = match public {
            Some(p) => p.trim_end_matches('/').to_owned(),
            None => crate::wire::host_base(req.headers()),
        };
        return (
            StatusCode::FOUND,
            [
                (header::LOCATION, format!("{base}/v2/")),
                (header::CONTENT_TYPE, "text/plain; charset=utf8".to_owned()),
                (
                    HeaderName::from_static(crate::wire::REQUEST_ID),
                    crate::wire::request_id_for(req.headers()),
                ),
            ],
        )
            .into_response();
    }
    if first == "v2" {
        return route(req, next).await;
    }
    if accepted_prefix(first, neg.cache) {
        let rest = &path[1 + first.len()..];
        rewrite(&mut req, &format!("/v2{rest}"));
        return route(req, next).await;
    }
    respond(StatusCode::MULTIPLE_CHOICES, req.headers(), &neg)
}
