//! `[cors]` as a tower-http CORS layer: preflights are answered before authentication, and
//! the allowed origins get the CORS headers on every answer.

use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsSection;

/// The layer `[cors]` describes; `None` while no origin is allowed.
pub fn layer(cfg: &CorsSection) -> anyhow::Result<Option<CorsLayer>> {
    if cfg.allowed_origin.is_empty() {
        return Ok(None);
    }
    let origin = if cfg.allowed_origin.iter().any(|o| o.trim() == "*") {
        // Any origin, echoed back (a literal `*` cannot go with credentials).
        AllowOrigin::mirror_request()
    } else {
        let origins = cfg
            .allowed_origin
            .iter()
            .map(|o| {
                let o = o.trim().trim_end_matches('/');
                HeaderValue::from_str(o).with_context(|| format!("cors.allowed_origin '{o}'"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(origins)
    };
    let methods = cfg
        .allow_methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .with_context(|| format!("cors.allow_methods '{m}'"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names = |list: &[String], key: &str| {
        list.iter()
            .map(|h| {
                HeaderName::from_bytes(h.trim().as_bytes())
                    .with_context(|| format!("cors.{key} '{h}'"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_credentials(cfg.allow_credentials)
            .allow_methods(methods)
            .allow_headers(names(&cfg.allow_headers, "allow_headers")?)
            .expose_headers(names(&cfg.expose_headers, "expose_headers")?)
            .max_age(Duration::from_secs(cfg.max_age)),
    ))
}
