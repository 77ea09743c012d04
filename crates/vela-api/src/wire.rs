//! Wire details shared by all routes: request ids, error bodies, JSON rendering of images,
//! absolute URLs and JSON bodies.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;
use vela_domain::{format_timestamp, Image, ImageId, RequestContext};

use crate::error::{render_into, ErrorInfo, RequestFacts};
use crate::{ApiError, AppState};

/// The address of the client connection (set by the server loop).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The `x-openstack-request-id` of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub(crate) const REQUEST_ID: &str = "x-openstack-request-id";
const MAX_REQUEST_ID: usize = 64;

/// Assigns the request id, runs the request in a span that carries it (with the method,
/// route, project and status; the route and project are recorded by inner layers), logs the
/// request's end, and renders error bodies for the request's `Accept`.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let facts = RequestFacts {
        method: req.method().clone(),
        accept: header_str(req.headers(), header::ACCEPT.as_str()),
        content_type: header_str(req.headers(), header::CONTENT_TYPE.as_str()),
    };
    let incoming = header_str(req.headers(), REQUEST_ID);
    let too_long = incoming
        .as_ref()
        .is_some_and(|id| id.len() > MAX_REQUEST_ID);
    let request_id = if too_long {
        format!("req-{}", uuid::Uuid::new_v4())
    } else {
        request_id_from(incoming)
    };
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        method = %req.method(),
        route = tracing::field::Empty,
        project = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut resp = if too_long {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("x-openstack-request-id should not be longer than {MAX_REQUEST_ID} characters"),
        )
        .into_response()
    } else {
        req.extensions_mut().insert(RequestId(request_id.clone()));
        next.run(req).instrument(span.clone()).await
    };
    let status = resp.status().as_u16();
    span.record("status", status);
    let ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(ms, "request failed");
        } else {
            tracing::debug!(ms, "request done");
        }
    });
    if let Some(info) = resp.extensions_mut().remove::<ErrorInfo>() {
        render_into(&mut resp, &info.message, info.verbatim, &facts);
    } else if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && !resp.headers().contains_key(header::CONTENT_TYPE)
    {
        // The router's bare 405 (the identity API writes its own, in Keystone's shape).
        render_into(&mut resp, "", false, &facts);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

fn request_id_from(incoming: Option<String>) -> String {
    match incoming {
        Some(id) if id.starts_with("req-") => id,
        Some(id) => format!("req-{id}"),
        None => format!("req-{}", uuid::Uuid::new_v4()),
    }
}

/// The request id of a response made before [`layer`] runs: the caller's, if usable.
pub(crate) fn request_id_for(h: &HeaderMap) -> String {
    request_id_from(header_str(h, REQUEST_ID).filter(|id| id.len() <= MAX_REQUEST_ID))
}

/// Glance lists allowed methods as `GET, POST`; HEAD is implied by GET here and not listed.
/// (The router adds `Allow` outside [`layer`], so this runs on the outermost layer.)
pub fn tidy_allow(resp: &mut Response) {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return;
    }
    if let Some(allow) = header_str(resp.headers(), header::ALLOW.as_str()) {
        let methods: Vec<&str> = allow
            .split(',')
            .map(str::trim)
            .filter(|m| *m != "HEAD")
            .collect();
        if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
    }
}

/// Fallback for unknown `/v2/…` paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// A header as text.
pub fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Base URL for absolute links: `public_endpoint`, else `http://<Host>`.
pub fn base_url(state: &AppState, h: &HeaderMap) -> String {
    if let Some(p) = &state.cfg.public_endpoint {
        return p.trim_end_matches('/').to_owned();
    }
    host_base(h)
}

/// `http://<Host>` (or the `X-Forwarded-Proto` scheme), for links when no public endpoint is
/// configured. The client chooses these headers, so only a plain `host[:port]` and `http` or
/// `https` are used (`localhost` and `http` otherwise): a link never carries a path, a user
/// part or markup a client slipped in. Set `server.public_endpoint` to stop trusting them.
pub fn host_base(h: &HeaderMap) -> String {
    let host = header_str(h, header::HOST.as_str())
        .filter(|v| plain_host(v))
        .unwrap_or_else(|| "localhost".into());
    let proto = match header_str(h, "x-forwarded-proto").as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    format!("{proto}://{host}")
}

/// `name[:port]`, `a.b.c.d[:port]` or `[v6][:port]`.
fn plain_host(v: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit());
    if let Some(rest) = v.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        let v6_ok = !v6.is_empty()
            && v6
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
        return v6_ok && (after.is_empty() || after.strip_prefix(':').is_some_and(digits));
    }
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (v, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    host_ok && port.is_none_or(digits)
}

/// Parses an image id from the path; a malformed id is simply not found.
pub fn image_id(raw: &str) -> Result<ImageId, ApiError> {
    ImageId::parse(raw).ok_or_else(|| ApiError::not_found(format!("No image found with ID {raw}")))
}

/// Parses a JSON request body.
pub fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("Body expected in request."));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("Malformed JSON in request body."))?;
    if !v.is_object() && !v.is_array() {
        return Err(ApiError::bad_request("Malformed JSON in request body."));
    }
    Ok(v)
}

/// A JSON response.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// An image as the API shows it: every base field present (null when unset), custom
/// properties at the top level, relative links, and with several stores configured the
/// `stores` its data is in (as Glance's multi-store mode). Serialized directly, without
/// building a map.
pub struct ImageView<'a> {
    pub img: &'a Image,
    pub multi_store: bool,
    /// `show_image_direct_url`: the first location's URL as `direct_url`. Location URLs are
    /// shown without their credentials.
    pub direct_url: bool,
    /// `show_multiple_locations`: the `locations` list (empty for a deactivated image unless
    /// the caller is an admin).
    pub locations: bool,
    pub admin: bool,
}

impl<'a> ImageView<'a> {
    /// `img` as `state` shows images to `ctx`.
    pub fn new(state: &AppState, ctx: &RequestContext, img: &'a Image) -> Self {
        ImageView {
            img,
            multi_store: state.stores.is_multi(),
            direct_url: state.cfg.show_image_direct_url,
            locations: state.cfg.show_multiple_locations,
            admin: ctx.is_admin(),
        }
    }
}

impl Serialize for ImageView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let img = self.img;
        let id = img.id.as_str();
        let mut m = ser.serialize_map(Some(22 + img.properties.len()))?;
        for (k, v) in &img.properties {
            if !vela_domain::import::HIDDEN_PROPERTIES.contains(&k.as_str()) {
                m.serialize_entry(k, v)?;
            }
        }
        m.serialize_entry("checksum", &img.checksum)?;
        m.serialize_entry("container_format", &img.container_format)?;
        m.serialize_entry("created_at", &format_timestamp(img.created_at))?;
        m.serialize_entry("disk_format", &img.disk_format)?;
        m.serialize_entry("file", &format!("/v2/images/{id}/file"))?;
        m.serialize_entry("id", id)?;
        m.serialize_entry("min_disk", &img.min_disk)?;
        m.serialize_entry("min_ram", &img.min_ram)?;
        m.serialize_entry("name", &img.name)?;
        m.serialize_entry("os_hash_algo", &img.os_hash_algo)?;
        m.serialize_entry("os_hash_value", &img.os_hash_value)?;
        m.serialize_entry("os_hidden", &img.os_hidden)?;
        m.serialize_entry("owner", &img.owner)?;
        m.serialize_entry("protected", &img.protected)?;
        m.serialize_entry("schema", "/v2/schemas/image")?;
        m.serialize_entry("self", &format!("/v2/images/{id}"))?;
        m.serialize_entry("size", &img.size)?;
        m.serialize_entry("status", img.status.as_str())?;
        if let Some(first) = img.locations.first().filter(|_| self.direct_url) {
            m.serialize_entry("direct_url", &first.shown_url())?;
        }
        if self.locations {
            let hidden = img.status == vela_domain::ImageStatus::Deactivated && !self.admin;
            let locations: Vec<serde_json::Value> = img
                .locations
                .iter()
                .filter(|_| !hidden)
                .map(|l| location_json(l, self.multi_store, false))
                .collect();
            m.serialize_entry("locations", &locations)?;
        }
        if self.multi_store && !img.locations.is_empty() {
            let stores: Vec<&str> = img.locations.iter().map(|l| l.store.as_str()).collect();
            m.serialize_entry("stores", &stores.join(","))?;
        }
        m.serialize_entry("tags", &img.tags)?;
        m.serialize_entry("updated_at", &format_timestamp(img.updated_at))?;
        m.serialize_entry("virtual_size", &img.virtual_size)?;
        m.serialize_entry("visibility", img.visibility.as_str())?;
        m.end()
    }
}

/// A location as Glance shows it: `url` and `metadata`, the metadata carrying the store id when
/// several stores are configured. `with_credentials`: the URL as stored (the location API,
/// for services that read the data themselves); otherwise without its `user:password@`.
pub fn location_json(
    l: &vela_domain::image::ImageLocation,
    multi_store: bool,
    with_credentials: bool,
) -> serde_json::Value {
    let mut metadata = l.metadata.clone();
    if multi_store {
        metadata.insert("store".into(), l.store.clone().into());
    }
    let url = if with_credentials {
        l.url.as_str().into()
    } else {
        l.shown_url()
    };
    serde_json::json!({"url": url, "metadata": metadata})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_make_links() {
        for ok in [
            "glance.example.com",
            "glance:9292",
            "10.0.0.1:9292",
            "[::1]:9292",
            "[fe80::1]",
        ] {
            assert!(plain_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.com/phish?",
            "user@evil.com",
            "a b",
            "<script>",
            "host:99999a",
            "[::1]x",
            "[]",
            "host:",
        ] {
            assert!(!plain_host(bad), "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("evil.com/x?"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("javascript"));
        assert_eq!(host_base(&h), "http://localhost");
    }
}
