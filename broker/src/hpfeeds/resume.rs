//! Resume keys (docs/protocol.md, "Resume"). Their subscriptions are served
//! from the archive instead of the live path: a session reads each channel's
//! messages per publishing node in order, as fast as its client takes them,
//! and notes where each frame ends in the byte stream. Where the client's
//! TCP stack stopped acknowledging (bytes sent minus SIOCOUTQ) is the
//! subscription's place: written to the graph when the connection ends and
//! every `CHECKPOINT` while it lasts, and read by the key's next connection
//! on any node.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hpfriends_consensus::ConsensusNode;
use hpfriends_graph::resume::{Marks, ResumePosition};
use hpfriends_graph::{Actor, Command, UserId};
use tokio_util::sync::CancellationToken;

use super::outbound::{Outbound, SentCounter};
use super::socket::unacknowledged;
use crate::archive::{Archive, MayRead, Record};
use crate::protocol::frame::encode_publish;
use crate::telemetry;

/// How often a connected session's places are written, when they moved.
/// A node that dies sends again at most this much of what its clients had.
pub const CHECKPOINT: Duration = Duration::from_secs(2);
/// Messages read from the archive per look, at most.
const SCAN_MESSAGES: usize = 1024;
/// A session that has this much queued for its client (or a quarter of
/// `max_outbound_bytes`, if less) waits before queueing more: its memory is
/// bounded like a slow consumer's, and it is never closed as one.
const AHEAD_BYTES: usize = 1024 * 1024;
/// Ledger entries that make a session ask the kernel what was acknowledged.
const LEDGER_COMPACT: usize = 8192;
/// A session with nothing to send looks again at least this often.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// The node's resume sessions' shared parts: the archive they read, the
/// graph their places go to, and the places not written yet.
pub struct Resumes {
    archive: Arc<Archive>,
    node: Arc<ConsensusNode>,
    max_messages: u64,
    max_bytes: u64,
    /// The newest place of each (ident, channel) not written yet.
    pending: Mutex<HashMap<(String, String), ResumePosition>>,
    /// Channels sessions serve now (`hpfeeds_broker_subscriptions` counts them).
    subscribed: std::sync::atomic::AtomicUsize,
    wake: tokio::sync::Notify,
}

impl Resumes {
    pub fn new(archive: Arc<Archive>, node: Arc<ConsensusNode>, max_messages: u64, max_bytes: u64) -> Arc<Self> {
        Arc::new(Resumes {
            archive,
            node,
            max_messages,
            max_bytes,
            pending: Mutex::default(),
            subscribed: Default::default(),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Channels resume sessions serve now.
    pub fn subscriptions(&self) -> usize {
        self.subscribed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, more: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if more {
            self.subscribed.fetch_add(1, Relaxed);
        } else {
            self.subscribed.fetch_sub(1, Relaxed);
        }
    }

    /// Starts a session for a connection of a resume key. `written` is what
    /// the connection had queued before it (its INFO).
    pub fn session(
        self: &Arc<Self>,
        key: SessionKey,
        out: Outbound,
        socket: Socket,
        written: u64,
        views: tokio::sync::watch::Receiver<u64>,
    ) -> Session {
        let state = Arc::new(Mutex::new(State { channels: BTreeMap::new(), ledger: VecDeque::new(), offset: written }));
        let stop = CancellationToken::new();
        let added = Arc::new(tokio::sync::Notify::new());
        let run = Run {
            resumes: self.clone(),
            key: key.clone(),
            sent: out.sent_counter(),
            out: out.clone(),
            socket,
            state: state.clone(),
            added: added.clone(),
        };
        let task = tokio::spawn(run.run(stop.clone(), views));
        let sent = out.sent_counter();
        Session { resumes: self.clone(), key, out: Some(out), sent, socket, state, stop, added, task: Some(task) }
    }

    /// Keeps the places to be written with the next write.
    fn put(&self, places: Vec<ResumePosition>) {
        if places.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().expect("resume places lock poisoned");
        for p in places {
            pending.insert((p.ident.clone(), p.channel.clone()), p);
        }
    }

    /// Writes the places sessions leave, at once when a connection ends and
    /// otherwise each `CHECKPOINT`, until `stop`; then once more.
    pub async fn write_places(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = self.wake.notified() => false,
                _ = tokio::time::sleep(CHECKPOINT) => false,
            };
            self.write_pending().await;
            if stopping {
                return;
            }
        }
    }

    /// Writes what is pending now; what cannot be written stays for the next time.
    pub async fn write_pending(&self) {
        let taken: Vec<ResumePosition> =
            self.pending.lock().expect("resume places lock poisoned").drain().map(|(_, p)| p).collect();
        if taken.is_empty() {
            return;
        }
        let command = Command::SetResumePositions { positions: taken.clone() };
        let written = self.node.write(Actor::Operator, command).await;
        if written.is_ok() {
            metrics::counter!(telemetry::RESUME_PLACES_WRITTEN.name).increment(taken.len() as u64);
        }
        if let Err(e) = written {
            tracing::warn!("resume places not written ({} of them), trying again: {e}", taken.len());
            let mut pending = self.pending.lock().expect("resume places lock poisoned");
            for p in taken {
                pending.entry((p.ident.clone(), p.channel.clone())).or_insert(p);
            }
        }
    }

    /// Where a subscription starts: the key's place, if it has one (skipping
    /// the oldest past `resume_max_*`), else what the archive holds now.
    async fn start(&self, key: &SessionKey, channel: &str) -> Marks {
        let held: Marks = self.archive.marks().into_iter().collect();
        let place = self.node.read_graph(|g| g.resume_position(&key.ident, key.owner, channel).cloned());
        let Some(place) = place else { return held };
        let (archive, channel, (max_messages, max_bytes)) =
            (self.archive.clone(), channel.to_string(), (self.max_messages, self.max_bytes));
        let bounded = tokio::task::spawn_blocking(move || {
            newest_within(&archive, &place, &held, &channel, max_messages, max_bytes)
        });
        match bounded.await {
            Ok(Ok((marks, skipped))) => {
                if skipped > 0 {
                    metrics::counter!(telemetry::RESUME_SKIPPED.name).increment(skipped);
                    tracing::info!(
                        skipped,
                        "resume: more was missed than resume_max_messages/bytes; the oldest skipped"
                    );
                }
                marks
            }
            Ok(Err(e)) => {
                tracing::error!("resume: cannot read the archive: {e}");
                self.archive.marks().into_iter().collect()
            }
            Err(_) => self.archive.marks().into_iter().collect(),
        }
    }
}

/// From `place`, the marks that leave at most `max_messages` and `max_bytes`
/// of `channel` to send (the newest), and how many are skipped.
fn newest_within(
    archive: &Archive,
    place: &Marks,
    held: &Marks,
    channel: &str,
    max_messages: u64,
    max_bytes: u64,
) -> anyhow::Result<(Marks, u64)> {
    let from = |node: &u64| place.get(node).copied().unwrap_or(0);
    let mut chunks = Vec::new();
    let nodes: std::collections::BTreeSet<u64> = place.keys().chain(held.keys()).copied().collect();
    for node in nodes {
        chunks.extend(archive.origin_summary(node, from(&node), channel.as_bytes())?.into_iter().map(|c| (node, c)));
    }
    let total: u64 = chunks.iter().map(|(_, c)| c.count as u64).sum();
    let bytes: u64 = chunks.iter().map(|(_, c)| c.bytes).sum();
    if total <= max_messages && bytes <= max_bytes {
        return Ok((place.clone(), 0));
    }
    // Newest first, whole chunks while they fit, then the newest messages of the next.
    chunks.sort_by_key(|(node, c)| std::cmp::Reverse((c.time_us, *node, c.first_seq)));
    let mut marks: Marks = held.iter().map(|(node, held)| (*node, (*held).max(from(node)))).collect();
    let (mut kept, mut kept_bytes) = (0u64, 0u64);
    for (node, c) in &chunks {
        if kept + c.count as u64 <= max_messages && kept_bytes + c.bytes <= max_bytes {
            kept += c.count as u64;
            kept_bytes += c.bytes;
            let m = marks.entry(*node).or_insert(u64::MAX);
            *m = (*m).min(c.first_seq.max(from(node)));
            continue;
        }
        let scanned = archive.scan_origin(
            *node,
            c.first_seq.max(from(node)),
            Some(channel.as_bytes()),
            c.count as usize,
            usize::MAX,
        )?;
        let mut start = None;
        for m in scanned.messages.iter().rev().filter(|m| m.id.seq <= c.last_seq) {
            let size = m.size();
            if kept + 1 > max_messages || kept_bytes + size > max_bytes {
                break;
            }
            kept += 1;
            kept_bytes += size;
            start = Some(m.id.seq);
        }
        if let Some(seq) = start {
            let m = marks.entry(*node).or_insert(seq);
            *m = (*m).min(seq);
        }
        break;
    }
    Ok((marks, total.saturating_sub(kept)))
}

/// The key a session serves.
#[derive(Debug, Clone)]
pub struct SessionKey {
    pub ident: String,
    pub owner: UserId,
    /// The owner's name: the graph answers who may read what by name.
    pub owner_name: String,
}

/// The client's socket, asked how much it has acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Socket {
    pub fd: RawFd,
    pub encrypted: bool,
}

impl Socket {
    /// Bytes of the stream the client has acknowledged, at least (over TLS the
    /// unacknowledged records are larger than what they carry: fewer counted).
    fn acknowledged(&self, sent: &SentCounter) -> Option<u64> {
        let sent = sent.bytes(self.encrypted);
        Some(sent.saturating_sub(unacknowledged(self.fd)?))
    }

    /// Bytes written and not yet acknowledged.
    pub fn unacknowledged(&self) -> Option<u64> {
        unacknowledged(self.fd)
    }
}

/// One frame queued for the client, not known to be acknowledged.
struct Sent {
    /// Where it ends in the connection's byte stream.
    end: u64,
    channel: Arc<str>,
    node: u64,
    seq: u64,
}

/// One channel the connection subscribed to.
struct Channel {
    name: Arc<str>,
    /// Unsubscribed channels are not read, but keep their place: the
    /// frames already queued may still arrive.
    subscribed: bool,
    /// Per publishing node, the next number to read.
    at: Marks,
    /// The place last handed to be written.
    reported: Option<Marks>,
}

struct State {
    channels: BTreeMap<Arc<str>, Channel>,
    ledger: VecDeque<Sent>,
    /// Bytes queued for the connection so far.
    offset: u64,
}

impl State {
    /// Forgets frames acknowledged up to `acked`.
    fn acknowledged(&mut self, acked: u64) {
        while self.ledger.front().is_some_and(|s| s.end <= acked) {
            self.ledger.pop_front();
        }
    }

    /// Each channel's place once the frames up to `acked` arrived: per node,
    /// the first frame not acknowledged, or where reading had reached.
    fn places(&mut self, acked: u64) -> BTreeMap<Arc<str>, Marks> {
        self.acknowledged(acked);
        let mut places: BTreeMap<Arc<str>, Marks> =
            self.channels.iter().map(|(name, c)| (name.clone(), c.at.clone())).collect();
        for s in &self.ledger {
            if let Some(marks) = places.get_mut(&s.channel) {
                let m = marks.entry(s.node).or_insert(s.seq);
                *m = (*m).min(s.seq);
            }
        }
        places
    }
}

/// A connection's resume subscriptions.
pub struct Session {
    resumes: Arc<Resumes>,
    key: SessionKey,
    /// Until the session stops: the connection's queue closes only once
    /// nothing holds it.
    out: Option<Outbound>,
    sent: SentCounter,
    socket: Socket,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    added: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    /// Serves `channel` from the key's place in it.
    pub async fn subscribe(&self, channel: &str) {
        let known = self.state.lock().expect("resume state lock poisoned").channels.get(channel).map(|c| c.at.clone());
        let at = match known {
            // Subscribed again: on from its place in this connection.
            Some(at) => at,
            None => self.resumes.start(&self.key, channel).await,
        };
        let name: Arc<str> = channel.into();
        let mut state = self.state.lock().expect("resume state lock poisoned");
        let c = state.channels.entry(name.clone()).or_insert(Channel { name, subscribed: false, at, reported: None });
        if !c.subscribed {
            c.subscribed = true;
            self.resumes.count(true);
        }
        drop(state);
        self.added.notify_one();
    }

    /// Stops serving `channel`, keeping its place. `error`, if given: the key
    /// no longer allows it; the place goes and the ERROR is queued in order
    /// with the session's frames.
    pub fn unsubscribe(&self, channel: &str, error: Option<Bytes>) {
        let mut state = self.state.lock().expect("resume state lock poisoned");
        let was = state.channels.get_mut(channel).map(|c| std::mem::replace(&mut c.subscribed, false));
        if was == Some(true) {
            self.resumes.count(false);
        }
        if error.is_none() {
            return;
        }
        state.channels.remove(channel);
        state.ledger.retain(|s| &*s.channel != channel);
        if let (Some(frame), Some(out)) = (error, &self.out) {
            let len = frame.len() as u64;
            if out.push(frame) {
                state.offset += len;
            }
        }
    }

    /// Stops queueing for the client (before its last frames are queued).
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
            let state = self.state.lock().expect("resume state lock poisoned");
            for _ in state.channels.values().filter(|c| c.subscribed) {
                self.resumes.count(false);
            }
        }
        self.out = None;
    }

    /// Ends the session once its connection ended and its writer stopped:
    /// hands each channel's place to be written at once. `drained`: the
    /// node is stopping, so the client may still be reading what was sent:
    /// wait a little for it to acknowledge.
    pub async fn finish(mut self, drained: bool) {
        self.stop().await;
        if drained {
            let deadline = tokio::time::Instant::now() + super::writer::FINAL_FLUSH_TIMEOUT;
            while self.socket.unacknowledged().is_some_and(|n| n > 0) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let Some(acked) = self.socket.acknowledged(&self.sent) else { return };
        let places = report(&self.key, &mut self.state.lock().expect("resume state lock poisoned"), acked, true);
        self.resumes.put(places);
        self.resumes.wake.notify_one();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The places that moved since last reported (all of them when `all`).
fn report(key: &SessionKey, state: &mut State, acked: u64, all: bool) -> Vec<ResumePosition> {
    let places = state.places(acked);
    let mut out = Vec::new();
    for (name, marks) in places {
        let Some(c) = state.channels.get_mut(&name) else { continue };
        if !all && c.reported.as_ref() == Some(&marks) {
            continue;
        }
        c.reported = Some(marks.clone());
        out.push(ResumePosition { ident: key.ident.clone(), owner: key.owner, channel: name.to_string(), marks });
    }
    out
}

/// A session's task.
struct Run {
    resumes: Arc<Resumes>,
    key: SessionKey,
    out: Outbound,
    sent: SentCounter,
    socket: Socket,
    state: Arc<Mutex<State>>,
    added: Arc<tokio::sync::Notify>,
}

impl Run {
    async fn run(self, stop: CancellationToken, mut views: tokio::sync::watch::Receiver<u64>) {
        let mut written = self.resumes.archive.watch_written();
        let mut readers: HashMap<Arc<str>, Option<MayRead>> = HashMap::new();
        let mut checkpoint = tokio::time::Instant::now() + CHECKPOINT;
        let ahead = AHEAD_BYTES.min(self.out.capacity() / 4);
        loop {
            if views.has_changed().unwrap_or(false) {
                views.mark_unchanged();
                readers.clear();
            }
            let held = self.resumes.archive.marks();
            let work: Vec<(Arc<str>, u64, u64)> = {
                let state = self.state.lock().expect("resume state lock poisoned");
                let mut work = Vec::new();
                for c in state.channels.values().filter(|c| c.subscribed) {
                    for (&node, &mark) in &held {
                        let from = c.at.get(&node).copied().unwrap_or(0);
                        if from < mark {
                            work.push((c.name.clone(), node, from));
                        }
                    }
                }
                work
            };
            let mut moved = false;
            for (channel, node, from) in work {
                let may = readers.entry(channel.clone()).or_insert_with(|| {
                    self.resumes.node.read_graph(|g| MayRead::of(g, &self.key.owner_name, &channel))
                });
                let may = may.clone();
                let (archive, name) = (self.resumes.archive.clone(), channel.clone());
                let scan = tokio::task::spawn_blocking(move || {
                    archive.scan_origin(node, from, Some(name.as_bytes()), SCAN_MESSAGES, ahead)
                });
                let scanned = match scan.await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::error!("resume: cannot read the archive: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                // Nothing from `from` on: what was below the mark expired or was never kept.
                let next = if scanned.messages.is_empty() { scanned.next.max(held[&node]) } else { scanned.next };
                moved |= next > from;
                let now = crate::archive::now_us();
                for m in scanned.messages {
                    let Some(m) = may.as_ref().and_then(|r| r.admit(m, now)) else { continue };
                    if self.out.queued_bytes() > ahead {
                        tokio::select! {
                            _ = self.out.wait_below(ahead / 2) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                    if stop.is_cancelled() || !self.queue(&channel, node, from, &m) {
                        return;
                    }
                }
                let mut state = self.state.lock().expect("resume state lock poisoned");
                if let Some(c) = state.channels.get_mut(&channel).filter(|c| c.subscribed) {
                    if c.at.get(&node).copied().unwrap_or(0) >= from {
                        let at = c.at.entry(node).or_insert(0);
                        *at = (*at).max(next);
                    }
                }
            }
            let due = tokio::time::Instant::now() >= checkpoint;
            if due || self.state.lock().expect("resume state lock poisoned").ledger.len() > LEDGER_COMPACT {
                if let Some(acked) = self.socket.acknowledged(&self.sent) {
                    let mut state = self.state.lock().expect("resume state lock poisoned");
                    state.acknowledged(acked);
                    if due {
                        let places = report(&self.key, &mut state, acked, false);
                        drop(state);
                        self.resumes.put(places);
                    }
                }
                if due {
                    checkpoint = tokio::time::Instant::now() + CHECKPOINT;
                }
            }
            if !moved {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = written.changed() => {}
                    _ = views.changed() => readers.clear(),
                    _ = self.added.notified() => {}
                    _ = tokio::time::sleep_until(checkpoint.min(tokio::time::Instant::now() + IDLE_LOOK)) => {}
                }
            }
        }
    }

    /// Queues one message for the client and notes where it ends; false
    /// once the connection is closing. A channel unsubscribed meanwhile, or
    /// read from another place, is skipped.
    fn queue(&self, channel: &Arc<str>, node: u64, from: u64, m: &crate::archive::Message) -> bool {
        let mut state = self.state.lock().expect("resume state lock poisoned");
        let Some(c) = state.channels.get_mut(channel).filter(|c| c.subscribed) else { return true };
        let at = c.at.entry(node).or_insert(0);
        if *at < from || *at > m.id.seq {
            return true;
        }
        *at = m.id.seq + 1;
        let frame = encode_publish(&m.ident, &m.channel, &m.payload);
        let len = frame.len() as u64;
        if !self.out.deliver(frame, 1) {
            return false;
        }
        state.offset += len;
        let end = state.offset;
        state.ledger.push_back(Sent { end, channel: channel.clone(), node, seq: m.id.seq });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(channels: &[(&str, &[(u64, u64)])]) -> State {
        let channels = channels
            .iter()
            .map(|(name, at)| {
                let name: Arc<str> = (*name).into();
                (name.clone(), Channel { name, subscribed: true, at: at.iter().copied().collect(), reported: None })
            })
            .collect();
        State { channels, ledger: VecDeque::new(), offset: 10 }
    }

    fn sent(s: &mut State, channel: &str, node: u64, seq: u64, len: u64) {
        s.offset += len;
        s.ledger.push_back(Sent { end: s.offset, channel: channel.into(), node, seq });
    }

    #[test]
    fn given_frames_partly_acknowledged_then_each_channel_resumes_at_the_first_unacknowledged_per_node() {
        let mut s = state(&[("a", &[(1, 9), (2, 4)]), ("b", &[(1, 9)])]);
        // The stream: INFO (10 bytes), then a/1#3 a/2#1 b/1#5 a/1#7 b/1#8, 100 bytes each.
        for (c, node, seq) in [("a", 1, 3), ("a", 2, 1), ("b", 1, 5), ("a", 1, 7), ("b", 1, 8)] {
            sent(&mut s, c, node, seq, 100);
        }
        // Acknowledged: INFO, the first two frames and half of the third.
        let places = s.places(10 + 250);
        assert_eq!(places[&Arc::from("a")], Marks::from([(1, 7), (2, 4)]), "a/1#7 is owed; node 2's frame arrived");
        assert_eq!(places[&Arc::from("b")], Marks::from([(1, 5)]), "b/1#5 was cut off: sent again");
        assert_eq!(s.ledger.len(), 3, "the two acknowledged frames are forgotten");
        // Everything acknowledged: where reading had reached.
        let places = s.places(10 + 500);
        assert_eq!(places[&Arc::from("a")], Marks::from([(1, 9), (2, 4)]));
        assert_eq!(places[&Arc::from("b")], Marks::from([(1, 9)]));
        assert!(s.ledger.is_empty());
    }

    #[test]
    fn given_places_reported_then_only_moved_ones_are_reported_again() {
        let key = SessionKey { ident: "k".into(), owner: 3, owner_name: "ann".into() };
        let mut s = state(&[("a", &[(1, 2)]), ("b", &[(1, 5)])]);
        assert_eq!(report(&key, &mut s, 10, false).len(), 2);
        assert!(report(&key, &mut s, 10, false).is_empty());
        s.channels.get_mut("a").unwrap().at.insert(1, 3);
        let moved = report(&key, &mut s, 10, false);
        assert_eq!(moved.len(), 1);
        assert_eq!((moved[0].channel.as_str(), moved[0].owner), ("a", 3));
        assert_eq!(report(&key, &mut s, 10, true).len(), 2, "all of them when the connection ends");
    }
}
