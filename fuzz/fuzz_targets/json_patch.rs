//! The JSON-patch body parser (`vela_domain::patch::parse`) in both dialects, and the JSON
//! pointer parser: no panic; a parsed patch has one operation per array element.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vela_domain::patch::{parse, parse_pointer, Dialect};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_pointer(text);
        let _ = Dialect::from_content_type(text);
    }
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for dialect in [Dialect::V20, Dialect::V21] {
        if let Ok(ops) = parse(&doc, dialect) {
            assert_eq!(Some(ops.len()), doc.as_array().map(Vec::len));
        }
    }
});
