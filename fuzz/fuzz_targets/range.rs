//! The download `Range` header parser (`vela_domain::range`): no panic; a parsed range
//! resolves, for any size, to positions inside the data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vela_domain::range::{parse_range, resolve};

fuzz_target!(|data: &[u8]| {
    let (size, text) = match data.split_first_chunk::<8>() {
        Some((n, rest)) => (u64::from_le_bytes(*n), rest),
        None => (0, data),
    };
    let text = String::from_utf8_lossy(text);
    if let Ok(spec) = parse_range(&text) {
        for size in [0, 1, size] {
            if let Ok((start, end)) = resolve(&spec, size) {
                assert!(start <= end && end < size, "{text:?} on {size}: {start}-{end}");
            }
        }
    }
});
