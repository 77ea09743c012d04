//! RBD location URLs: `rbd://<fsid>/<pool>/<image>/<snapshot>` (each part percent-quoted), or
//! the legacy `rbd://<image>`, as Glance writes and reads them.

/// A parsed location: pool, image name and snapshot (legacy `rbd://<image>` has neither pool
/// nor snapshot).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RbdLocation {
    pub fsid: Option<String>,
    pub pool: Option<String>,
    pub image: String,
    pub snap: Option<String>,
}

fn unquote(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn quote(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl RbdLocation {
    pub fn parse(location: &str) -> Option<RbdLocation> {
        let rest = location.strip_prefix("rbd://")?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        match parts.as_slice() {
            [image] => Some(RbdLocation {
                fsid: None,
                pool: None,
                image: (*image).to_owned(),
                snap: None,
            }),
            [fsid, pool, image, snap] => Some(RbdLocation {
                fsid: Some(unquote(fsid)),
                pool: Some(unquote(pool)),
                image: unquote(image),
                snap: Some(unquote(snap)),
            }),
            _ => None,
        }
    }
}

/// The location of `image`'s snapshot `snap` in `pool` of cluster `fsid`.
pub(super) fn format(fsid: &str, pool: &str, image: &str, snap: &str) -> String {
    format!(
        "rbd://{}/{}/{}/{}",
        quote(fsid),
        quote(pool),
        quote(image),
        quote(snap)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_both_forms() {
        assert_eq!(
            RbdLocation::parse("rbd://f-s-i-d/images/abc/snap"),
            Some(RbdLocation {
                fsid: Some("f-s-i-d".into()),
                pool: Some("images".into()),
                image: "abc".into(),
                snap: Some("snap".into()),
            })
        );
        assert_eq!(RbdLocation::parse("rbd://abc").unwrap().image, "abc");
        assert!(RbdLocation::parse("rbd://a/b").is_none());
        assert!(RbdLocation::parse("rbd://a//c/d").is_none());
        assert!(RbdLocation::parse("file:///x").is_none());
        assert_eq!(quote("a b/c"), "a%20b%2Fc");
        assert_eq!(unquote("a%20b%2Fc"), "a b/c");
        let loc = format("f s", "images", "a/b", "snap");
        assert_eq!(loc, "rbd://f%20s/images/a%2Fb/snap");
        let back = RbdLocation::parse(&loc).unwrap();
        assert_eq!(
            (back.fsid.as_deref(), back.image.as_str()),
            (Some("f s"), "a/b")
        );
    }
}
