//! Login throttling for the embedded identity service: failed password logins are counted per
//! user name and per client address in a sliding window; past the limits further attempts are
//! refused (429, `Retry-After`) before any password is hashed. Optionally, as Keystone's
//! `lockout_failure_attempts`, a user with that many failures in a row is locked for a while
//! (401 whatever the password).
//!
//! The table is bounded: when full, expired entries go first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits (`[auth]` `login_*` and `lockout_*`).
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// The counting window.
    pub window: Duration,
    /// Failed logins per user name per window (0: no limit).
    pub per_user: u32,
    /// Failed logins per client address per window (0: no limit).
    pub per_address: u32,
    /// Failures in a row that lock a user (0: never).
    pub lockout_attempts: u32,
    /// How long a lock lasts.
    pub lockout: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            window: Duration::from_secs(60),
            per_user: 10,
            per_address: 30,
            lockout_attempts: 0,
            lockout: Duration::from_secs(1800),
        }
    }
}

/// Why a login is not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures lately; try again after this long.
    Throttled(Duration),
    /// The user is locked out.
    Locked,
}

#[derive(Debug, Hash, PartialEq, Eq, Clone)]
enum Key {
    User(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    in_a_row: u32,
    locked_until: Option<Instant>,
}

/// Most entries kept.
const CAPACITY: usize = 100_000;

/// The failure counts.
pub struct LoginThrottle {
    cfg: ThrottleConfig,
    table: Mutex<HashMap<Key, Entry>>,
}

impl LoginThrottle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        LoginThrottle {
            cfg,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, addr: Option<IpAddr>) -> impl Iterator<Item = (Key, bool)> {
        let user = Key::User(user.to_lowercase());
        std::iter::once((user, true)).chain(addr.map(|a| (Key::Address(a), false)))
    }

    /// Whether a login for `user` from `addr` may be tried now.
    pub fn check(&self, user: &str, addr: Option<IpAddr>) -> Result<(), Refusal> {
        let now = Instant::now();
        let Ok(table) = self.table.lock() else {
            return Ok(());
        };
        for (key, is_user) in Self::keys(user, addr) {
            let Some(e) = table.get(&key) else { continue };
            if is_user && e.locked_until.is_some_and(|t| t > now) {
                return Err(Refusal::Locked);
            }
            let limit = if is_user {
                self.cfg.per_user
            } else {
                self.cfg.per_address
            };
            let elapsed = now.duration_since(e.window_start);
            if limit > 0 && elapsed < self.cfg.window && e.failures >= limit {
                return Err(Refusal::Throttled(self.cfg.window - elapsed));
            }
        }
        Ok(())
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, addr: Option<IpAddr>) {
        let now = Instant::now();
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        for (key, is_user) in Self::keys(user, addr) {
            if !table.contains_key(&key) && table.len() >= CAPACITY {
                self.make_room(&mut table, now);
            }
            let e = table.entry(key).or_insert(Entry {
                window_start: now,
                failures: 0,
                in_a_row: 0,
                locked_until: None,
            });
            if now.duration_since(e.window_start) >= self.cfg.window {
                e.window_start = now;
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.in_a_row = e.in_a_row.saturating_add(1);
            if is_user && self.cfg.lockout_attempts > 0 && e.in_a_row >= self.cfg.lockout_attempts {
                e.locked_until = Some(now + self.cfg.lockout);
                e.in_a_row = 0;
            }
        }
    }

    /// A successful login ends the user's run of failures.
    pub fn succeeded(&self, user: &str) {
        if let Ok(mut table) = self.table.lock() {
            if let Some(e) = table.get_mut(&Key::User(user.to_lowercase())) {
                e.in_a_row = 0;
            }
        }
    }

    fn make_room(&self, table: &mut HashMap<Key, Entry>, now: Instant) {
        let keep = self.cfg.window.max(self.cfg.lockout);
        table.retain(|_, e| {
            now.duration_since(e.window_start) < keep || e.locked_until.is_some_and(|t| t > now)
        });
        if table.len() >= CAPACITY {
            if let Some(oldest) = table
                .iter()
                .min_by_key(|(_, e)| e.window_start)
                .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_user: u32, per_address: u32, lockout_attempts: u32) -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            window: Duration::from_secs(60),
            per_user,
            per_address,
            lockout_attempts,
            lockout: Duration::from_secs(60),
        })
    }

    #[test]
    fn per_user_and_per_address() {
        let t = throttle(3, 5, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check("Alice", Some(a)).is_ok());
            t.failed("alice", Some(a));
        }
        assert!(matches!(
            t.check("alice", Some(b)),
            Err(Refusal::Throttled(_))
        ));
        // Other users from the same address, until the address has had 5 failures.
        t.failed("bob", Some(a));
        assert!(t.check("carol", Some(a)).is_ok());
        t.failed("carol", Some(a));
        assert!(t.check("dave", Some(a)).is_err());
        assert!(t.check("dave", Some(b)).is_ok());
    }

    #[test]
    fn lockout_after_failures_in_a_row() {
        let t = throttle(0, 0, 2);
        t.failed("u", None);
        t.succeeded("u");
        t.failed("u", None);
        assert!(t.check("u", None).is_ok());
        t.failed("u", None);
        assert_eq!(t.check("u", None), Err(Refusal::Locked));
    }
}
