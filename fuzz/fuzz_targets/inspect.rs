//! The image inspector on arbitrary bytes: no panic, the same report whole and cut at points
//! derived from the input's first bytes, memory within the bound, and `judge` on the report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vela_inspect::{judge, Inspector, Report, Rules, MEMORY_BOUND};

/// Feeds `data` in chunks ending at the given (sorted) offsets, then the rest.
fn feed(data: &[u8], cuts: &[usize]) -> Report {
    let mut inspector = Inspector::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&data.len()]) {
        inspector.feed(&data[from..to]);
        assert!(inspector.retained_bytes() < MEMORY_BOUND);
        from = to;
    }
    inspector.finish()
}

fuzz_target!(|data: &[u8]| {
    let whole = feed(data, &[]);
    assert_eq!(whole.size, data.len() as u64);

    // Up to 64 split points from a xorshift generator seeded by the first bytes and the
    // length (empty chunks included).
    let mut seed = [0u8; 8];
    for (s, b) in seed.iter_mut().zip(data) {
        *s = *b;
    }
    let mut x =
        (u64::from_le_bytes(seed) ^ (data.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let count = (next() % 65) as usize;
    let mut cuts: Vec<usize> = (0..count)
        .map(|_| (next() % (data.len() as u64 + 1)) as usize)
        .collect();
    cuts.sort_unstable();
    assert_eq!(feed(data, &cuts), whole, "chunking changed the report");
    if data.len() <= 512 {
        let every: Vec<usize> = (1..data.len()).collect();
        assert_eq!(feed(data, &every), whole, "byte-by-byte changed the report");
    }

    let rules = Rules::default();
    for declared in [
        "raw", "qcow2", "vmdk", "vhd", "iso", "aki", "ploop", "bochs",
    ] {
        for container in [Some("bare"), Some("ova"), None] {
            match judge(Some(declared), container, &whole, &rules) {
                Ok(accepted) => {
                    assert_eq!(accepted.detected, whole.format);
                    assert!(whole.multiple.is_empty());
                }
                Err(refusal) => {
                    let _ = refusal.to_string();
                }
            }
        }
    }
});
