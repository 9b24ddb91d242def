//! What peers want from this node, and the queues to them.
//!
//! Peers announce the (channel, owner) pairs their local clients subscribe to;
//! a publish is sent once to each peer with a pair that may read it. Per-peer
//! queues are bounded in messages: overflow drops and counts, it never stalls
//! the publisher. A queue holds publishes as the messages that will carry
//! them ([`Chunk`]), so the link task takes many at once. Interest changes
//! travel on a separate queue and are never dropped.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hpfriends_consensus::NodeId;
use hpfriends_graph::{may_read, LookupMap, Readers, UserId};
use tokio::sync::{mpsc, Notify};

use super::proto::fanout::Interest;
use super::runs::{Chunk, MAX_CHUNK_BYTES};
use crate::protocol::PublishFrame;
use crate::telemetry;

/// The sending side of one outbound link.
pub struct LinkQueue {
    pub peer: NodeId,
    max_messages: usize,
    pending: Mutex<Pending>,
    /// Wakes the link task when the queue turns non-empty.
    ready: Notify,
    /// The peer just connected to this node: it is back, so a link waiting
    /// out its reconnect backoff tries again at once.
    pub peer_is_back: Notify,
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

#[derive(Default)]
struct Pending {
    chunks: VecDeque<Chunk>,
    messages: usize,
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
    /// Queues a publish for the peer, or drops and counts it when the queue is full.
    fn push(&self, owner: UserId, publish: &PublishFrame) {
        let mut pending = self.pending.lock().expect("link queue lock");
        if pending.messages >= self.max_messages {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_messages.increment(1);
            self.dropped_pairs.lock().expect("dropped pairs lock").insert((publish.channel_bytes(), owner));
            self.has_dropped.store(true, Ordering::Release);
            return;
        }
        let was_empty = pending.messages == 0;
        let len = publish.raw().len();
        match pending.chunks.back_mut() {
            Some(chunk) if chunk.bytes() + len <= MAX_CHUNK_BYTES => chunk.push(owner, publish),
            _ => {
                let mut chunk = Chunk::with_capacity(MAX_CHUNK_BYTES.max(len));
                chunk.push(owner, publish);
                pending.chunks.push_back(chunk);
            }
        }
        pending.messages += 1;
        drop(pending);
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// The oldest queued chunk, once there is one. Cancel-safe: a chunk is
    /// only taken when this returns it.
    pub async fn next_chunk(&self) -> Chunk {
        loop {
            if let Some(chunk) = self.take_chunk() {
                return chunk;
            }
            // A push between the check and here leaves a permit: no wake-up is lost.
            self.ready.notified().await;
        }
    }

    fn take_chunk(&self) -> Option<Chunk> {
        let mut pending = self.pending.lock().expect("link queue lock");
        let chunk = pending.chunks.pop_front()?;
        pending.messages -= chunk.messages();
        Some(chunk)
    }

    /// Publishes queued and not yet taken by the link task.
    pub fn queued(&self) -> usize {
        self.pending.lock().expect("link queue lock").messages
    }

    /// The link task took these publishes from the queue to send them
    /// (counted per chunk, not per publish on the publish path).
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

/// What a peer announced: the pairs its clients subscribe as.
#[derive(Clone, Default)]
struct PeerInterest {
    channels: LookupMap<Bytes, Vec<UserId>>,
    /// The inbound stream that announced it.
    stream: u64,
}

/// One inbound stream from a peer. The newest stream's replay owns the peer's
/// interest; an older stream's changes and close leave it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundLink {
    pub peer: NodeId,
    stream: u64,
}

/// A peer `forward` may send to: it has a link and announced its interest.
struct Route {
    interest: Arc<PeerInterest>,
    link: Arc<LinkQueue>,
}

#[derive(Default)]
struct PeerTable {
    links: LookupMap<NodeId, Arc<LinkQueue>>,
    interest: LookupMap<NodeId, Arc<PeerInterest>>,
}

pub struct Peers {
    /// Publishes waiting for one peer link, at most.
    queue_messages: usize,
    /// What the publish path reads (one load per publish), rebuilt from
    /// `peers` on every change.
    routes: ArcSwap<Vec<Route>>,
    peers: Mutex<PeerTable>,
    /// Inbound streams opened so far.
    streams: AtomicU64,
}

impl Peers {
    pub fn new(queue_messages: usize) -> Peers {
        Peers { queue_messages, routes: ArcSwap::default(), peers: Mutex::default(), streams: AtomicU64::new(0) }
    }

    /// Queues `publish` for every peer that has a subscriber allowed to read it.
    pub fn forward(&self, owner: UserId, publish: &PublishFrame, readers: Option<&Readers>) {
        let routes = self.routes.load();
        for route in routes.iter() {
            let Some(owners) = route.interest.channels.get(publish.channel()) else { continue };
            if owners.iter().any(|o| may_read(owner, *o, readers)) {
                route.link.push(owner, publish);
            }
        }
    }

    /// A local (channel, owner) pair appeared or disappeared: tell every peer.
    pub fn local_interest_changed(&self, channel: &Bytes, owner: UserId, subscribed: bool) {
        for link in self.peers().links.values() {
            let _ = link.control.send(Interest { channel: channel.clone(), owner, subscribed });
        }
    }

    /// Creates the queues of a new outbound link to `peer`; the receiver
    /// carries interest changes.
    pub fn add_link(&self, peer: NodeId) -> (Arc<LinkQueue>, mpsc::UnboundedReceiver<Interest>) {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let queue = Arc::new(LinkQueue {
            peer,
            max_messages: self.queue_messages,
            pending: Mutex::default(),
            ready: Notify::new(),
            peer_is_back: Notify::new(),
            control: control_tx,
            state: AtomicU8::new(LinkState::Connecting as u8),
            dropped: AtomicU64::new(0),
            dropped_pairs: Mutex::default(),
            has_dropped: AtomicBool::new(false),
            link_up: metrics::gauge!(telemetry::PEER_LINK_UP.name, "peer" => peer.to_string()),
            sent_messages: metrics::counter!(telemetry::FANOUT_MESSAGES.name, "peer" => peer.to_string()),
            sent_bytes: metrics::counter!(telemetry::FANOUT_BYTES.name, "peer" => peer.to_string()),
            dropped_messages: metrics::counter!(telemetry::FANOUT_DROPPED.name, "peer" => peer.to_string()),
        });
        self.modify(|peers| {
            peers.links.insert(peer, queue.clone());
        });
        (queue, control_rx)
    }

    pub fn remove_link(&self, peer: NodeId) {
        self.modify(|peers| {
            peers.links.remove(&peer);
        });
    }

    /// True when, for every peer that is reachable, both directions carry
    /// interest: this node's replay went out on its link, and the peer's
    /// replay came in on the peer's stream. Until then a publish here could
    /// miss a subscriber there (the peer's link may still be in its backoff).
    pub fn links_ready(&self) -> bool {
        let peers = self.peers();
        peers.links.iter().all(|(id, l)| match l.state() {
            LinkState::Connecting => false,
            LinkState::Unreachable => true,
            LinkState::Replayed => peers.interest.contains_key(id),
        })
    }

    /// A peer opened a stream to this node: wake this node's link to it.
    pub fn peer_connected(&self, peer: NodeId) {
        if let Some(link) = self.peers().links.get(&peer) {
            link.peer_is_back.notify_one();
        }
    }

    /// Reachable peers whose interest replay has not arrived yet.
    pub fn awaiting_replay_from(&self) -> Vec<NodeId> {
        let peers = self.peers();
        let mut waiting: Vec<NodeId> = peers
            .links
            .iter()
            .filter(|(id, l)| l.state() == LinkState::Replayed && !peers.interest.contains_key(*id))
            .map(|(id, _)| *id)
            .collect();
        waiting.sort_unstable();
        waiting
    }

    /// Peers whose link is down right now.
    pub fn unreachable_peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> =
            self.peers().links.values().filter(|l| l.state() == LinkState::Unreachable).map(|l| l.peer).collect();
        peers.sort_unstable();
        peers
    }

    /// Publishes queued on every link, not yet taken by a link task.
    pub fn queued(&self) -> usize {
        self.peers().links.values().map(|l| l.queued()).sum()
    }

    /// Resolves once every link queue is empty.
    pub async fn flushed(&self) {
        while self.queued() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A peer opened a stream to this node.
    pub fn open_inbound(&self, peer: NodeId) -> InboundLink {
        InboundLink { peer, stream: self.streams.fetch_add(1, Ordering::Relaxed) + 1 }
    }

    /// A peer replayed its whole interest set on `link`, which now owns it.
    pub fn set_peer_interest(&self, link: InboundLink, entries: Vec<Interest>) {
        let mut interest = PeerInterest { channels: LookupMap::default(), stream: link.stream };
        for e in entries.into_iter().filter(|e| e.subscribed) {
            let owners = interest.channels.entry(e.channel).or_default();
            if !owners.contains(&e.owner) {
                owners.push(e.owner);
            }
        }
        self.modify(|peers| {
            if peers.interest.get(&link.peer).is_none_or(|i| i.stream <= link.stream) {
                peers.interest.insert(link.peer, Arc::new(interest));
            }
        });
    }

    /// A change after the replay; ignored unless `link` owns the peer's interest.
    pub fn apply_peer_interest(&self, link: InboundLink, change: Interest) {
        self.modify(|peers| {
            let Some(current) = peers.interest.get(&link.peer).filter(|i| i.stream == link.stream) else { return };
            let mut interest = PeerInterest::clone(current);
            let owners = interest.channels.entry(change.channel.clone()).or_default();
            owners.retain(|o| *o != change.owner);
            if change.subscribed {
                owners.push(change.owner);
            }
            if owners.is_empty() {
                interest.channels.remove(&change.channel);
            }
            peers.interest.insert(link.peer, Arc::new(interest));
        });
    }

    /// The stream ended: the peer replays everything when it comes back. A
    /// newer stream's interest stays.
    pub fn forget_peer(&self, link: InboundLink) {
        self.modify(|peers| {
            if peers.interest.get(&link.peer).is_some_and(|i| i.stream == link.stream) {
                peers.interest.remove(&link.peer);
            }
        });
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, PeerTable> {
        self.peers.lock().expect("peers lock poisoned")
    }

    fn modify(&self, f: impl FnOnce(&mut PeerTable)) {
        let mut peers = self.peers();
        f(&mut peers);
        let routes = peers
            .interest
            .iter()
            .filter_map(|(id, interest)| {
                let link = peers.links.get(id)?;
                Some(Route { interest: interest.clone(), link: link.clone() })
            })
            .collect();
        self.routes.store(Arc::new(routes));
    }
}

#[cfg(test)]
mod tests {
    use hpfriends_graph::synthetic::Fixture;
    use hpfriends_graph::SharingIndex;

    use super::*;

    const QUEUE: usize = 100;

    /// jojo shares channel c with mark: (index, jojo, mark).
    fn jojo_shares_with_mark() -> (SharingIndex, UserId, UserId) {
        let g = Fixture::new().users(&["jojo", "mark"]).share("jojo", "mark", "c").graph();
        (SharingIndex::build(&g), g.user_id("jojo").unwrap(), g.user_id("mark").unwrap())
    }

    #[test]
    fn given_full_link_queue_then_dropped_pairs_are_reported_once() {
        let (index, jojo, mark) = jojo_shares_with_mark();
        let peers = Peers::new(QUEUE);
        let (queue, _control) = peers.add_link(2);
        let link = peers.open_inbound(2);
        peers.set_peer_interest(link, vec![Interest { channel: "c".into(), owner: mark, subscribed: true }]);
        let readers = index.readers(jojo, "c");
        let publish = PublishFrame::new(b"jojo-key", b"c", b"payload");
        for _ in 0..QUEUE {
            peers.forward(jojo, &publish, readers);
        }
        assert!(queue.take_dropped().is_empty(), "a full queue has dropped nothing yet");
        peers.forward(jojo, &publish, readers);
        peers.forward(jojo, &publish, readers);
        assert_eq!(queue.take_dropped(), vec![(Bytes::from_static(b"c"), jojo)]);
        assert!(queue.take_dropped().is_empty(), "reported once");
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn given_a_second_stream_for_a_peer_then_the_older_ones_changes_and_close_leave_its_interest_alone() {
        let (index, jojo, mark) = jojo_shares_with_mark();
        let peers = Peers::new(QUEUE);
        let (queue, _control) = peers.add_link(2);
        let marks = || vec![Interest { channel: "c".into(), owner: mark, subscribed: true }];
        let older = peers.open_inbound(2);
        peers.set_peer_interest(older, marks());
        let newer = peers.open_inbound(2);
        peers.set_peer_interest(newer, marks());
        peers.set_peer_interest(older, vec![]);
        peers.apply_peer_interest(older, Interest { channel: "c".into(), owner: mark, subscribed: false });
        peers.forget_peer(older);
        peers.forward(jojo, &PublishFrame::new(b"jojo-key", b"c", b"x"), index.readers(jojo, "c"));
        assert_eq!(queue.queued(), 1, "the newest replay's interest still routes to the peer");
    }

    #[tokio::test]
    async fn given_more_than_a_chunk_then_the_link_task_takes_them_in_order_in_bounded_chunks() {
        let peers = Peers::new(100_000);
        let (queue, _control) = peers.add_link(2);
        let payload = vec![b'x'; 1000];
        let total = 2 * MAX_CHUNK_BYTES / 1000;
        for i in 0..total {
            let publish = PublishFrame::new(b"ident", format!("c{}", i % 2).as_bytes(), &payload);
            queue.push(1, &publish);
        }
        assert_eq!(queue.queued(), total);
        let (mut taken, mut chunks) = (Vec::new(), 0);
        while taken.len() < total {
            let chunk = queue.next_chunk().await;
            assert!(chunk.bytes() <= MAX_CHUNK_BYTES, "a chunk stops growing at its bound");
            chunks += 1;
            super::super::runs::for_each_run(chunk.into_runs(), |_, channel, _, count| {
                taken.extend(std::iter::repeat_n(channel.to_vec(), count))
            })
            .unwrap();
        }
        assert!(chunks >= 2);
        assert!(taken.iter().enumerate().all(|(i, c)| c[..] == *format!("c{}", i % 2).as_bytes()));
        assert_eq!(queue.queued(), 0);
    }
}
