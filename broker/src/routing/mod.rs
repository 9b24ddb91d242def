//! Routing a PUBLISH to the subscribers allowed to read it.
//!
//! The hot path reads two immutable snapshots — the subscription table and the
//! node's [`View`] (sharing index + authkeys) — and pushes the one shared frame
//! into each qualifying subscriber's bounded queue. No lock is taken per
//! message; subscription changes copy the table and swap it in.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hpfriends_consensus::{KeyTable, LogId, OnApply};
use hpfriends_graph::{may_read, Readers, SharingIndex, UserId};

use crate::archive::{Archive, Offers};
use crate::cluster::peers::Peers;
use crate::hpfeeds::outbound::Outbound;
use crate::protocol::PublishFrame;

mod filtered;

pub type ConnId = u64;

/// What the publish path reads: one immutable snapshot per applied change.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub index: SharingIndex,
    /// By ident.
    pub keys: Arc<KeyTable>,
    pub last_applied: Option<LogId>,
}

#[derive(Clone)]
pub struct Subscriber {
    pub conn: ConnId,
    pub owner: UserId,
    pub out: Outbound,
}

/// A persistent map: a subscription change copies the path to one channel
/// (O(log n)), not the whole table, and the publish path still reads a
/// snapshot without a lock.
type Table =
    imbl::GenericHashMap<Bytes, Arc<[Subscriber]>, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

pub struct Switchboard {
    subscriptions: ArcSwap<Table>,
    /// Serializes writers of `subscriptions` (readers never take it), and
    /// orders interest changes with interest replays.
    subscriptions_write: Mutex<()>,
    view: ArcSwap<View>,
    /// Bumped with every new view: sessions re-check their key against it.
    view_changed: tokio::sync::watch::Sender<u64>,
    /// The peers publishes are forwarded to, and told of local interest.
    peers: Arc<Peers>,
    /// Where this node's own publishes are kept (`archive = true`).
    archive: Option<Arc<Archive>>,
}

/// What one delivery did, for metrics: how many subscriber queues took it
/// (one publish, or a peer's whole run of publishes) and how many refused it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    pub dropped: usize,
}

impl Switchboard {
    pub fn new(view: Arc<View>, peers: Arc<Peers>, archive: Option<Arc<Archive>>) -> Self {
        Switchboard {
            subscriptions: ArcSwap::from_pointee(Table::default()),
            subscriptions_write: Mutex::new(()),
            view: ArcSwap::new(view),
            view_changed: tokio::sync::watch::Sender::new(0),
            peers,
            archive,
        }
    }

    /// The graph changed: later publishes route with the new index, and every
    /// session re-checks its key (a removed key or channel ends at once).
    pub fn set_view(&self, view: Arc<View>) {
        self.view.store(view);
        self.view_changed.send_modify(|n| *n += 1);
    }

    /// Changes each time a new view is set.
    pub fn watch_views(&self) -> tokio::sync::watch::Receiver<u64> {
        self.view_changed.subscribe()
    }

    /// The current view, held briefly (no reference count taken: the publish
    /// path loads it once per publish).
    pub fn view(&self) -> arc_swap::Guard<Arc<View>> {
        self.view.load()
    }

    /// Delivers the publisher's PUBLISH, unchanged, to every local subscriber
    /// of its channel whose owner may read `owner`'s data, and once to every
    /// peer node that has such a subscriber. `view` is the snapshot the
    /// caller checked the publisher's key against: one snapshot per publish.
    /// The archive gets it through the session's `offers`.
    pub fn publish(&self, view: &View, owner: UserId, publish: &PublishFrame, offers: &mut Offers) -> Delivery {
        let channel = publish.channel();
        let readers = std::str::from_utf8(channel).ok().and_then(|c| view.index.readers(owner, c));
        self.peers.forward(owner, publish, readers);
        offers.push(owner, view.last_applied.map_or(0, |l| l.index), publish);
        self.deliver_local(owner, channel, publish.raw(), 1, readers)
    }

    /// A publishing session's way into this node's archive (if it keeps one).
    pub fn offers(&self) -> Offers {
        Offers::new(self.archive.clone())
    }

    /// Publishes forwarded by a peer (`frames`: one or more whole PUBLISH
    /// frames of `owner` on `channel`): checked again with this node's index
    /// (a denial on either side wins) and delivered locally only, all at once.
    pub fn publish_from_peer(&self, owner: UserId, channel: &[u8], frames: &Bytes, messages: u64) -> Delivery {
        let view = self.view.load();
        let readers = std::str::from_utf8(channel).ok().and_then(|c| view.index.readers(owner, c));
        self.deliver_local(owner, channel, frames, messages, readers)
    }

    fn deliver_local(
        &self,
        owner: UserId,
        channel: &[u8],
        frame: &Bytes,
        messages: u64,
        readers: Option<&Readers>,
    ) -> Delivery {
        let table = self.subscriptions.load();
        let Some(subscribers) = table.get(channel) else { return Delivery::default() };
        if let Some(r) = readers.filter(|r| r.any_filtered()) {
            return filtered::deliver(owner, subscribers, frame, messages, r);
        }
        let mut result = Delivery::default();
        for s in subscribers.iter() {
            if may_read(owner, s.owner, readers) {
                if s.out.deliver(frame.clone(), messages) {
                    result.delivered += 1;
                } else {
                    result.dropped += 1;
                }
            }
        }
        result
    }

    /// A peer dropped publishes of these (channel, owner) pairs: closes, as
    /// slow consumers, the local subscribers that would have received them.
    /// Returns how many.
    pub fn close_lossy(&self, lost: &[(Bytes, UserId)]) -> usize {
        let view = self.view.load();
        let table = self.subscriptions.load();
        let mut closed = 0;
        for (channel, owner) in lost {
            let Some(subscribers) = table.get(channel) else { continue };
            let readers = std::str::from_utf8(channel).ok().and_then(|c| view.index.readers(*owner, c));
            for s in subscribers.iter().filter(|s| may_read(*owner, s.owner, readers)) {
                s.out.lost_upstream();
                closed += 1;
            }
        }
        closed
    }

    /// Adds the subscription; subscribing twice is the same as once.
    pub fn subscribe(&self, channel: Bytes, subscriber: Subscriber) {
        self.modify(|table, peers| {
            let current = table.get(&channel).map(|s| &s[..]).unwrap_or(&[]);
            if current.iter().any(|s| s.conn == subscriber.conn) {
                return;
            }
            if !current.iter().any(|s| s.owner == subscriber.owner) {
                peers.local_interest_changed(&channel, subscriber.owner, true);
            }
            let mut list = current.to_vec();
            list.push(subscriber);
            table.insert(channel, list.into());
        });
    }

    pub fn unsubscribe(&self, channel: &[u8], conn: ConnId) {
        self.modify(|table, peers| remove_from(table, channel, conn, peers));
    }

    /// Drops every subscription of a closing connection.
    pub fn remove_connection<'a>(&self, conn: ConnId, channels: impl IntoIterator<Item = &'a Bytes>) {
        self.modify(|table, peers| {
            for c in channels {
                remove_from(table, c, conn, peers);
            }
        });
    }

    /// Runs `f` with every local (channel, owner) pair while no subscription
    /// can change, so a link's replay and its later deltas are in order.
    pub fn with_local_interest<T>(&self, f: impl FnOnce(Vec<(Bytes, UserId)>) -> T) -> T {
        let _guard = self.subscriptions_write.lock().expect("subscription lock poisoned");
        let table = self.subscriptions.load();
        let mut pairs: Vec<(Bytes, UserId)> =
            table.iter().flat_map(|(c, subs)| subs.iter().map(move |s| (c.clone(), s.owner))).collect();
        pairs.sort();
        pairs.dedup();
        f(pairs)
    }

    /// Number of (connection, channel) subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load().values().map(|s| s.len()).sum()
    }

    /// Bytes queued for subscribed connections, not yet written (read at a
    /// scrape, so the publish path keeps no shared counter).
    pub fn queued_bytes(&self) -> usize {
        let table = self.subscriptions.load();
        let mut seen = std::collections::HashSet::new();
        table.values().flat_map(|s| s.iter()).filter(|s| seen.insert(s.conn)).map(|s| s.out.queued_bytes()).sum()
    }

    fn modify(&self, f: impl FnOnce(&mut Table, &Peers)) {
        let _guard = self.subscriptions_write.lock().expect("subscription lock poisoned");
        let mut table = Table::clone(&self.subscriptions.load());
        f(&mut table, &self.peers);
        self.subscriptions.store(Arc::new(table));
    }
}

/// Every change the node applies becomes the view the next publish reads.
impl OnApply for Switchboard {
    fn applied(&self, index: &SharingIndex, keys: &Arc<KeyTable>, last_applied: Option<LogId>) {
        self.set_view(Arc::new(View { index: index.clone(), keys: keys.clone(), last_applied }));
    }
}

fn remove_from(table: &mut Table, channel: &[u8], conn: ConnId, peers: &Peers) {
    let Some(current) = table.get(channel) else { return };
    let list: Vec<Subscriber> = current.iter().filter(|s| s.conn != conn).cloned().collect();
    if let Some(gone) = current.iter().find(|s| s.conn == conn) {
        if !list.iter().any(|s| s.owner == gone.owner) {
            peers.local_interest_changed(&Bytes::copy_from_slice(channel), gone.owner, false);
        }
    }
    if list.is_empty() {
        table.remove(channel);
    } else if list.len() != current.len() {
        table.insert(Bytes::copy_from_slice(channel), list.into());
    }
}

/// The rule of the publish path: a subscriber gets its own user's messages
/// and those of publishers whose readers include it.
#[cfg(test)]
mod tests {
    use hpfriends_graph::synthetic::Fixture;
    use hpfriends_graph::{Graph, SharingIndex};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::hpfeeds::outbound::{outbound, OutboundReceiver};

    const QUEUE: usize = 100;

    /// jojo shares channel c with mark; eve gets nothing.
    fn switchboard() -> (Switchboard, Graph) {
        let g = Fixture::new().users(&["jojo", "mark", "eve"]).share("jojo", "mark", "c").graph();
        let view = View { index: SharingIndex::build(&g), keys: Arc::default(), last_applied: None };
        (Switchboard::new(Arc::new(view), Arc::new(Peers::new(QUEUE)), None), g)
    }

    fn subscribe(
        switchboard: &Switchboard,
        g: &Graph,
        conn: ConnId,
        user: &str,
    ) -> (OutboundReceiver, CancellationToken) {
        let close = CancellationToken::new();
        let (out, rx) = outbound(1 << 20, close.clone());
        switchboard.subscribe(Bytes::from_static(b"c"), Subscriber { conn, owner: g.user_id(user).unwrap(), out });
        (rx, close)
    }

    #[test]
    fn given_peer_dropped_publishes_then_only_subscribers_that_would_read_them_close() {
        let (switchboard, g) = switchboard();
        let (mark, mark_closed) = subscribe(&switchboard, &g, 1, "mark");
        let (jojo, jojo_closed) = subscribe(&switchboard, &g, 2, "jojo");
        let (eve, eve_closed) = subscribe(&switchboard, &g, 3, "eve");
        let jojo_id = g.user_id("jojo").unwrap();

        let closed =
            switchboard.close_lossy(&[(Bytes::from_static(b"c"), jojo_id), (Bytes::from_static(b"other"), jojo_id)]);

        assert_eq!(closed, 2, "mark (shared with) and jojo (own messages)");
        let upstream = Some("Slow consumer: messages for this connection were dropped between nodes, closing");
        for (rx, token) in [(&mark, &mark_closed), (&jojo, &jojo_closed)] {
            assert!(token.is_cancelled());
            assert_eq!(rx.slow_consumer().and_then(|r| r.error_text()).as_deref(), upstream);
        }
        assert!(!eve_closed.is_cancelled(), "eve could not read jojo's messages");
        assert_eq!(eve.slow_consumer(), None);
    }
}
