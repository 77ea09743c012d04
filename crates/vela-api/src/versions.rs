//! Version discovery and URL version negotiation.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Same order as Glance lists them.
const VERSIONS: &[&str] = &[
    "v2.15", "v2.9", "v2.17", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0",
];
const CURRENT: &str = "v2.17";

fn document(h: &HeaderMap, public_endpoint: Option<&str>) -> serde_json::Value {
    let base = match public_endpoint {
        Some(p) => p.trim_end_matches('/').to_owned(),
        None => {
            let host = h
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let href = format!("{base}/v2/");
    let versions: Vec<_> = VERSIONS
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "status": if *id == CURRENT { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": href}],
            })
        })
        .collect();
    json!({ "versions": versions })
}

fn respond(status: StatusCode, h: &HeaderMap, public: Option<&str>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        document(h, public).to_string(),
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
}

fn accepted_prefix(seg: &str) -> bool {
    seg == "v2" || VERSIONS.contains(&seg)
}

/// Answers `/` and `/versions`, maps `/v2.N/…` onto `/v2/…`, and answers every other
/// unversioned path with the version document, as Glance's version negotiation does.
pub async fn negotiate(State(neg): State<Negotiation>, mut req: Request, next: Next) -> Response {
    let public = neg.public.as_deref();
    let path = req.uri().path().to_owned();
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if path == "/versions" {
        return respond(StatusCode::OK, req.headers(), public);
    }
    if neg.identity && path == "/v3/" {
        // Keystone answers its version document with or without the slash.
        if let Ok(uri) = "/v3".parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    if first == "healthcheck" || first == "v2" || (neg.identity && first == "v3") {
        let mut resp = next.run(req).await;
        crate::wire::tidy_allow(&mut resp);
        return resp;
    }
    if accepted_prefix(first) {
        let rest = &path[1 + first.len()..];
        let new = match req.uri().query() {
            Some(q) => format!("/v2{rest}?{q}"),
            None => format!("/v2{rest}"),
        };
        if let Ok(uri) = new.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
        let mut resp = next.run(req).await;
        crate::wire::tidy_allow(&mut resp);
        return resp;
    }
    respond(StatusCode::MULTIPLE_CHOICES, req.headers(), public)
}
