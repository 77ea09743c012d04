//! `Range` request headers for image downloads (one range; Glance also honours a request
//! `Content-Range`, so `bytes a-b/total` is read too).

/// A parsed range, before the data size is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b` or `bytes=a-`.
    FromTo(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// Why a range is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// Not a byte range (416).
    Invalid,
    /// Several ranges (400).
    Multiple,
    /// The range starts at or after the end of the data (416).
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` (and `bytes a-b/total`).
pub fn parse_range(v: &str) -> Result<RangeSpec, RangeError> {
    let spec = v
        .trim()
        .strip_prefix("bytes=")
        .or_else(|| v.trim().strip_prefix("bytes "))
        .ok_or(RangeError::Invalid)?;
    let spec = spec.split('/').next().unwrap_or("");
    if spec.contains(',') {
        return Err(RangeError::Multiple);
    }
    let (a, b) = spec.split_once('-').ok_or(RangeError::Invalid)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| RangeError::Invalid);
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => Ok(RangeSpec::Suffix(num(b)?)),
        (false, true) => Ok(RangeSpec::FromTo(num(a)?, None)),
        (false, false) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return Err(RangeError::Invalid);
            }
            Ok(RangeSpec::FromTo(a, Some(b)))
        }
        (true, true) => Err(RangeError::Invalid),
    }
}

/// The inclusive byte positions `(start, end)` a range selects in `size` bytes.
pub fn resolve(spec: &RangeSpec, size: u64) -> Result<(u64, u64), RangeError> {
    match *spec {
        RangeSpec::FromTo(start, end) => {
            if start >= size {
                return Err(RangeError::Unsatisfiable);
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            Ok((start, end))
        }
        RangeSpec::Suffix(n) => {
            if n == 0 || size == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            Ok((size.saturating_sub(n), size - 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Ok(RangeSpec::FromTo(0, Some(9))));
        assert_eq!(parse_range("bytes=5-"), Ok(RangeSpec::FromTo(5, None)));
        assert_eq!(parse_range("bytes=-3"), Ok(RangeSpec::Suffix(3)));
        assert_eq!(
            parse_range("bytes 2-4/10"),
            Ok(RangeSpec::FromTo(2, Some(4)))
        );
        assert_eq!(parse_range("bytes=0-1,3-4"), Err(RangeError::Multiple));
        assert_eq!(parse_range("bytes=x-"), Err(RangeError::Invalid));
        assert_eq!(parse_range("items=0-1"), Err(RangeError::Invalid));
        assert_eq!(resolve(&RangeSpec::FromTo(0, Some(99)), 10), Ok((0, 9)));
        assert_eq!(resolve(&RangeSpec::Suffix(3), 10), Ok((7, 9)));
        assert_eq!(resolve(&RangeSpec::Suffix(30), 10), Ok((0, 9)));
        assert!(resolve(&RangeSpec::FromTo(10, None), 10).is_err());
        assert!(resolve(&RangeSpec::Suffix(0), 10).is_err());
    }
}
