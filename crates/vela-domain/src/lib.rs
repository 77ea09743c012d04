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
    let mut s = format_utc(t, 'T', false);
    s.push('Z');
    s
}

/// `t` in UTC as `YYYY-MM-DD<sep>HH:MM:SS`, then `.ffffff` when `fraction`. Written digit by
/// digit: a timestamp goes into every image of every answer, and chrono's `format` parses its
/// pattern on each call, which costs several times more.
pub fn format_utc(t: Micros, sep: char, fraction: bool) -> String {
    use chrono::{Datelike, Timelike};
    /// Writes `v` into `out` as decimal digits, zero-padded to its length.
    fn digits(out: &mut [u8], mut v: u32) {
        for d in out.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let dt = chrono::DateTime::from_timestamp_micros(t).unwrap_or_default();
    let Ok(year) = u32::try_from(dt.year()) else {
        return chrono_utc(dt, sep, fraction);
    };
    if year > 9999 || !sep.is_ascii() {
        return chrono_utc(dt, sep, fraction);
    }
    let mut b = *b"0000-00-00 00:00:00.000000";
    digits(&mut b[0..4], year);
    digits(&mut b[5..7], dt.month());
    digits(&mut b[8..10], dt.day());
    b[10] = sep as u8;
    digits(&mut b[11..13], dt.hour());
    digits(&mut b[14..16], dt.minute());
    digits(&mut b[17..19], dt.second());
    digits(&mut b[20..26], dt.timestamp_subsec_micros());
    let len = if fraction { 26 } else { 19 };
    String::from_utf8_lossy(&b[..len]).into_owned()
}

/// [`format_utc`] by chrono's patterns, for the years 4 digits do not hold.
fn chrono_utc(dt: chrono::DateTime<chrono::Utc>, sep: char, fraction: bool) -> String {
    let pattern = if fraction {
        "%Y-%m-%d?%H:%M:%S%.6f"
    } else {
        "%Y-%m-%d?%H:%M:%S"
    };
    dt.format(pattern)
        .to_string()
        .replacen('?', &sep.to_string(), 1)
}

#[cfg(test)]
mod time_tests {
    use super::*;

    /// The field-by-field rendering gives what chrono's patterns give, years past 9999 and
    /// before 0 included.
    #[test]
    fn timestamps_render_as_chrono_does() {
        let chrono_fmt = |t: Micros, pattern: &str| {
            chrono::DateTime::from_timestamp_micros(t)
                .unwrap_or_default()
                .format(pattern)
                .to_string()
        };
        let mut t: Micros = -70_000_000_000_000_000;
        while t < 300_000_000_000_000_000 {
            for u in [t, t + 1, t + 999_999, t - 1] {
                assert_eq!(format_timestamp(u), chrono_fmt(u, "%Y-%m-%dT%H:%M:%SZ"));
                assert_eq!(
                    format_utc(u, ' ', true),
                    chrono_fmt(u, "%Y-%m-%d %H:%M:%S%.6f")
                );
            }
            t += 987_654_321_123_457;
        }
        assert_eq!(
            format_timestamp(1_700_000_123_456_789),
            "2023-11-14T22:15:23Z"
        );
        assert_eq!(
            format_utc(1_700_000_123_456_789, ' ', true),
            "2023-11-14 22:15:23.456789"
        );
    }
}
