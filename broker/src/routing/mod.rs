//! Routing a PUBLISH to the subscribers allowed to read it.
//!
//! The hot path reads two immutable snapshots — the subscription table and the
//! node's [`View`] (sharing index + authkeys) — and pushes the one shared frame
//! into each qualifying subscriber's bounded queue. No lock is taken per
//! message; subscription changes copy the table and swap it in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hpfriends_consensus::View;
use hpfriends_graph::{Readers, UserId};

pub mod fanout;

use crate::hpfeeds::outbound::Outbound;

pub type ConnId = u64;

#[derive(Clone)]
pub struct Subscriber {
    pub conn: ConnId,
    pub owner: UserId,
    pub out: Outbound,
}

type Table = HashMap<Bytes, Arc<[Subscriber]>>;

pub struct Router {
    subscriptions: ArcSwap<Table>,
    /// Serializes writers of `subscriptions` (readers never take it), and
    /// orders interest changes with interest replays.
    subscriptions_write: Mutex<()>,
    view: ArcSwap<View>,
    pub fanout: fanout::Fanout,
}

/// What one publish did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    pub dropped: usize,
}

impl Router {
    pub fn new(view: Arc<View>) -> Self {
        Router {
            subscriptions: ArcSwap::from_pointee(Table::new()),
            subscriptions_write: Mutex::new(()),
            view: ArcSwap::new(view),
            fanout: fanout::Fanout::default(),
        }
    }

    /// The graph changed: later publishes route with the new index.
    pub fn set_view(&self, view: Arc<View>) {
        self.view.store(view);
    }

    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Delivers `frame` (the publisher's PUBLISH, unchanged) to every local
    /// subscriber of `channel` whose owner may read `owner`'s data, and once
    /// to every peer node that has such a subscriber.
    pub fn publish(&self, owner: UserId, channel: &Bytes, frame: &Bytes) -> Delivery {
        let view = self.view.load();
        let readers = std::str::from_utf8(channel).ok().and_then(|c| view.index.readers(owner, c));
        self.fanout.forward(owner, channel, frame, readers);
        self.deliver_local(owner, channel.as_ref(), frame, readers)
    }

    /// A publish forwarded by a peer: checked again with this node's index
    /// (a denial on either side wins) and delivered locally only.
    pub fn publish_from_peer(&self, owner: UserId, channel: &[u8], frame: &Bytes) -> Delivery {
        let view = self.view.load();
        let readers = std::str::from_utf8(channel).ok().and_then(|c| view.index.readers(owner, c));
        self.deliver_local(owner, channel, frame, readers)
    }

    fn deliver_local(&self, owner: UserId, channel: &[u8], frame: &Bytes, readers: Option<&Readers>) -> Delivery {
        let table = self.subscriptions.load();
        let Some(subscribers) = table.get(channel) else { return Delivery::default() };
        let mut result = Delivery::default();
        for s in subscribers.iter() {
            let allowed = s.owner == owner || readers.is_some_and(|r| r.contains(s.owner));
            if allowed {
                if s.out.push(frame.clone()) {
                    result.delivered += 1;
                } else {
                    result.dropped += 1;
                }
            }
        }
        result
    }

    /// Adds the subscription; subscribing twice is the same as once.
    pub fn subscribe(&self, channel: Bytes, subscriber: Subscriber) {
        self.modify(|table, fanout| {
            let current = table.get(&channel).map(|s| &s[..]).unwrap_or(&[]);
            if current.iter().any(|s| s.conn == subscriber.conn) {
                return;
            }
            if !current.iter().any(|s| s.owner == subscriber.owner) {
                fanout.local_interest_changed(&channel, subscriber.owner, true);
            }
            let mut list = current.to_vec();
            list.push(subscriber);
            table.insert(channel, list.into());
        });
    }

    pub fn unsubscribe(&self, channel: &[u8], conn: ConnId) {
        self.modify(|table, fanout| remove_from(table, channel, conn, fanout));
    }

    /// Drops every subscription of a closing connection.
    pub fn remove_connection<'a>(&self, conn: ConnId, channels: impl IntoIterator<Item = &'a Bytes>) {
        self.modify(|table, fanout| {
            for c in channels {
                remove_from(table, c, conn, fanout);
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

    fn modify(&self, f: impl FnOnce(&mut Table, &fanout::Fanout)) {
        let _guard = self.subscriptions_write.lock().expect("subscription lock poisoned");
        let mut table = Table::clone(&self.subscriptions.load());
        f(&mut table, &self.fanout);
        self.subscriptions.store(Arc::new(table));
    }
}

fn remove_from(table: &mut Table, channel: &[u8], conn: ConnId, fanout: &fanout::Fanout) {
    let Some(current) = table.get(channel) else { return };
    let list: Vec<Subscriber> = current.iter().filter(|s| s.conn != conn).cloned().collect();
    if let Some(gone) = current.iter().find(|s| s.conn == conn) {
        if !list.iter().any(|s| s.owner == gone.owner) {
            fanout.local_interest_changed(&Bytes::copy_from_slice(channel), gone.owner, false);
        }
    }
    if list.is_empty() {
        table.remove(channel);
    } else if list.len() != current.len() {
        table.insert(Bytes::copy_from_slice(channel), list.into());
    }
}
