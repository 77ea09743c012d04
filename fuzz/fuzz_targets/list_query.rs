//! The image list query parser (`vela_domain::list::ListQuery::parse`) on `key=value&…`
//! query strings: no panic; an accepted limit lies within the paging bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vela_domain::list::{parse_time, split_list, ListQuery, Paging};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect();
    let paging = Paging {
        default_limit: 25,
        max_limit: 1000,
    };
    if let Ok(q) = ListQuery::parse(&pairs, paging) {
        assert!((0..=1000).contains(&q.limit), "limit {}", q.limit);
    }
    for (_, v) in &pairs {
        let _ = split_list(v);
        let _ = parse_time(v);
    }
});
