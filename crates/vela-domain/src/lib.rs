//! Vela's image model, free of I/O.
//!
//! Everything here is plain data and rules: the newtypes that path and body values are parsed
//! into ([`ImageId`], [`Visibility`], [`ImageStatus`]), the status machine that owns every
//! transition, the create/JSON-patch rules of the Images API v2, the list query language, the
//! request context and the policy check. The HTTP layer parses into these types; the metadata
//! repository stores them.

pub mod context;
pub mod create;
pub mod error;
pub mod image;
pub mod import;
pub mod list;
pub mod location;
pub mod member;
pub mod metadef;
pub mod notify;
pub mod patch;
pub mod policy;
pub mod quota;
pub mod range;
pub mod rules;
pub mod secret;
pub mod status;
pub mod task;

pub use context::RequestContext;
pub use error::DomainError;
pub use image::{Image, ImageId, LocationUrl, Visibility};
pub use rules::ImageRules;
pub use secret::Secret;
pub use status::ImageStatus;

/// Timestamps are kept as microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// Current time in microseconds since the epoch.
pub fn now_micros() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// Renders a timestamp the way Glance does: UTC, second precision, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_timestamp(t: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
