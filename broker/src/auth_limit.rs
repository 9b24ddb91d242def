//! Failed logins are limited per key (hpfeeds: source address and ident; the
//! web app: the user name, from anywhere) and, more loosely, per source
//! address alone. Each has a bucket of failures that refills over time; when
//! either is empty the attempt is refused before it is checked, so guessing a
//! secret or password runs at a few tries a second at most. The loose
//! per-address bucket leaves room for the many sensors a TCP load balancer
//! puts behind one address. The tables are bounded: when full, entries whose
//! buckets have refilled are dropped, then the oldest.

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

    /// False when `ip`, or `key`, has used up its failures for now.
    pub fn may_try(&self, ip: IpAddr, key: &[u8]) -> bool {
        let now = Instant::now();
        self.by_address.lock().expect("auth limiter lock").may_try(&ip, now)
            && self.by_key.lock().expect("auth limiter lock").may_try(&key.to_vec(), now)
    }

    /// Records a failed attempt from `ip` for `key`.
    pub fn failed(&self, ip: IpAddr, key: &[u8]) {
        let now = Instant::now();
        self.by_address.lock().expect("auth limiter lock").failed(ip, now);
        self.by_key.lock().expect("auth limiter lock").failed(key.to_vec(), now);
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
            assert!(limiter.may_try(a, &hpfeeds_key(a, b"k")));
            limiter.failed(a, &hpfeeds_key(a, b"k"));
        }
        assert!(!limiter.may_try(a, &hpfeeds_key(a, b"k")), "k from a is used up");
        assert!(limiter.may_try(a, &hpfeeds_key(a, b"other")), "another ident from a (a load balancer's sensors)");
        assert!(limiter.may_try(b, &hpfeeds_key(b, b"k")));
    }

    #[test]
    fn given_failed_sign_ins_for_one_name_from_many_addresses_then_that_name_waits() {
        let limiter = AuthLimiter::for_sign_in();
        for i in 0..10u8 {
            limiter.failed(IpAddr::from([10, 0, 0, i]), b"jojo");
        }
        let fresh = IpAddr::from([10, 0, 1, 1]);
        assert!(!limiter.may_try(fresh, b"jojo"), "the name is used up, whatever the address");
        assert!(limiter.may_try(fresh, b"mark"));
    }

    #[test]
    fn given_failures_for_many_idents_from_one_address_then_the_address_waits() {
        let limiter = AuthLimiter::for_hpfeeds();
        for i in 0..300u32 {
            limiter.failed("10.0.0.1".parse().unwrap(), &i.to_be_bytes());
        }
        assert!(!limiter.may_try("10.0.0.1".parse().unwrap(), b"fresh"));
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
