//! [`TokenCache`]: validated tokens, so a busy client does not cost a validation per request.
//!
//! Keyed by the token's SHA-256 (the token itself is not kept). Entries live for the cache
//! time and never past their own deadline (the token's expiry); the cache holds a bounded
//! number of them and evicts the least useful first (moka's TinyLFU). A time of zero turns
//! caching off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use sha2::{Digest, Sha256};

static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

/// Lookups in every enabled token cache of the process: (hits, misses).
pub fn stats() -> (u64, u64) {
    (HITS.load(Ordering::Relaxed), MISSES.load(Ordering::Relaxed))
}

/// A bounded, time-limited cache of validation results.
pub struct TokenCache<V: Clone + Send + Sync + 'static> {
    /// `None` when caching is off.
    inner: Option<Cache<[u8; 32], (V, Instant)>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl<V: Clone + Send + Sync + 'static> TokenCache<V> {
    /// Entries live `ttl` at most; at most `capacity` are kept.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let inner = (!ttl.is_zero() && capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build()
        });
        TokenCache { inner }
    }

    /// The cached result for `token`, if it is there and before its deadline.
    pub fn get(&self, token: &str) -> Option<V> {
        let found = self
            .inner
            .as_ref()?
            .get(&key(token))
            .filter(|(_, deadline)| *deadline > Instant::now())
            .map(|(v, _)| v);
        let counter = if found.is_some() { &HITS } else { &MISSES };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remembers `v` for `token` until the cache time passes or `deadline`, if earlier.
    pub fn insert(&self, token: &str, v: V, deadline: Instant) {
        if let Some(c) = &self.inner {
            c.insert(key(token), (v, deadline));
        }
    }

    /// Drops every entry `drop` picks (they are never returned again).
    pub fn invalidate_if(&self, drop: impl Fn(&V) -> bool + Send + Sync + 'static) {
        if let Some(c) = &self.inner {
            // Fails only without `support_invalidation_closures`, which `new` sets.
            let _ = c.invalidate_entries_if(move |_, (v, _)| drop(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_end_at_their_deadline_or_when_invalidated() {
        let cache = TokenCache::new(Duration::from_secs(60), 100);
        let later = Instant::now() + Duration::from_secs(30);
        cache.insert("t1", 1, later);
        cache.insert("t2", 2, Instant::now());
        cache.insert("t3", 3, later);
        assert_eq!(cache.get("t1"), Some(1));
        assert_eq!(cache.get("t2"), None, "past its deadline");
        assert_eq!(cache.get("nope"), None);
        cache.invalidate_if(|v| *v == 3);
        assert_eq!(cache.get("t3"), None);
        assert_eq!(cache.get("t1"), Some(1));
    }

    #[test]
    fn a_zero_time_caches_nothing() {
        let cache = TokenCache::new(Duration::ZERO, 100);
        cache.insert("t1", 1, Instant::now() + Duration::from_secs(30));
        assert_eq!(cache.get("t1"), None);
    }

    #[test]
    fn the_size_is_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let later = Instant::now() + Duration::from_secs(30);
        for i in 0..1000 {
            cache.insert(&format!("t{i}"), i, later);
        }
        if let Some(c) = &cache.inner {
            c.run_pending_tasks();
            assert!(c.entry_count() <= 10, "{}", c.entry_count());
        }
    }
}
