//! The message archive: every node keeps what is published on it, so a reader
//! can get what it missed (`GET /api/v1/messages`, `ctl messages`).
//!
//! The publish path never waits for it: `Archive::offer` stamps the message
//! and hands it to the writer thread through a queue bounded in bytes. When
//! storage falls behind and the queue is full, the archive drops the message
//! (counted in `hpfriends_archive_dropped_total`, logged at most every 10 s),
//! never live delivery. The writer takes what has queued up as one batch,
//! writes it in one RocksDB write, and expires what is older than
//! `archive_keep` or beyond `archive_max_bytes`, oldest first.

pub mod store;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hpfriends_graph::{ChannelKeeps, Graph, Keep, PastReaders, Position, Routes, UserId};

/// What owners keep, by channel and owner (`Graph::all_keeps`).
pub type Keeps = HashMap<bytes::Bytes, HashMap<UserId, Keep>>;

use crate::protocol::PublishFrame;
use crate::telemetry;
use store::Store;
pub use store::{ChunkSummary, Cursor, Id, Message, Record, Scanned};

/// Bytes of messages waiting for the writer, at most: past it the archive drops.
const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Messages in one write, at most.
const BATCH: usize = 4096;
/// A batch smaller than this waits `LINGER` for more before it is written.
const SPARSE: usize = 64;
const LINGER: Duration = Duration::from_millis(5);
/// Messages and bytes a publishing session gathers before it hands them over, at most.
const OFFER_BATCH: usize = 256;
const OFFER_BYTES: usize = 256 * 1024;
/// How often the writer expires old messages and reports, when idle.
const TICK: Duration = Duration::from_secs(1);
/// How often each channel with owners' keeps is purged, at most.
const PURGE_EVERY_US: u64 = 60_000_000;
/// Drops are logged at most this often.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep: Duration,
    pub max_bytes: u64,
}

struct Pending {
    frame: PublishFrame,
    owner: UserId,
    position: Position,
    time_us: u64,
}

/// A message of the writer's batch: this node's own, numbered by the writer,
/// or a copy of another node's.
enum Entry {
    Own(Id, Pending),
    Copy(Message),
}

impl Record for Entry {
    fn id(&self) -> Id {
        match self {
            Entry::Own(id, _) => *id,
            Entry::Copy(m) => m.id,
        }
    }
    fn owner(&self) -> UserId {
        match self {
            Entry::Own(_, p) => p.owner,
            Entry::Copy(m) => m.owner,
        }
    }
    fn position(&self) -> Position {
        match self {
            Entry::Own(_, p) => p.position,
            Entry::Copy(m) => m.position,
        }
    }
    fn ident(&self) -> &[u8] {
        match self {
            Entry::Own(_, p) => p.frame.ident(),
            Entry::Copy(m) => &m.ident,
        }
    }
    fn channel(&self) -> &[u8] {
        match self {
            Entry::Own(_, p) => p.frame.channel(),
            Entry::Copy(m) => &m.channel,
        }
    }
    fn payload(&self) -> &[u8] {
        match self {
            Entry::Own(_, p) => p.frame.payload(),
            Entry::Copy(m) => &m.payload,
        }
    }
}

enum Job {
    Messages(Vec<Pending>),
    /// Messages another node holds, sent by node `from`: kept if new here.
    Copies {
        from: u64,
        messages: Vec<Message>,
        done: tokio::sync::oneshot::Sender<()>,
    },
    Stop,
}

/// Messages of one publishing session on their way to the archive, handed
/// to the writer together: once per read of the client's socket (or every
/// OFFER_BATCH messages or OFFER_BYTES of a client that keeps it busy), not
/// per message.
/// They are stamped with the time of that read: they arrived together.
pub struct Offers {
    archive: Option<Arc<Archive>>,
    pending: Vec<Pending>,
    bytes: usize,
    time_us: u64,
}

impl Offers {
    /// Into `archive`; with none (`archive = false`), keeps nothing.
    pub fn new(archive: Option<Arc<Archive>>) -> Offers {
        Offers { archive, pending: Vec::new(), bytes: 0, time_us: 0 }
    }

    /// The publish path's only cost: a push (and a clock read per batch).
    pub fn push(&mut self, owner: UserId, position: Position, frame: &PublishFrame) {
        if self.archive.is_none() {
            return;
        }
        if self.pending.is_empty() {
            self.time_us = now_us();
        }
        self.bytes += frame.raw().len();
        self.pending.push(Pending { frame: frame.clone(), owner, position, time_us: self.time_us });
        // Bounded in bytes too: the frames held here keep their read buffers alive.
        if self.pending.len() >= OFFER_BATCH || self.bytes >= OFFER_BYTES {
            self.flush();
        }
    }

    /// Hands what was pushed to the writer.
    pub fn flush(&mut self) {
        if let (Some(archive), false) = (&self.archive, self.pending.is_empty()) {
            archive.offer(std::mem::take(&mut self.pending), std::mem::take(&mut self.bytes));
        }
    }
}

impl Drop for Offers {
    fn drop(&mut self) {
        self.flush();
    }
}

pub struct Archive {
    retention: Retention,
    store: Arc<Store>,
    jobs: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Bumped after each write: what follows the archive (copies to other
    /// nodes, `follow=true` readers) looks again.
    written: Arc<tokio::sync::watch::Sender<u64>>,
    /// Owners' keeps, as the graph has them: the writer applies them.
    keeps: Arc<Mutex<Arc<Keeps>>>,
}

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Archive {
    /// Opens (or creates) the archive in `dir` and starts its writer thread.
    pub fn open(dir: &Path, node: u64, retention: Retention) -> anyhow::Result<Arc<Archive>> {
        let store = Arc::new(Store::open(dir)?);
        let (jobs, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(tokio::sync::watch::Sender::new(0));
        let keeps: Arc<Mutex<Arc<Keeps>>> = Arc::default();
        let writer = Writer {
            keeps: keeps.clone(),
            node,
            store: store.clone(),
            queued: queued.clone(),
            dropped: dropped.clone(),
            written: written.clone(),
            retention,
        };
        let handle = std::thread::Builder::new().name("archive".into()).spawn(move || writer.run(rx))?;
        Ok(Arc::new(Archive {
            retention,
            store,
            jobs,
            queued,
            dropped,
            writer: Mutex::new(Some(handle)),
            written,
            keeps,
        }))
    }

    /// Hands a session's publishes to the writer, or drops them from the
    /// archive (never from delivery) when the writer is this far behind.
    fn offer(&self, pending: Vec<Pending>, bytes: usize) {
        if self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUE_BYTES {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(pending.len() as u64, Ordering::Relaxed);
            return;
        }
        if self.jobs.send(Job::Messages(pending)).is_err() {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Keeps what `from` sent of another node's archive (what this one does
    /// not hold yet), and returns once it is written: a follower that reads
    /// faster than this disk writes waits here.
    pub async fn copy(&self, from: u64, messages: Vec<Message>) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job::Copies { from, messages, done }).is_ok() {
            let _ = written.await;
        }
    }

    /// How far this archive holds each publishing node's messages.
    pub fn marks(&self) -> HashMap<u64, u64> {
        self.store.marks()
    }

    /// `node`'s messages (of `channel`, if given) from `from` on, in order (blocking).
    pub fn scan_origin(
        &self,
        node: u64,
        from: u64,
        channel: Option<&[u8]>,
        max: usize,
        max_bytes: usize,
    ) -> anyhow::Result<Scanned> {
        self.store.scan_origin(node, from, channel, max, max_bytes)
    }

    /// `node`'s chunks of `channel` from `from` on, without their messages (blocking).
    pub fn origin_summary(&self, node: u64, from: u64, channel: &[u8]) -> anyhow::Result<Vec<ChunkSummary>> {
        self.store.origin_summary(node, from, channel)
    }

    /// The owners' keeps from now on: an excluded channel's messages are no
    /// longer kept, and what is past an owner's keep goes at the next tick.
    pub fn set_keeps(&self, g: &Graph) {
        let mut keeps = Keeps::new();
        for ((owner, channel), keep) in g.all_keeps() {
            keeps.entry(bytes::Bytes::from(channel)).or_default().insert(owner, keep);
        }
        let mut current = self.keeps.lock().expect("archive keeps lock poisoned");
        if **current != keeps {
            *current = Arc::new(keeps);
        }
    }

    /// Changes after each write.
    pub fn watch_written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Writes what is queued and stops the writer.
    pub fn stop(&self) {
        let _ = self.jobs.send(Job::Stop);
        if let Some(handle) = self.writer.lock().expect("archive writer lock poisoned").take() {
            let _ = handle.join();
        }
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    pub fn messages(&self) -> u64 {
        self.store.messages()
    }

    pub fn oldest(&self) -> Option<Id> {
        self.store.oldest()
    }

    /// Reads one page of `channel` for a reader (blocking: call it off the
    /// runtime's threads). Stops at `limit` messages, `max_bytes` of payload
    /// or `max_scanned` messages looked at, whichever comes first.
    pub fn read(&self, q: &Read, may: &MayRead) -> anyhow::Result<Page> {
        let now = now_us();
        let mut page = Page::default();
        let (mut scanned, mut bytes) = (0, 0);
        self.store.scan(&q.channel, q.since_us, q.until_us, q.after, |m, cursor| {
            scanned += 1;
            page.last = Some(cursor);
            let wanted = q.publisher.as_ref().is_none_or(|p| *p == m.ident);
            if let Some(m) = may.admit(m, now).filter(|_| wanted) {
                bytes += m.payload.len();
                page.messages.push(m);
            }
            if page.messages.len() >= q.limit || bytes >= q.max_bytes || scanned >= q.max_scanned {
                page.more = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(page)
    }
}

/// What one reader may read of one channel's archive: the rule of the past
/// (docs/sharing.md), within what each owner keeps of the channel.
#[derive(Debug, Clone)]
pub struct MayRead {
    readers: PastReaders,
    /// Along shares without a filter: whose messages the reader gets unchanged.
    unfiltered: PastReaders,
    /// Where filters are on the channel: the reader's chains now, by publisher.
    routes: HashMap<UserId, Routes>,
    keeps: ChannelKeeps,
}

impl MayRead {
    /// For `reader` on `channel` as the graph is now; `None` for no such user.
    pub fn of(g: &Graph, reader: &str, channel: &str) -> Option<MayRead> {
        let readers = g.past_readers(reader, channel)?;
        let unfiltered = g.past_readers_unfiltered(reader, channel)?;
        let id = g.user_id(reader)?;
        let routes = match g.has_filters(channel) {
            false => HashMap::new(),
            true => (readers.publishers().keys())
                .filter_map(|p| {
                    let routes = hpfriends_graph::filter::routes(g, channel, *p);
                    routes.into_iter().find(|(r, _)| *r == id).map(|(_, routes)| (*p, routes))
                })
                .collect(),
        };
        Some(MayRead { readers, unfiltered, routes, keeps: g.channel_keeps(channel) })
    }

    /// The reader's version of an archived message, or `None`: the rule of
    /// the past and the owner's keep decide whether; a message the reader
    /// could then read only through a filter comes through the filters of
    /// their paths now (docs/sharing.md, "Filters"), and not at all when no
    /// filtered path reaches them now.
    pub fn admit(&self, mut m: Message, now_us: u64) -> Option<Message> {
        if !(self.readers.may_read(m.owner, m.position) && self.keeps.keeps(m.owner, m.id.time_us, now_us)) {
            return None;
        }
        if self.unfiltered.may_read(m.owner, m.position) {
            return Some(m);
        }
        let routes = self.routes.get(&m.owner)?;
        let msg = hpfriends_graph::Message {
            channel: std::str::from_utf8(&m.channel).unwrap_or_default(),
            ident: std::str::from_utf8(&m.ident).unwrap_or_default(),
            payload: &m.payload,
        };
        if let Some(rewritten) = routes.version(msg)? {
            m.payload = rewritten.into();
        }
        Some(m)
    }
}

/// Whether a copy of another node's message, sent by node `from`, is kept.
/// Each node's messages are kept in order of their numbers: from their own
/// node any number at or past the mark (the ones skipped expired there), from
/// a node that relays them only the next one (so a relay that lacks some
/// cannot make this archive skip them). A node's own messages never come back.
fn keep_copy(marks: &mut std::collections::HashMap<u64, u64>, own: u64, from: u64, id: &Id) -> bool {
    if id.node == own {
        return false;
    }
    let mark = marks.entry(id.node).or_default();
    let keep = if from == id.node { id.seq >= *mark } else { id.seq == *mark };
    if keep {
        *mark = id.seq + 1;
    }
    keep
}

/// The writer must not touch RocksDB while the process exits (RocksDB's
/// statics go first, and a lock it takes then aborts the process).
impl Drop for Archive {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One page's bounds.
pub struct Read {
    pub channel: Vec<u8>,
    pub since_us: u64,
    pub until_us: u64,
    /// Continue after this (a page's `last`).
    pub after: Option<Cursor>,
    pub publisher: Option<Vec<u8>>,
    pub limit: usize,
    pub max_bytes: usize,
    pub max_scanned: usize,
}

#[derive(Debug, Default)]
pub struct Page {
    pub messages: Vec<Message>,
    /// Just past the last message looked at: the next page starts there.
    pub last: Option<Cursor>,
    /// The page stopped at a bound: there may be more.
    pub more: bool,
}

struct Writer {
    keeps: Arc<Mutex<Arc<Keeps>>>,
    node: u64,
    store: Arc<Store>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    written: Arc<tokio::sync::watch::Sender<u64>>,
    retention: Retention,
}

impl Writer {
    fn run(self, jobs: mpsc::Receiver<Job>) {
        let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
        let mut copied: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
        // What the store will hold once `batch` is written.
        let mut marks = self.store.marks();
        // The keeps last purged by, and per channel how far messages were purged.
        let (mut purged_by, mut purged_until): (Arc<Keeps>, std::collections::HashMap<bytes::Bytes, u64>) =
            Default::default();
        let (mut last_tick, mut last_drop_log, mut dropped_seen) =
            (std::time::Instant::now(), std::time::Instant::now(), 0);
        self.report(None);
        self.report_oldest();
        loop {
            let mut stop = false;
            let first = match jobs.recv_timeout(TICK) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut oldest_us = None;
            let keeps = self.keeps.lock().expect("archive keeps lock poisoned").clone();
            let excluded = |owner: UserId, channel: &[u8]| {
                keeps.get(channel).and_then(|k| k.get(&owner)).is_some_and(|k| *k == Keep::Off)
            };
            let mut next = first;
            let mut lingered = false;
            loop {
                while let Some(job) = next.take() {
                    match job {
                        Job::Messages(pending) => {
                            let bytes = pending.iter().map(|p| p.frame.raw().len()).sum();
                            self.queued.fetch_sub(bytes, Ordering::Relaxed);
                            for p in pending {
                                if excluded(p.owner, p.frame.channel()) {
                                    continue;
                                }
                                oldest_us.get_or_insert(p.time_us);
                                let next = marks.entry(self.node).or_default();
                                let seq = *next;
                                *next += 1;
                                batch.push(Entry::Own(Id { time_us: p.time_us, node: self.node, seq }, p));
                            }
                        }
                        Job::Copies { from, messages, done } => {
                            for m in messages {
                                // Numbered even when excluded: the next copy follows on from it.
                                if keep_copy(&mut marks, self.node, from, &m.id) && !excluded(m.owner, &m.channel) {
                                    batch.push(Entry::Copy(m));
                                }
                            }
                            copied.push(done);
                        }
                        Job::Stop => stop = true,
                    }
                    if batch.len() < BATCH {
                        next = jobs.try_recv().ok();
                    }
                }
                // Sparse traffic (a fleet of sensors publishing now and then): wait
                // a moment for more, so one write and one wake-up of the copies
                // streams carry several messages instead of one each.
                if lingered || stop || batch.is_empty() || batch.len() >= SPARSE {
                    break;
                }
                lingered = true;
                std::thread::sleep(LINGER);
                next = jobs.try_recv().ok();
            }
            if !batch.is_empty() {
                if let Err(e) = self.store.append(&batch) {
                    self.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!("archive: cannot write {} messages: {e}", batch.len());
                    marks = self.store.marks();
                }
                batch.clear();
                self.written.send_modify(|n| *n += 1);
            }
            for done in copied.drain(..) {
                let _ = done.send(());
            }
            let full = self.store.bytes() > self.retention.max_bytes;
            if full || last_tick.elapsed() >= TICK || stop {
                last_tick = std::time::Instant::now();
                self.expire();
                if !Arc::ptr_eq(&keeps, &purged_by) {
                    // New keeps: each ruled channel is looked at from its start again.
                    purged_until.clear();
                    purged_by = keeps.clone();
                }
                self.purge(&keeps, &mut purged_until);
                let dropped = self.dropped.load(Ordering::Relaxed);
                metrics::counter!(telemetry::ARCHIVE_DROPPED.name).increment(dropped - dropped_seen);
                if dropped > dropped_seen && last_drop_log.elapsed() >= DROP_LOG_EVERY {
                    tracing::warn!(
                        dropped = dropped - dropped_seen,
                        "archive: storage fell behind, messages not archived"
                    );
                    last_drop_log = std::time::Instant::now();
                }
                dropped_seen = dropped;
                self.report_oldest();
            }
            self.report(oldest_us);
            if stop {
                break;
            }
        }
    }

    /// Deletes what is past its owner's keep, each channel from where it was
    /// last purged (a chunk spans a minute: from a minute before).
    fn purge(&self, keeps: &Keeps, purged_until: &mut std::collections::HashMap<bytes::Bytes, u64>) {
        let now = now_us();
        for (channel, owners) in keeps {
            let shortest = owners.values().map(|k| match k {
                Keep::Off => 0,
                Keep::Secs(s) => s.saturating_mul(1_000_000),
            });
            let until = now.saturating_sub(shortest.min().unwrap_or(0));
            // Each pass reads the channel's last minute or two again: at most once a minute.
            if purged_until.get(channel).is_some_and(|p| p.saturating_add(PURGE_EVERY_US) > until) {
                continue;
            }
            let kept = |m: &Message| owners.get(&m.owner).is_none_or(|k| k.keeps(m.id.time_us, now));
            let since = purged_until.get(channel).copied().unwrap_or(0);
            match self.store.purge(channel, since, until, kept) {
                Ok(_) => {
                    purged_until.insert(channel.clone(), until);
                }
                Err(e) => tracing::error!("archive: cannot delete what owners no longer keep: {e}"),
            }
        }
    }

    fn expire(&self) {
        let keep_from = now_us().saturating_sub(self.retention.keep.as_micros() as u64);
        if let Err(e) = self.store.expire(keep_from, self.retention.max_bytes) {
            tracing::error!("archive: cannot expire old messages: {e}");
        }
    }

    /// The gauges; `written_from_us` is when the oldest message of the batch
    /// just written was published.
    fn report(&self, written_from_us: Option<u64>) {
        metrics::gauge!(telemetry::ARCHIVE_BYTES.name).set(self.store.bytes() as f64);
        metrics::gauge!(telemetry::ARCHIVE_MESSAGES.name).set(self.store.messages() as f64);
        if let Some(t) = written_from_us {
            metrics::gauge!(telemetry::ARCHIVE_WRITE_LAG.name).set(now_us().saturating_sub(t) as f64 / 1e6);
        }
    }

    fn report_oldest(&self) {
        let age = self.store.oldest().map_or(0.0, |id| now_us().saturating_sub(id.time_us) as f64 / 1e6);
        metrics::gauge!(telemetry::ARCHIVE_OLDEST_AGE.name).set(age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_copies_from_the_origin_and_from_relays_then_each_is_kept_once_in_order_and_relays_never_skip() {
        let mut marks = std::collections::HashMap::new();
        let id = |node, seq| Id { time_us: 1, node, seq };
        // From node 2 itself: in order, and past what expired there.
        assert!(keep_copy(&mut marks, 1, 2, &id(2, 0)));
        assert!(!keep_copy(&mut marks, 1, 2, &id(2, 0)), "once");
        assert!(keep_copy(&mut marks, 1, 2, &id(2, 5)), "1 to 4 expired on node 2");
        // Node 2's messages relayed by node 3: only the next one.
        assert!(!keep_copy(&mut marks, 1, 3, &id(2, 7)), "a relay that lacks 6 cannot skip it");
        assert!(keep_copy(&mut marks, 1, 3, &id(2, 6)));
        assert!(keep_copy(&mut marks, 1, 3, &id(2, 7)));
        // This node's own messages never come back.
        assert!(!keep_copy(&mut marks, 1, 2, &id(1, 0)));
        assert_eq!(marks.get(&2), Some(&8));
        assert_eq!(marks.get(&1), None);
    }

    #[test]
    fn given_large_publishes_then_a_session_hands_them_over_before_it_holds_more_than_offer_bytes() {
        use crate::protocol::frame::{decode, encode_publish, Frame, Limits};
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention { keep: Duration::from_secs(3600), max_bytes: u64::MAX };
        let archive = Archive::open(dir.path(), 1, retention).unwrap();
        let mut offers = Offers::new(Some(archive.clone()));
        let mut wire = bytes::BytesMut::from(&encode_publish(b"i", b"c", &[7; 100 * 1024])[..]);
        let Some(Frame::Publish(frame)) = decode(&mut wire, &Limits::default()).unwrap() else { panic!("a PUBLISH") };
        // Far fewer than OFFER_BATCH messages, but past OFFER_BYTES: handed over.
        for _ in 0..3 {
            offers.push(1, 0, &frame);
            assert!(offers.bytes < OFFER_BYTES + frame.raw().len(), "held {} bytes", offers.bytes);
        }
        assert_eq!(offers.pending.len(), 0, "the third reached OFFER_BYTES: all three handed over");
        drop(offers);
        archive.stop();
        assert_eq!(archive.messages(), 3);
    }
}
