//! Failed logins are limited per key (hpfeeds: source address and ident; the
//! web app: the user name, from anywhere) and, more loosely, per source
//! address alone. Each has a bucket of failures that refills over time; when
//! either is empty the attempt is refused before it is checked, so guessing a
//! secret or password runs at a few tries a second at most. The loose
//! per-address bucket leaves room for the many sensors a TCP load balancer
//! puts behind one address. The tables are bounded: when full, entries whose
//! buckets have refilled are dropped, then the oldest.
//!
//! An attempt is charged before it is checked and given back when it
//! succeeds: checking takes time (argon2, a read barrier), and attempts that
//! all passed the limit before any had failed would all be checked.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries tracked per table at most.
const MAX_TRACKED: usize = 65_536;

pub struct AuthLimiter {
    by_key: Mutex<Table<Vec<u8>>>,
    by_address: Mutex<Table<IpAddr>>,
}

struct Table<K> {
    burst: f64,
    refill: Duration,
    buckets: HashMap<K, Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(burst: u32, refill: Duration) -> Self {
        Table { burst: burst as f64, refill, buckets: HashMap::new() }
    }

    fn tokens(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64()).min(self.burst)
    }

    fn may_try(&self, key: &K, now: Instant) -> bool {
        self.buckets.get(key).is_none_or(|b| self.tokens(b, now) >= 1.0)
    }

    /// Gives back what a successful attempt was charged; a bucket that is
    /// full again is dropped, so keys that never fail hold no entry.
    fn refund(&mut self, key: &K, now: Instant) {
        if let Some(b) = self.buckets.get(key).copied() {
            let tokens = self.tokens(&b, now) + 1.0;
            if tokens >= self.burst {
                self.buckets.remove(key);
            } else {
                self.buckets.insert(key.clone(), Bucket { tokens, at: now });
            }
        }
    }

    fn failed(&mut self, key: K, now: Instant) {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&key) {
            let (burst, refill) = (self.burst, self.refill);
            let full = |b: &Bucket| (b.tokens + now.duration_since(b.at).as_secs_f64() / refill.as_secs_f64()) >= burst;
            self.buckets.retain(|_, b| !full(b));
            if self.buckets.len() >= MAX_TRACKED {
                if let Some(oldest) = self.buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone()) {
                    self.buckets.remove(&oldest);
                }
            }
        }
        let left = self.buckets.get(&key).map_or(self.burst, |b| self.tokens(b, now));
        self.buckets.insert(key, Bucket { tokens: (left - 1.0).max(0.0), at: now });
    }
}

impl AuthLimiter {
    /// hpfeeds AUTH, keyed by `hpfeeds_key`: 20 failures in a row for one
    /// ident from one address, then one per 3 s; 300 from one address, then
    /// five a second.
    pub fn for_hpfeeds() -> Self {
        AuthLimiter {
            by_key: Mutex::new(Table::new(20, Duration::from_secs(3))),
            by_address: Mutex::new(Table::new(300, Duration::from_millis(200))),
        }
    }

    /// Web sign-in, keyed by the user name: 10 failures for one name from
    /// anywhere (a guess spread over many addresses), then one per 6 s; 50
    /// from one address, then one a second.
    pub fn for_sign_in() -> Self {
        AuthLimiter {
            by_key: Mutex::new(Table::new(10, Duration::from_secs(6))),
            by_address: Mutex::new(Table::new(50, Duration::from_secs(1))),
        }
    }

    /// Charges an attempt from `ip` for `key`, or `None` when either has
    /// used up its failures for now. The charge stays unless the attempt
    /// `succeeded`.
    pub fn attempt(&self, ip: IpAddr, key: &[u8]) -> Option<Attempt<'_>> {
        let now = Instant::now();
        // One lock order everywhere: the address's table, then the key's.
        let mut by_address = self.by_address.lock().expect("auth limiter lock");
        let mut by_key = self.by_key.lock().expect("auth limiter lock");
        let key = key.to_vec();
        if !(by_address.may_try(&ip, now) && by_key.may_try(&key, now)) {
            return None;
        }
        by_address.failed(ip, now);
        by_key.failed(key.clone(), now);
        Some(Attempt { limiter: self, ip, key })
    }
}

/// An attempt that has been charged; dropping it counts it as a failure.
#[must_use = "an attempt counts as failed unless it succeeded"]
pub struct Attempt<'a> {
    limiter: &'a AuthLimiter,
    ip: IpAddr,
    key: Vec<u8>,
}

impl Attempt<'_> {
    pub fn succeeded(self) {
        let now = Instant::now();
        self.limiter.by_address.lock().expect("auth limiter lock").refund(&self.ip, now);
        self.limiter.by_key.lock().expect("auth limiter lock").refund(&self.key, now);
    }
}

/// An hpfeeds ident as tried from one address.
pub fn hpfeeds_key(ip: IpAddr, ident: &[u8]) -> Vec<u8> {
    let mut key = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    key.extend_from_slice(ident);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_burst_of_failures_for_one_ident_then_that_ident_waits_and_others_do_not() {
        let limiter = AuthLimiter::for_hpfeeds();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..20 {
            assert!(limiter.attempt(a, &hpfeeds_key(a, b"k")).is_some());
        }
        assert!(limiter.attempt(a, &hpfeeds_key(a, b"k")).is_none(), "k from a is used up");
        assert!(
            limiter.attempt(a, &hpfeeds_key(a, b"other")).is_some(),
            "another ident from a (a load balancer's sensors)"
        );
        assert!(limiter.attempt(b, &hpfeeds_key(b, b"k")).is_some());
    }

    #[test]
    fn given_failed_sign_ins_for_one_name_from_many_addresses_then_that_name_waits() {
        let limiter = AuthLimiter::for_sign_in();
        for i in 0..10u8 {
            drop(limiter.attempt(IpAddr::from([10, 0, 0, i]), b"jojo"));
        }
        let fresh = IpAddr::from([10, 0, 1, 1]);
        assert!(limiter.attempt(fresh, b"jojo").is_none(), "the name is used up, whatever the address");
        assert!(limiter.attempt(fresh, b"mark").is_some());
    }

    #[test]
    fn given_failures_for_many_idents_from_one_address_then_the_address_waits() {
        let limiter = AuthLimiter::for_hpfeeds();
        for i in 0..300u32 {
            drop(limiter.attempt("10.0.0.1".parse().unwrap(), &i.to_be_bytes()));
        }
        assert!(limiter.attempt("10.0.0.1".parse().unwrap(), b"fresh").is_none());
    }

    /// Attempts made at once, each checked slowly: no more than the budget
    /// are let through, whatever their order.
    #[test]
    fn given_forty_attempts_at_once_for_one_name_then_ten_are_checked() {
        let limiter = AuthLimiter::for_sign_in();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let checked = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..40 {
                s.spawn(|| {
                    if let Some(attempt) = limiter.attempt(ip, b"jojo") {
                        checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50)); // argon2
                        drop(attempt);
                    }
                });
            }
        });
        assert_eq!(checked.into_inner(), 10);
    }

    #[test]
    fn given_an_attempt_that_succeeded_then_it_is_given_back() {
        let limiter = AuthLimiter::for_sign_in();
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..9 {
            drop(limiter.attempt(ip, b"jojo"));
        }
        limiter.attempt(ip, b"jojo").unwrap().succeeded();
        assert!(limiter.attempt(ip, b"jojo").is_some(), "the right password did not use up the last try");
        assert!(limiter.attempt(ip, b"jojo").is_none());
        let mark = IpAddr::from([10, 0, 0, 2]);
        limiter.attempt(mark, b"mark").unwrap().succeeded();
        let tracked = |l: &AuthLimiter| l.by_key.lock().unwrap().buckets.len();
        assert_eq!(tracked(&limiter), 1, "a name that never failed holds no entry (only jojo's)");
    }

    #[test]
    fn given_failures_from_more_addresses_than_tracked_then_the_tables_stay_bounded() {
        let mut table = Table::new(20, Duration::from_secs(3));
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 1000) {
            table.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(table.buckets.len() <= MAX_TRACKED);
    }
}
