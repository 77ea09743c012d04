//! The HTTP layer's one error type, every mapping from lower layers, and the rendering of error
//! bodies as Glance (webob) renders them: the format follows the request's `Accept` header.
//!
//! Handlers return [`ApiError`]; it becomes a bodyless response carrying an [`ErrorInfo`]
//! extension, and [`render`] (called by the wire middleware, which sees the request) writes the
//! JSON, HTML or plain-text body.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use vela_db::DbError;
use vela_domain::DomainError;
use vela_store::digest::BodyError;
use vela_store::StoreError;

/// An error response: status, message and extra headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The message is the whole body text (no status explanation around it).
    pub verbatim: bool,
}

/// What the renderer needs; carried as a response extension.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub message: String,
    pub verbatim: bool,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
            verbatim: false,
        }
    }

    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }

    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, m)
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }

    pub fn unsupported_media_type(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m)
    }

    /// 500 with an opaque message; the cause and its whole chain of sources are logged, not
    /// sent.
    pub fn internal(cause: impl std::error::Error) -> Self {
        tracing::error!(error = %vela_domain::error::error_chain(&cause), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server has either erred or is incapable of performing the requested operation.",
        )
    }

    /// Renders the message as the whole body (Glance's own explanations, e.g. a 405 that
    /// says why).
    pub fn verbatim(mut self) -> Self {
        self.verbatim = true;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        for (k, v) in self.headers {
            resp.headers_mut().append(k, v);
        }
        resp.extensions_mut().insert(ErrorInfo {
            message: self.message,
            verbatim: self.verbatim,
        });
        resp
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match &e {
            DomainError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
            DomainError::NotFound(_) => StatusCode::NOT_FOUND,
            DomainError::Conflict(_) => StatusCode::CONFLICT,
            DomainError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DomainError::Gone(_) => StatusCode::GONE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Domain(d) => d.into(),
            DbError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            DbError::NotFound => ApiError::not_found("The resource could not be found."),
            DbError::Unavailable(cause) => {
                tracing::error!(error = %cause, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The metadata database is temporarily unavailable.",
                )
            }
            DbError::Limits(cause) => {
                tracing::error!(error = %cause, "unified limits unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The project's quota limits are temporarily unavailable.",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            BodyError::SizeMismatch { .. } | BodyError::Client(_) | BodyError::Incomplete => {
                ApiError::bad_request(e.to_string())
            }
            BodyError::Rejected(m) => ApiError::unsupported_media_type(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::StorageFull(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Image storage media is full")
            }
            StoreError::Body(cause) => ApiError::bad_request(cause.to_string()),
            StoreError::NotFound(_) => ApiError::not_found("Image data not found"),
            StoreError::ReadOnly(_) => ApiError::new(
                StatusCode::GONE,
                "Error in store configuration. Adding images to store is disabled.",
            ),
            StoreError::BadLocation(_) => ApiError::bad_request("Invalid location"),
            StoreError::InUse(_) => ApiError::new(
                StatusCode::CONFLICT,
                "The image cannot be deleted because it is in use through the backend store outside of Vela.",
            ),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The image store is temporarily unavailable.",
                )
            }
        }
    }
}

/// Titles as webob words them (they appear in the bodies, not the status line).
fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Request Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// The request facts the renderer needs.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub method: Method,
    pub accept: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Json,
    Plain,
}

/// webob's negotiation between `text/html` and `application/json` (earlier offer wins ties);
/// no usable Accept means plain text.
fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Format::Plain;
    };
    let mut best = [
        (Format::Html, "text", "html", -1.0f32, 0u8),
        (Format::Json, "application", "json", -1.0, 0),
    ];
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let (ty, sub) = media.split_once('/').unwrap_or((media.as_str(), ""));
        for offer in best.iter_mut() {
            let specificity = if ty == offer.1 && sub == offer.2 {
                3
            } else if ty == offer.1 && sub == "*" {
                2
            } else if ty == "*" && sub == "*" {
                1
            } else {
                0
            };
            if specificity > offer.4 {
                offer.4 = specificity;
                offer.3 = q;
            }
        }
    }
    let [html, json] = best;
    let (hq, jq) = (
        if html.4 > 0 { html.3 } else { 0.0 },
        if json.4 > 0 { json.3 } else { 0.0 },
    );
    if hq <= 0.0 && jq <= 0.0 {
        Format::Plain
    } else if jq > hq {
        Format::Json
    } else {
        Format::Html
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
}

/// webob's `strip_tags` for plain-text bodies.
fn strip_tags(s: &str) -> String {
    let s = s.replace('\n', " ").replace('\r', "");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        if let Some(after) = tag.strip_prefix("<!--") {
            rest = after;
            continue;
        }
        match tag.find('>') {
            Some(end) => {
                if tag[1..].to_ascii_lowercase().starts_with("br") {
                    out.push('\n');
                }
                rest = &tag[end + 1..];
            }
            None => {
                out.push_str(tag);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("-->", "")
}

/// Renders the body of an error response as webob would for this request.
/// Returns (content type, body).
pub fn render(status: StatusCode, message: &str, req: &RequestFacts) -> (&'static str, String) {
    render_with(status, message, false, req)
}

/// As [`render`]; a `verbatim` message is the whole body text.
pub fn render_with(
    status: StatusCode,
    message: &str,
    verbatim: bool,
    req: &RequestFacts,
) -> (&'static str, String) {
    let format = negotiate(req.accept.as_deref());
    let esc = |s: &str| {
        if format == Format::Html {
            html_escape(s)
        } else {
            s.to_owned()
        }
    };
    let body = match status.as_u16() {
        _ if verbatim => esc(message),
        405 => format!(
            "The method {} is not allowed for this resource. <br /><br />\n{}",
            req.method,
            esc(message)
        ),
        415 => format!(
            "The request media type {} is not supported by this server.\n<br /><br />\n{}",
            req.content_type.as_deref().unwrap_or("${CONTENT_TYPE}"),
            esc(message)
        ),
        416 => format!(
            "The Range requested is not available.<br /><br />\n{}\n\n",
            esc(message)
        ),
        _ => format!("{}<br /><br />\n\n\n", esc(message)),
    };
    let status_line = format!("{} {}", status.as_u16(), title(status));
    match format {
        Format::Json => (
            "application/json",
            serde_json::json!({"message": body, "code": status_line, "title": title(status)}).to_string(),
        ),
        Format::Html => (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{status_line}</title>\n </head>\n <body>\n  <h1>{status_line}</h1>\n  {body}\n </body>\n</html>"
            ),
        ),
        Format::Plain => ("text/plain; charset=UTF-8", format!("{status_line}\n\n{}", strip_tags(&body))),
    }
}

/// Replaces the (empty) body of an error response by the rendered one.
pub fn render_into(resp: &mut Response, message: &str, verbatim: bool, req: &RequestFacts) {
    let (ct, body) = render_with(resp.status(), message, verbatim, req);
    let headers: &mut HeaderMap = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *resp.body_mut() = axum::body::Body::from(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(accept: Option<&str>) -> RequestFacts {
        RequestFacts {
            method: Method::GET,
            accept: accept.map(str::to_owned),
            content_type: None,
        }
    }

    const MSG: &str = "No image found with ID 00000000-0000-0000-0000-000000000000";

    #[test]
    fn plain_matches_glance() {
        let (ct, body) = render(StatusCode::NOT_FOUND, MSG, &facts(None));
        assert_eq!(ct, "text/plain; charset=UTF-8");
        assert_eq!(body, format!("404 Not Found\n\n{MSG}\n\n   "));
        assert_eq!(body.len(), 79);
    }

    #[test]
    fn json_matches_glance() {
        let (ct, body) = render(StatusCode::NOT_FOUND, MSG, &facts(Some("application/json")));
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "404 Not Found");
        assert_eq!(v["title"], "Not Found");
        assert_eq!(v["message"], format!("{MSG}<br /><br />\n\n\n"));
    }

    #[test]
    fn html_matches_glance() {
        let (ct, body) = render(StatusCode::NOT_FOUND, MSG, &facts(Some("*/*")));
        assert_eq!(ct, "text/html; charset=UTF-8");
        assert_eq!(body.len(), 181);
        let (_, body) = render(
            StatusCode::NOT_FOUND,
            MSG,
            &facts(Some("application/json, */*")),
        );
        assert!(body.starts_with("<html>"));
    }

    #[test]
    fn templated_statuses_match_glance() {
        let req = RequestFacts {
            method: Method::PUT,
            accept: None,
            content_type: Some("application/json".into()),
        };
        let (_, body) = render(StatusCode::METHOD_NOT_ALLOWED, "", &req);
        assert_eq!(body.len(), 76, "{body:?}");
        let (_, body) = render(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Image PATCH expects Content-Type one of: application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch",
            &req,
        );
        assert_eq!(body.len(), 235, "{body:?}");
        let (_, body) = render(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "Invalid start position in Range header. Start position MUST be in the inclusive range [0, 196615].",
            &req,
        );
        assert_eq!(body.len(), 175, "{body:?}");
        let (_, body) = render(
            StatusCode::FORBIDDEN,
            "Attribute 'status' is read-only.",
            &req,
        );
        assert_eq!(body.len(), 52, "{body:?}");
    }
}
