//! What peers want from this node, and the queues to them.
//!
//! Peers announce the (channel, owner) pairs their local clients subscribe to;
//! a publish is sent once to each peer with a pair that may read it. Per-peer
//! data queues are bounded in messages: overflow drops and counts, it never
//! stalls the publisher. Interest changes travel on a separate queue and are
//! never dropped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hpfriends_consensus::proto::{Interest, Publish};
use hpfriends_consensus::NodeId;
use hpfriends_graph::{LookupMap, Readers, UserId};
use tokio::sync::mpsc;

use crate::protocol::PublishFrame;

/// The sending side of one outbound link.
pub struct LinkQueue {
    pub peer: NodeId,
    data: mpsc::Sender<Publish>,
    control: mpsc::UnboundedSender<Interest>,
    state: AtomicU8,
    pub dropped: AtomicU64,
    /// (channel, owner) pairs with dropped publishes not yet reported to the peer.
    dropped_pairs: Mutex<HashSet<(Bytes, UserId)>>,
    has_dropped: AtomicBool,
    // Registered once per link, so the publish path does no label lookups.
    link_up: metrics::Gauge,
    sent_messages: metrics::Counter,
    sent_bytes: metrics::Counter,
    dropped_messages: metrics::Counter,
}

/// Where an outbound link stands, for readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Not yet connected since this node started: the peer's reachability is
    /// unknown, so the node is not ready.
    Connecting = 0,
    /// Connected, and this node's interest replay is sent.
    Replayed = 1,
    /// The peer refused or dropped the connection (it is stopped or cut off);
    /// a node must stay ready while a peer is down, so this does not count
    /// against readiness. Retried with backoff.
    Unreachable = 2,
}

impl LinkQueue {
    /// The link task took these publishes from the queue to send them
    /// (counted per batch, not per publish on the publish path).
    pub fn sent(&self, messages: usize, bytes: usize) {
        self.sent_messages.increment(messages as u64);
        self.sent_bytes.increment(bytes as u64);
    }

    /// The pairs with dropped publishes since the last call, for the peer.
    pub fn take_dropped(&self) -> Vec<(Bytes, UserId)> {
        if !self.has_dropped.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.dropped_pairs.lock().expect("dropped pairs lock").drain().collect()
    }

    pub fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Release);
        self.link_up.set(if state == LinkState::Replayed { 1.0 } else { 0.0 });
    }

    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Acquire) {
            0 => LinkState::Connecting,
            1 => LinkState::Replayed,
            _ => LinkState::Unreachable,
        }
    }
}

/// The receiving side, owned by the link task.
pub struct LinkReceivers {
    pub data: mpsc::Receiver<Publish>,
    pub control: mpsc::UnboundedReceiver<Interest>,
}

/// What a peer announced: the pairs its clients subscribe as, and whether it
/// takes packed publishes.
#[derive(Clone, Default)]
struct PeerInterest {
    channels: LookupMap<Bytes, Vec<UserId>>,
    accepts_packed: bool,
}

pub struct Fanout {
    /// Publishes waiting for one peer link, at most.
    queue_messages: usize,
    links: ArcSwap<LookupMap<NodeId, Arc<LinkQueue>>>,
    peer_interest: ArcSwap<LookupMap<NodeId, Arc<PeerInterest>>>,
    /// Serializes writers of `links` and `peer_interest`.
    write: Mutex<()>,
}

impl Fanout {
    pub fn new(queue_messages: usize) -> Fanout {
        Fanout { queue_messages, links: ArcSwap::default(), peer_interest: ArcSwap::default(), write: Mutex::default() }
    }

    /// Sends `publish` to every peer that has a subscriber allowed to read it.
    pub fn forward(&self, owner: UserId, publish: &PublishFrame, readers: Option<&Readers>) {
        let peers = self.peer_interest.load();
        if peers.is_empty() {
            return;
        }
        let links = self.links.load();
        for (peer, interest) in peers.iter() {
            let Some(owners) = interest.channels.get(publish.channel()) else { continue };
            if !owners.iter().any(|o| *o == owner || readers.is_some_and(|r| r.contains(*o))) {
                continue;
            }
            let Some(link) = links.get(peer) else { continue };
            let channel = publish.channel_bytes();
            if let Err(refused) = link.data.try_send(Publish { owner, frame: publish.raw().clone(), channel }) {
                link.dropped.fetch_add(1, Ordering::Relaxed);
                link.dropped_messages.increment(1);
                link.dropped_pairs.lock().expect("dropped pairs lock").insert((refused.into_inner().channel, owner));
                link.has_dropped.store(true, Ordering::Release);
            }
        }
    }

    /// A local (channel, owner) pair appeared or disappeared: tell every peer.
    pub fn local_interest_changed(&self, channel: &Bytes, owner: UserId, subscribed: bool) {
        for link in self.links.load().values() {
            let _ = link.control.send(Interest { channel: channel.clone(), owner, subscribed });
        }
    }

    /// Creates the queues of a new outbound link to `peer`.
    pub fn add_link(&self, peer: NodeId) -> (Arc<LinkQueue>, LinkReceivers) {
        let (data_tx, data_rx) = mpsc::channel(self.queue_messages);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let queue = Arc::new(LinkQueue {
            peer,
            data: data_tx,
            control: control_tx,
            state: AtomicU8::new(LinkState::Connecting as u8),
            dropped: AtomicU64::new(0),
            dropped_pairs: Mutex::default(),
            has_dropped: AtomicBool::new(false),
            link_up: metrics::gauge!("hpfriends_peer_link_up", "peer" => peer.to_string()),
            sent_messages: metrics::counter!("hpfriends_fanout_messages_total", "peer" => peer.to_string()),
            sent_bytes: metrics::counter!("hpfriends_fanout_bytes_total", "peer" => peer.to_string()),
            dropped_messages: metrics::counter!("hpfriends_fanout_dropped_total", "peer" => peer.to_string()),
        });
        self.modify_links(|links| {
            links.insert(peer, queue.clone());
        });
        (queue, LinkReceivers { data: data_rx, control: control_rx })
    }

    pub fn remove_link(&self, peer: NodeId) {
        self.modify_links(|links| {
            links.remove(&peer);
        });
    }

    /// True when every outbound link to a reachable peer has replayed this
    /// node's interest.
    pub fn links_ready(&self) -> bool {
        self.links.load().values().all(|l| l.state() != LinkState::Connecting)
    }

    /// Peers whose link is down right now.
    pub fn unreachable_peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> =
            self.links.load().values().filter(|l| l.state() == LinkState::Unreachable).map(|l| l.peer).collect();
        peers.sort_unstable();
        peers
    }

    /// Publishes queued on every link, not yet taken by a link task.
    pub fn queued(&self) -> usize {
        self.links.load().values().map(|l| l.data.max_capacity() - l.data.capacity()).sum()
    }

    /// Resolves once every link queue is empty.
    pub async fn flushed(&self) {
        while self.queued() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn link_count(&self) -> usize {
        self.links.load().len()
    }

    /// A peer replayed its whole interest set (a new or re-opened stream).
    pub fn set_peer_interest(&self, peer: NodeId, entries: Vec<Interest>, accepts_packed: bool) {
        let mut interest = PeerInterest { channels: LookupMap::default(), accepts_packed };
        for e in entries.into_iter().filter(|e| e.subscribed) {
            let owners = interest.channels.entry(e.channel).or_default();
            if !owners.contains(&e.owner) {
                owners.push(e.owner);
            }
        }
        self.modify_peers(|peers| {
            peers.insert(peer, Arc::new(interest));
        });
    }

    pub fn apply_peer_interest(&self, peer: NodeId, change: Interest) {
        self.modify_peers(|peers| {
            let mut interest = peers.get(&peer).map(|i| PeerInterest::clone(i)).unwrap_or_default();
            let owners = interest.channels.entry(change.channel.clone()).or_default();
            owners.retain(|o| *o != change.owner);
            if change.subscribed {
                owners.push(change.owner);
            }
            if owners.is_empty() {
                interest.channels.remove(&change.channel);
            }
            peers.insert(peer, Arc::new(interest));
        });
    }

    /// Whether `peer`'s last replay said it takes packed publishes.
    pub fn accepts_packed(&self, peer: NodeId) -> bool {
        self.peer_interest.load().get(&peer).is_some_and(|p| p.accepts_packed)
    }

    /// The peer's stream ended: it replays everything when it comes back.
    pub fn forget_peer(&self, peer: NodeId) {
        self.modify_peers(|peers| {
            peers.remove(&peer);
        });
    }

    fn modify_links(&self, f: impl FnOnce(&mut LookupMap<NodeId, Arc<LinkQueue>>)) {
        let _guard = self.write.lock().expect("fanout lock poisoned");
        let mut links = LookupMap::clone(&self.links.load());
        f(&mut links);
        self.links.store(Arc::new(links));
    }

    fn modify_peers(&self, f: impl FnOnce(&mut LookupMap<NodeId, Arc<PeerInterest>>)) {
        let _guard = self.write.lock().expect("fanout lock poisoned");
        let mut peers = LookupMap::clone(&self.peer_interest.load());
        f(&mut peers);
        self.peer_interest.store(Arc::new(peers));
    }
}
