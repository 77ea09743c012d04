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

/// The base URL configured for links, if any.
#[derive(Debug, Clone)]
pub struct PublicEndpoint(pub Option<String>);

fn accepted_prefix(seg: &str) -> bool {
    seg == "v2" || VERSIONS.contains(&seg)
}

/// Answers `/` and `/versions`, maps `/v2.N/…` onto `/v2/…`, and answers every other
/// unversioned path with the version document, as Glance's version negotiation does.
pub async fn negotiate(
    State(public): State<PublicEndpoint>,
    mut req: Request,
    next: Next,
) -> Response {
    let public = public.0.as_deref();
    let path = req.uri().path().to_owned();
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if path == "/versions" {
        return respond(StatusCode::OK, req.headers(), public);
    }
    if first == "healthcheck" || first == "v2" {
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
