//! Failed logins are limited so that guessing a secret or password runs at
//! a few tries a second at most, and so that nobody can lock a key's owner
//! out by failing on purpose (OWASP's "device cookies").
//!
//! A client is either known, or only an address. A known client has logged
//! in as this key before (a browser's device cookie, a signed-in session, a
//! sensor's address it has logged in from): it has a budget of its own and
//! is charged nothing else. Anyone else is charged three buckets: the key
//! from this address, the key from anywhere (a guess spread over many
//! addresses), and, more loosely, the address alone (room for the many
//! sensors a TCP load balancer puts behind one address). Each bucket refills
//! over time; when one is empty the attempt is refused before it is checked,
//! and a refused attempt is charged nothing. The tables are bounded: when
//! full, entries whose buckets have refilled are dropped, then the oldest.
//!
//! An attempt is charged before it is checked and given back when it
//! succeeds: checking takes time (argon2, a read barrier), and attempts that
//! all passed the limit before any had failed would all be checked.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries tracked per table at most.
const MAX_TRACKED: usize = 65_536;

pub struct AuthLimiter {
    /// The key from one client: (address or device, key).
    by_client: Mutex<Table<Vec<u8>>>,
    /// The key from any client that is not known.
    by_key: Mutex<Table<Vec<u8>>>,
    /// An address, for clients that are not known.
    by_address: Mutex<Table<IpAddr>>,
}

/// Who tries to log in.
#[derive(Debug, Clone, Copy)]
pub enum Client<'a> {
    /// Known only by its address.
    Address(IpAddr),
    /// Proved it has logged in as this key before: its own budget only.
    Known(&'a [u8]),
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

/// A bucket: failures in a row, then one per `refill`.
type Budget = (u32, Duration);

impl AuthLimiter {
    fn new(client: Budget, key: Budget, address: Budget) -> Self {
        AuthLimiter {
            by_client: Mutex::new(Table::new(client.0, client.1)),
            by_key: Mutex::new(Table::new(key.0, key.1)),
            by_address: Mutex::new(Table::new(address.0, address.1)),
        }
    }

    /// hpfeeds AUTH, keyed by the ident: 20 failures for one ident from one
    /// address, then one per 3 s; 50 for one ident from addresses it has not
    /// logged in from, then one per 2 s; 300 from one address, then five a second.
    pub fn for_hpfeeds() -> Self {
        Self::new((20, Duration::from_secs(3)), (50, Duration::from_secs(2)), (300, Duration::from_millis(200)))
    }

    /// Web sign-in, keyed by the user name: 10 failures for one name from one
    /// client, and 10 from clients that are not known, then one per 6 s; 50
    /// from one address, then one a second.
    pub fn for_sign_in() -> Self {
        Self::new((10, Duration::from_secs(6)), (10, Duration::from_secs(6)), (50, Duration::from_secs(1)))
    }

    /// Unknown session cookies make a node ask the leader once each: 50 from
    /// one address, then one a second. Their own limiter, so they never cost
    /// anyone a sign-in.
    pub fn for_unknown_cookies() -> Self {
        Self::new((50, Duration::from_secs(1)), (50, Duration::from_secs(1)), (50, Duration::from_secs(1)))
    }

    /// Charges an attempt of `client` for `key`, or `None` when a bucket it
    /// would be charged to is empty. The charge stays unless the attempt `succeeded`.
    pub fn attempt(&self, client: Client, key: &[u8]) -> Option<Attempt<'_>> {
        let now = Instant::now();
        let client_key = match client {
            Client::Address(ip) => [b"a".as_slice(), &ip_bytes(ip), key].concat(),
            Client::Known(device) => [b"k".as_slice(), &(device.len() as u32).to_be_bytes(), device, key].concat(),
        };
        let ip = match client {
            Client::Address(ip) => Some(ip),
            Client::Known(_) => None,
        };
        // One lock order everywhere: the address's table, the key's, the client's.
        let mut by_address = self.by_address.lock().expect("auth limiter lock");
        let mut by_key = self.by_key.lock().expect("auth limiter lock");
        let mut by_client = self.by_client.lock().expect("auth limiter lock");
        let unknown = ip.is_some();
        let key = key.to_vec();
        let allowed = by_client.may_try(&client_key, now)
            && (!unknown || by_key.may_try(&key, now))
            && ip.is_none_or(|ip| by_address.may_try(&ip, now));
        if !allowed {
            return None;
        }
        by_client.failed(client_key.clone(), now);
        if let Some(ip) = ip {
            by_key.failed(key.clone(), now);
            by_address.failed(ip, now);
        }
        Some(Attempt { limiter: self, client_key, key: unknown.then_some(key), ip })
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// An attempt that has been charged; dropping it counts it as a failure.
#[must_use = "an attempt counts as failed unless it succeeded"]
pub struct Attempt<'a> {
    limiter: &'a AuthLimiter,
    client_key: Vec<u8>,
    /// What else was charged (for a client that is not known).
    key: Option<Vec<u8>>,
    ip: Option<IpAddr>,
}

impl Attempt<'_> {
    pub fn succeeded(self) {
        let now = Instant::now();
        if let Some(ip) = self.ip {
            self.limiter.by_address.lock().expect("auth limiter lock").refund(&ip, now);
        }
        if let Some(key) = &self.key {
            self.limiter.by_key.lock().expect("auth limiter lock").refund(key, now);
        }
        self.limiter.by_client.lock().expect("auth limiter lock").refund(&self.client_key, now);
    }
}

/// An hpfeeds ident as logged in from one address.
pub fn hpfeeds_key(ip: IpAddr, ident: &[u8]) -> Vec<u8> {
    [ip_bytes(ip).as_slice(), ident].concat()
}

/// The (address, ident) pairs that have logged in on this node, the newest
/// `MAX_TRACKED`: a sensor is a known client from where it logged in before.
#[derive(Default)]
pub struct KnownClients {
    set: std::collections::HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl KnownClients {
    pub fn contains(&self, client: &[u8]) -> bool {
        self.set.contains(client)
    }

    pub fn remember(&mut self, client: Vec<u8>) {
        if self.set.contains(&client) {
            return;
        }
        if self.order.len() >= MAX_TRACKED {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.set.insert(client.clone());
        self.order.push_back(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_burst_of_failures_for_one_ident_then_that_ident_waits_and_others_do_not() {
        let limiter = AuthLimiter::for_hpfeeds();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..20 {
            assert!(limiter.attempt(Client::Address(a), b"k").is_some());
        }
        assert!(limiter.attempt(Client::Address(a), b"k").is_none(), "k from a is used up");
        assert!(
            limiter.attempt(Client::Address(a), b"other").is_some(),
            "another ident from a (a load balancer's sensors)"
        );
        assert!(limiter.attempt(Client::Address(b), b"k").is_some());
    }

    #[test]
    fn given_failed_sign_ins_for_one_name_from_many_addresses_then_that_name_waits() {
        let limiter = AuthLimiter::for_sign_in();
        for i in 0..10u8 {
            drop(limiter.attempt(Client::Address(IpAddr::from([10, 0, 0, i])), b"jojo"));
        }
        let fresh = IpAddr::from([10, 0, 1, 1]);
        assert!(
            limiter.attempt(Client::Address(fresh), b"jojo").is_none(),
            "the name is used up, whatever the address"
        );
        assert!(limiter.attempt(Client::Address(fresh), b"mark").is_some());
    }

    #[test]
    fn given_failures_for_many_idents_from_one_address_then_the_address_waits() {
        let limiter = AuthLimiter::for_hpfeeds();
        for i in 0..300u32 {
            drop(limiter.attempt(Client::Address("10.0.0.1".parse().unwrap()), &i.to_be_bytes()));
        }
        assert!(limiter.attempt(Client::Address("10.0.0.1".parse().unwrap()), b"fresh").is_none());
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
                    if let Some(attempt) = limiter.attempt(Client::Address(ip), b"jojo") {
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
            drop(limiter.attempt(Client::Address(ip), b"jojo"));
        }
        limiter.attempt(Client::Address(ip), b"jojo").unwrap().succeeded();
        assert!(
            limiter.attempt(Client::Address(ip), b"jojo").is_some(),
            "the right password did not use up the last try"
        );
        assert!(limiter.attempt(Client::Address(ip), b"jojo").is_none());
        let mark = IpAddr::from([10, 0, 0, 2]);
        limiter.attempt(Client::Address(mark), b"mark").unwrap().succeeded();
        let tracked = |l: &AuthLimiter| l.by_key.lock().unwrap().buckets.len();
        assert_eq!(tracked(&limiter), 1, "a name that never failed holds no entry (only jojo's)");
    }

    #[test]
    fn given_a_name_locked_by_failures_from_anywhere_then_a_known_browser_still_signs_in() {
        let limiter = AuthLimiter::for_sign_in();
        for i in 0..50u8 {
            drop(limiter.attempt(Client::Address(IpAddr::from([10, 0, 0, i])), b"jojo"));
        }
        assert!(limiter.attempt(Client::Address(IpAddr::from([10, 0, 1, 1])), b"jojo").is_none());
        limiter
            .attempt(Client::Known(b"jojo's laptop"), b"jojo")
            .expect("his own browser is not locked out")
            .succeeded();
        // A known client's failures use up its own budget only.
        for _ in 0..10 {
            drop(limiter.attempt(Client::Known(b"a stolen session"), b"jojo"));
        }
        assert!(limiter.attempt(Client::Known(b"a stolen session"), b"jojo").is_none());
        assert!(limiter.attempt(Client::Known(b"jojo's laptop"), b"jojo").is_some());
    }

    #[test]
    fn given_guesses_for_one_ident_from_many_addresses_then_few_are_checked_and_the_sensor_logs_in() {
        let limiter = AuthLimiter::for_hpfeeds();
        let mut checked = 0;
        for i in 0..10u8 {
            for _ in 0..21 {
                if let Some(a) = limiter.attempt(Client::Address(IpAddr::from([10, 0, 0, i])), b"sensor") {
                    checked += 1;
                    drop(a);
                }
            }
        }
        assert_eq!(checked, 50, "the ident's budget across addresses");
        let mut known = KnownClients::default();
        let home = IpAddr::from([192, 0, 2, 7]);
        known.remember(hpfeeds_key(home, b"sensor"));
        let client = hpfeeds_key(home, b"sensor");
        assert!(known.contains(&client));
        assert!(limiter.attempt(Client::Known(&client), b"sensor").is_some(), "the sensor from its own address");
    }

    #[test]
    fn given_more_known_clients_than_tracked_then_the_oldest_go() {
        let mut known = KnownClients::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            known.remember(i.to_be_bytes().to_vec());
        }
        assert!(known.set.len() == MAX_TRACKED && known.order.len() == MAX_TRACKED);
        assert!(!known.contains(&0u32.to_be_bytes()) && known.contains(&(MAX_TRACKED as u32 + 9).to_be_bytes()));
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
