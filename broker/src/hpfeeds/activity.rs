//! What each key does on this node: messages and bytes it published and was
//! delivered, when it last published and subscribed, its live connections,
//! and its last failed logins. Nodes report it to each other
//! (`cluster/report.rs`), so a key's activity is summed over the cluster.
//!
//! Activity belongs to a key as one user holds it: it is kept with the
//! owner's id, a key that another user creates with the same ident starts
//! empty, and a removed key's activity goes (`forget_removed`).
//!
//! Connections count in their own atomics (no shared lock per message);
//! their counts are added to the key's totals when they close. Failed logins
//! are kept only for idents that are keys, a few per key, for a bounded
//! number of keys: a guesser's flood costs bounded memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hpfriends_consensus::KeyTable;
use hpfriends_graph::UserId;

use crate::hpfeeds::outbound::Outbound;

/// Failed logins kept per key, newest last.
pub const FAILURES_PER_KEY: usize = 10;
/// Keys with failed logins kept; past it the key whose last failure is oldest goes.
pub const KEYS_WITH_FAILURES: usize = 10_000;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One logged-in connection, shared by its session (which counts into it)
/// and the reports (which read it).
pub struct Connection {
    pub ident: String,
    pub owner: UserId,
    pub remote: SocketAddr,
    pub since: u64,
    /// A set: a SUBSCRIBE costs the log of the connection's subscriptions.
    channels: Mutex<BTreeSet<String>>,
    published: AtomicU64,
    published_bytes: AtomicU64,
    last_publish: AtomicU64,
    last_subscribe: AtomicU64,
    out: Outbound,
}

impl Connection {
    /// Called once per read from the client with what it published in it.
    pub fn published(&self, messages: u64, bytes: u64) {
        if messages > 0 {
            self.published.fetch_add(messages, Ordering::Relaxed);
            self.published_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.last_publish.store(unix_now(), Ordering::Relaxed);
        }
    }

    pub fn subscribed(&self, channel: &str) {
        self.last_subscribe.store(unix_now(), Ordering::Relaxed);
        let mut channels = self.channels.lock().expect("channels lock");
        if !channels.contains(channel) {
            channels.insert(channel.to_string());
        }
    }

    pub fn unsubscribed(&self, channel: &str) {
        self.channels.lock().expect("channels lock").remove(channel);
    }

    fn counts(&self) -> Counts {
        let (delivered, delivered_bytes) = self.out.delivered();
        Counts {
            published: self.published.load(Ordering::Relaxed),
            published_bytes: self.published_bytes.load(Ordering::Relaxed),
            delivered,
            delivered_bytes,
            last_publish: nonzero(self.last_publish.load(Ordering::Relaxed)),
            last_subscribe: nonzero(self.last_subscribe.load(Ordering::Relaxed)),
        }
    }
}

fn nonzero(t: u64) -> Option<u64> {
    (t != 0).then_some(t)
}

/// Counts of one connection, or summed over several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub published: u64,
    pub published_bytes: u64,
    pub delivered: u64,
    pub delivered_bytes: u64,
    pub last_publish: Option<u64>,
    pub last_subscribe: Option<u64>,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.published += other.published;
        self.published_bytes += other.published_bytes;
        self.delivered += other.delivered;
        self.delivered_bytes += other.delivered_bytes;
        self.last_publish = self.last_publish.max(other.last_publish);
        self.last_subscribe = self.last_subscribe.max(other.last_subscribe);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLogin {
    pub at: u64,
    pub remote: SocketAddr,
    pub reason: &'static str,
}

/// A live connection as a report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConnection {
    pub remote: SocketAddr,
    pub since: u64,
    pub channels: Vec<String>,
}

/// One key's activity on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyActivity {
    pub counts: Counts,
    pub live: Vec<LiveConnection>,
    pub failed_logins: Vec<FailedLogin>,
}

struct Key {
    owner: UserId,
    /// Counts of its closed connections.
    closed: Counts,
    live: HashMap<u64, Arc<Connection>>,
}

/// A key's failed logins: when the last came (in `Failures::order`), and the list.
struct KeyFailures {
    owner: UserId,
    last: u64,
    list: VecDeque<FailedLogin>,
}

#[derive(Default)]
struct Failures {
    by_ident: HashMap<String, KeyFailures>,
    /// The last failure's order → ident, to find the key to drop.
    order: BTreeMap<u64, String>,
    next: u64,
}

impl Key {
    fn of(owner: UserId) -> Key {
        Key { owner, closed: Counts::default(), live: HashMap::new() }
    }
}

#[derive(Default)]
pub struct Activity {
    keys: Mutex<HashMap<String, Key>>,
    failures: Mutex<Failures>,
}

impl Activity {
    /// A connection logged in with `ident`.
    pub fn connected(
        &self,
        conn: u64,
        ident: &str,
        owner: UserId,
        remote: SocketAddr,
        out: Outbound,
    ) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            ident: ident.to_string(),
            owner,
            remote,
            since: unix_now(),
            channels: Mutex::new(BTreeSet::new()),
            published: AtomicU64::new(0),
            published_bytes: AtomicU64::new(0),
            last_publish: AtomicU64::new(0),
            last_subscribe: AtomicU64::new(0),
            out,
        });
        let mut keys = self.keys.lock().expect("activity lock");
        let key = keys.entry(ident.to_string()).or_insert_with(|| Key::of(owner));
        if key.owner != owner {
            *key = Key::of(owner);
        }
        key.live.insert(conn, connection.clone());
        connection
    }

    /// The connection closed: its counts join its key's totals.
    pub fn disconnected(&self, conn: u64, connection: &Connection) {
        let counts = connection.counts();
        let mut keys = self.keys.lock().expect("activity lock");
        if let Some(key) = keys.get_mut(&connection.ident).filter(|k| k.owner == connection.owner) {
            key.live.remove(&conn);
            key.closed.add(&counts);
        }
    }

    /// Connections logged in with `ident` now.
    pub fn live_connections(&self, ident: &str) -> u32 {
        self.keys.lock().expect("activity lock").get(ident).map_or(0, |k| k.live.len() as u32)
    }

    /// A failed login with the ident of a key (the caller checked it is one).
    pub fn login_failed(&self, ident: &str, owner: UserId, remote: SocketAddr, reason: &'static str) {
        let mut f = self.failures.lock().expect("failures lock");
        let f = &mut *f;
        let order = f.next;
        f.next += 1;
        let failure = FailedLogin { at: unix_now(), remote, reason };
        match f.by_ident.get_mut(ident) {
            Some(key) => {
                f.order.remove(&key.last);
                key.last = order;
                if key.owner != owner {
                    *key = KeyFailures { owner, last: order, list: VecDeque::new() };
                }
                if key.list.len() == FAILURES_PER_KEY {
                    key.list.pop_front();
                }
                key.list.push_back(failure);
            }
            None => {
                if f.by_ident.len() == KEYS_WITH_FAILURES {
                    if let Some((_, oldest)) = f.order.pop_first() {
                        f.by_ident.remove(&oldest);
                    }
                }
                f.by_ident
                    .insert(ident.to_string(), KeyFailures { owner, last: order, list: VecDeque::from([failure]) });
            }
        }
        f.order.insert(order, ident.to_string());
    }

    /// Drops the activity of keys that are gone from `keys` or now belong to another user.
    pub fn forget_removed(&self, keys: &KeyTable) {
        let held = |ident: &str, owner: UserId| keys.get(ident).is_some_and(|k| k.owner == owner);
        self.keys.lock().expect("activity lock").retain(|ident, k| held(ident, k.owner));
        let mut f = self.failures.lock().expect("failures lock");
        let f = &mut *f;
        f.by_ident.retain(|ident, k| held(ident, k.owner));
        f.order.retain(|_, ident| f.by_ident.contains_key(ident));
    }

    /// Keys with failed logins kept now (bounded by `KEYS_WITH_FAILURES`).
    pub fn keys_with_failures(&self) -> usize {
        self.failures.lock().expect("failures lock").by_ident.len()
    }

    /// The activity of `ident` while `owner` held it.
    pub fn of(&self, ident: &str, owner: UserId) -> KeyActivity {
        let mut activity = KeyActivity::default();
        if let Some(key) = self.keys.lock().expect("activity lock").get(ident).filter(|k| k.owner == owner) {
            activity.counts = key.closed;
            for c in key.live.values() {
                activity.counts.add(&c.counts());
                let channels = c.channels.lock().expect("channels lock").iter().cloned().collect();
                activity.live.push(LiveConnection { remote: c.remote, since: c.since, channels });
            }
        }
        activity.live.sort_by_key(|c| (c.since, c.remote));
        if let Some(key) = self.failures.lock().expect("failures lock").by_ident.get(ident).filter(|k| k.owner == owner)
        {
            activity.failed_logins = key.list.iter().cloned().collect();
        }
        activity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpfeeds::outbound::outbound;
    use tokio_util::sync::CancellationToken;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn counts_of_closed_and_live_connections_add_up() {
        let activity = Activity::default();
        let (out1, _rx1) = outbound(1 << 20, CancellationToken::new());
        let (out2, _rx2) = outbound(1 << 20, CancellationToken::new());
        let first = activity.connected(1, "sensor", ALICE, addr(1), out1.clone());
        let second = activity.connected(2, "sensor", ALICE, addr(2), out2.clone());
        first.published(3, 300);
        assert!(out1.deliver(bytes::Bytes::from_static(b"12345"), 2));
        second.subscribed("cowrie.sessions");
        activity.disconnected(1, &first);
        second.published(1, 10);

        let a = activity.of("sensor", ALICE);
        assert_eq!((a.counts.published, a.counts.published_bytes), (4, 310));
        assert_eq!((a.counts.delivered, a.counts.delivered_bytes), (2, 5));
        assert!(a.counts.last_publish.is_some() && a.counts.last_subscribe.is_some());
        assert_eq!(
            a.live,
            [LiveConnection { remote: addr(2), since: second.since, channels: vec!["cowrie.sessions".into()] }]
        );
        assert_eq!(activity.live_connections("sensor"), 1);
        assert_eq!(activity.of("other", ALICE), KeyActivity::default());
    }

    const ALICE: UserId = 1;
    const MALLORY: UserId = 2;

    fn key_table(keys: &[(&str, UserId)]) -> KeyTable {
        let entry = |ident: &str, owner| {
            let key = hpfriends_graph::AuthKey {
                ident: ident.into(),
                secret: "secret".into(),
                owner: String::new(),
                publish: vec![],
                subscribe: vec![],
                resume: false,
            };
            hpfriends_consensus::KeyEntry::new(&key, owner)
        };
        keys.iter().map(|&(ident, owner)| (ident.to_string(), Arc::new(entry(ident, owner)))).collect()
    }

    #[test]
    fn given_an_ident_taken_by_another_user_then_the_old_keys_activity_is_not_theirs() {
        let activity = Activity::default();
        let (out, _rx) = outbound(1 << 20, CancellationToken::new());
        let alices = activity.connected(1, "reused-ident", ALICE, addr(1), out.clone());
        alices.published(5, 500);
        activity.login_failed("reused-ident", ALICE, addr(7), "wrong secret");
        activity.disconnected(1, &alices);
        assert_eq!(activity.of("reused-ident", ALICE).counts.published, 5);

        // Mallory's key with the same ident: nothing of alice's shows, whatever comes first.
        assert_eq!(activity.of("reused-ident", MALLORY), KeyActivity::default());
        activity.login_failed("reused-ident", MALLORY, addr(8), "wrong secret");
        let hers = activity.of("reused-ident", MALLORY);
        assert_eq!(hers.failed_logins.iter().map(|f| f.remote).collect::<Vec<_>>(), [addr(8)]);
        assert_eq!(hers.counts, Counts::default());
        let mallorys = activity.connected(2, "reused-ident", MALLORY, addr(2), out);
        mallorys.published(1, 10);
        assert_eq!(activity.of("reused-ident", MALLORY).counts.published, 1);
        assert_eq!(activity.of("reused-ident", ALICE), KeyActivity::default(), "alice's is gone");
    }

    #[test]
    fn given_keys_removed_then_their_activity_goes() {
        let activity = Activity::default();
        let (out, _rx) = outbound(1 << 20, CancellationToken::new());
        for (conn, ident) in [(1, "kept"), (2, "removed"), (3, "given-away")] {
            let c = activity.connected(conn, ident, ALICE, addr(conn as u16), out.clone());
            c.published(1, 1);
            activity.login_failed(ident, ALICE, addr(9), "wrong secret");
            activity.disconnected(conn, &c);
        }
        activity.forget_removed(&key_table(&[("kept", ALICE), ("given-away", MALLORY)]));
        assert_eq!(activity.of("kept", ALICE).counts.published, 1);
        assert_eq!(activity.of("kept", ALICE).failed_logins.len(), 1);
        assert_eq!(activity.keys_with_failures(), 1);
        assert_eq!(activity.keys.lock().unwrap().len(), 1);
        // The bound still holds after entries went: the order map lost them too.
        for i in 0..KEYS_WITH_FAILURES + 5 {
            activity.login_failed(&format!("k{i}"), ALICE, addr(1), "wrong secret");
        }
        assert_eq!(activity.keys_with_failures(), KEYS_WITH_FAILURES);
    }

    #[test]
    fn failed_logins_stay_bounded_under_a_flood() {
        let activity = Activity::default();
        for i in 0..100_000u32 {
            activity.login_failed(&format!("key-{}", i % 20_000), ALICE, addr((i % 60_000) as u16), "wrong secret");
        }
        assert_eq!(activity.keys_with_failures(), KEYS_WITH_FAILURES);
        // 20,000 keys in turn: each was dropped before its next failure came round.
        assert_eq!(activity.of("key-19999", ALICE).failed_logins.len(), 1);
        assert!(activity.of("key-0", ALICE).failed_logins.is_empty(), "the key whose last failure is oldest went");
        for _ in 0..30 {
            activity.login_failed("key-19999", ALICE, addr(7), "rate limited");
        }
        let kept = activity.of("key-19999", ALICE).failed_logins;
        assert_eq!(kept.len(), FAILURES_PER_KEY);
        assert!(kept.iter().all(|f| f.reason == "rate limited" && f.remote == addr(7)));
    }
}
