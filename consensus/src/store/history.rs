//! The audit trail on disk: the `history` column family, seq (big-endian
//! `u64`) → event (JSON). The state machine numbers each applied entry's
//! changes (so every node gives them the same seqs) and hands the entry to
//! the recorder, a thread that writes the events: the write path waits for
//! neither their JSON nor RocksDB. Reads and snapshots first wait until
//! every entry handed over so far is written. Snapshots carry the events:
//! the Raft log is compacted, the history is not. Retention runs at the
//! same entries on every node.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hpfriends_graph::accounts::UnixTime;
use hpfriends_graph::history::{changes, Event, Ids, Record, RemovedKeys, Retention};
use hpfriends_graph::{Actor, Command, UserId};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::cf;
use crate::Origin;

pub(crate) const CF_HISTORY: &str = "history";

/// How long a read or a snapshot waits for the recorder.
const WAIT: Duration = Duration::from_secs(10);

/// Where the history stands; part of the state machine and its snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryState {
    /// The seq the next event gets.
    pub next_seq: u64,
    /// The oldest kept event (`next_seq` when there is none); kept by the recorder.
    pub first_seq: u64,
    /// The newest entry time seen: the clock retention by age reads.
    pub clock: Option<UnixTime>,
}

impl HistoryState {
    /// Numbers the changes of an applied entry: the job for the recorder.
    pub(crate) fn number(&mut self, entry: Entry, retention: Retention) -> Option<Job> {
        if let Some(at) = entry.origin.map(|o| o.at) {
            self.clock = Some(self.clock.map_or(at, |c| c.max(at)));
        }
        let count = hpfriends_graph::history::count(&entry.command);
        if count == 0 {
            return None;
        }
        let first_seq = self.next_seq;
        self.next_seq += count;
        Some(Job { entry, first_seq, retention, clock: self.clock })
    }
}

/// An applied entry, with what its events need to know of the graph as it was.
pub(crate) struct Entry {
    pub index: u64,
    pub origin: Option<Origin>,
    pub actor: Actor,
    pub actor_id: Option<UserId>,
    pub command: Command,
    pub removed: RemovedKeys,
    /// Per recorded change (`Applied::ids`).
    pub ids: Vec<Ids>,
}

/// One applied entry's changes, to be written.
pub(crate) struct Job {
    entry: Entry,
    first_seq: u64,
    retention: Retention,
    clock: Option<UnixTime>,
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn decode(key: &[u8], value: &[u8]) -> Result<Event, String> {
    let seq = u64::from_be_bytes(key.try_into().map_err(|_| "a history key is not 8 bytes".to_string())?);
    Event::decode(value).map_err(|e| format!("history event {seq} does not decode: {e}"))
}

/// Adds a job's events to `batch`.
fn record(db: &DB, batch: &mut WriteBatch, job: &Job) {
    let family = cf(db, CF_HISTORY);
    let e = &job.entry;
    let (at, node) = (e.origin.map(|o| o.at), e.origin.map(|o| o.node));
    let mut json = Vec::new();
    let no_ids = Ids::default();
    for (i, change) in changes(&e.command, &e.removed).iter().enumerate() {
        let seq = job.first_seq + i as u64;
        let ids = e.ids.get(i).unwrap_or(&no_ids);
        let record = Record { seq, index: e.index, at, node, actor: &e.actor, actor_id: e.actor_id, change, ids };
        json.clear();
        serde_json::to_writer(&mut json, &record).expect("an event serializes");
        batch.put_cf(family, key(seq), &json);
    }
}

#[derive(Default)]
struct Progress {
    /// Jobs written, and the oldest kept event.
    done: u64,
    first_seq: u64,
    failed: Option<String>,
}

/// The thread that writes the history, and how far it is.
pub(crate) struct Recorder {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    sent: std::sync::atomic::AtomicU64,
    progress: Arc<(Mutex<Progress>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Recorder {
    /// The thread writes what it was given, closes its handle on the
    /// database, and ends before the recorder is gone.
    fn drop(&mut self) {
        self.jobs.lock().expect("history jobs lock").take();
        if let Some(thread) = self.thread.lock().expect("history thread lock").take() {
            let _ = thread.join();
        }
    }
}

impl Recorder {
    pub(crate) fn start(db: Arc<DB>, first_seq: u64) -> Recorder {
        let (tx, rx) = mpsc::channel::<Job>();
        let progress = Arc::new((Mutex::new(Progress { first_seq, ..Progress::default() }), Condvar::new()));
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Whatever else is waiting goes in the same write.
                    let jobs: Vec<Job> = std::iter::once(first).chain(rx.try_iter()).collect();
                    let (lock, wake) = &*shared;
                    let mut first_seq = lock.lock().expect("history progress lock").first_seq;
                    let written = write(&db, &jobs, &mut first_seq);
                    let mut p = lock.lock().expect("history progress lock");
                    p.done += jobs.len() as u64;
                    p.first_seq = first_seq;
                    if let Err(e) = written {
                        tracing::error!("the history could not be written: {e}");
                        p.failed.get_or_insert(e);
                    }
                    wake.notify_all();
                }
            })
            .expect("a thread starts");
        Recorder { jobs: Mutex::new(Some(tx)), sent: 0.into(), progress, thread: Mutex::new(Some(thread)) }
    }

    pub(crate) fn send(&self, job: Job) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        // The thread lives as long as the sender: a send cannot fail.
        if let Some(jobs) = self.jobs.lock().expect("history jobs lock").as_ref() {
            let _ = jobs.send(job);
        }
    }

    /// Waits until every job sent so far is written; the oldest kept event.
    pub(crate) fn caught_up(&self) -> Result<u64, String> {
        let target = self.sent.load(std::sync::atomic::Ordering::Acquire);
        let (lock, wake) = &*self.progress;
        let progress = lock.lock().expect("history progress lock");
        let (p, timeout) = wake
            .wait_timeout_while(progress, WAIT, |p| p.done < target && p.failed.is_none())
            .expect("history progress lock");
        match (&p.failed, timeout.timed_out()) {
            (Some(e), _) => Err(format!("the history could not be written: {e}")),
            (None, true) => Err(format!("the history is not written within {WAIT:?}")),
            (None, false) => Ok(p.first_seq),
        }
    }

    /// After a snapshot replaced the history (nothing is being written then).
    pub(crate) fn restart_at(&self, first_seq: u64) {
        self.progress.0.lock().expect("history progress lock").first_seq = first_seq;
    }
}

/// Writes the jobs' events in one batch, then applies each job's retention.
fn write(db: &DB, jobs: &[Job], first_seq: &mut u64) -> Result<(), String> {
    let mut batch = WriteBatch::default();
    for job in jobs {
        record(db, &mut batch, job);
    }
    // Not synced: until a snapshot holds them the log can make them again.
    db.write(batch).map_err(|e| format!("writing the history: {e}"))?;
    for job in jobs {
        let next_seq = job.first_seq + hpfriends_graph::history::count(&job.entry.command);
        prune(db, next_seq, first_seq, job.clock, job.retention)?;
    }
    Ok(())
}

/// Drops what `retention` no longer keeps, after the newest events are written.
/// An event of unknown time (proposed by a v0.1.0 node) goes only with a
/// newer one of known time, never on its own.
fn prune(
    db: &DB,
    next_seq: u64,
    first_seq: &mut u64,
    clock: Option<UnixTime>,
    retention: Retention,
) -> Result<(), String> {
    let mut first = (*first_seq).max(next_seq.saturating_sub(retention.max_events));
    if let Some(clock) = clock {
        let cutoff = clock.saturating_sub(retention.max_age_secs());
        let from = key(first);
        for item in db.iterator_cf(cf(db, CF_HISTORY), IteratorMode::From(&from, Direction::Forward)) {
            let (k, v) = item.map_err(|e| format!("reading the history: {e}"))?;
            let event = decode(&k, &v)?;
            match event.at {
                Some(at) if at < cutoff => first = event.seq + 1,
                Some(_) => break,
                None => continue,
            }
        }
    }
    if first > *first_seq {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(db, CF_HISTORY), key(*first_seq), key(first));
        db.write(batch).map_err(|e| format!("pruning the history: {e}"))?;
        *first_seq = first;
    }
    Ok(())
}

/// Every kept event below `next_seq` (a snapshot's events: the recorder
/// may have written later ones since).
pub(crate) fn read_all(db: &DB, next_seq: u64) -> Result<Vec<Event>, String> {
    db.iterator_cf(cf(db, CF_HISTORY), IteratorMode::Start)
        .map(|item| {
            let (k, v) = item.map_err(|e| format!("reading the history: {e}"))?;
            decode(&k, &v)
        })
        .take_while(|e| e.as_ref().map_or(true, |e| e.seq < next_seq))
        .collect()
}

/// Makes the column family hold what a snapshot holds. With `everything`
/// (a snapshot installed from the leader) whatever was there goes; else (a
/// node's own snapshot at start) the events are written only if the last one
/// is missing, i.e. writes after the last synced one were lost.
pub(crate) fn restore(db: &DB, state: &HistoryState, events: &[Event], everything: bool) -> Result<(), String> {
    let last_present = match state.next_seq.checked_sub(1) {
        Some(last) if state.first_seq <= last => {
            db.get_cf(cf(db, CF_HISTORY), key(last)).map_err(|e| format!("reading the history: {e}"))?.is_some()
        }
        _ => true,
    };
    if !everything && last_present {
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    let end = if everything { u64::MAX } else { state.next_seq };
    batch.delete_range_cf(cf(db, CF_HISTORY), key(0), key(end));
    for event in events {
        batch.put_cf(cf(db, CF_HISTORY), key(event.seq), serde_json::to_vec(event).expect("an event serializes"));
    }
    db.write(batch).map_err(|e| format!("restoring the history: {e}"))
}

/// One page of a query, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<Event>,
    /// Where the next page starts (pass as `before`), when there may be more.
    pub next: Option<u64>,
}

/// Reads the history of this node (every node holds the same).
#[derive(Clone)]
pub struct HistoryLog {
    db: Arc<DB>,
    recorder: Arc<Recorder>,
}

impl HistoryLog {
    /// Events looked at per page at most, so that a query for something rare
    /// costs bounded time; the page then ends early with `next` set.
    pub const SCAN_BUDGET: usize = 20_000;

    pub(crate) fn new(db: Arc<DB>, recorder: Arc<Recorder>) -> Self {
        HistoryLog { db, recorder }
    }

    /// Up to `limit` events older than `before` (or the newest) that `keep`.
    /// Waits (blocking) until every change applied so far is written.
    pub fn page(&self, before: Option<u64>, limit: usize, keep: impl Fn(&Event) -> bool) -> Result<Page, String> {
        self.recorder.caught_up()?;
        let start;
        let mode = match before {
            Some(0) => return Ok(Page { events: Vec::new(), next: None }),
            Some(b) => {
                start = key(b - 1);
                IteratorMode::From(&start, Direction::Reverse)
            }
            None => IteratorMode::End,
        };
        let mut events = Vec::new();
        for (scanned, item) in self.db.iterator_cf(cf(&self.db, CF_HISTORY), mode).enumerate() {
            let (k, v) = item.map_err(|e| format!("reading the history: {e}"))?;
            let event = decode(&k, &v)?;
            if events.len() == limit || scanned == Self::SCAN_BUDGET {
                return Ok(Page { events, next: Some(event.seq + 1) });
            }
            if keep(&event) {
                events.push(event);
            }
        }
        Ok(Page { events, next: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Store {
        _dir: tempfile::TempDir,
        db: Arc<DB>,
        recorder: Arc<Recorder>,
        state: HistoryState,
        retention: Retention,
    }

    fn store(retention: Retention) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = super::super::open_db(&dir.path().join("raft")).unwrap();
        let recorder = Arc::new(Recorder::start(db.clone(), 0));
        Store { _dir: dir, db, recorder, state: HistoryState::default(), retention }
    }

    impl Store {
        /// An entry of `n` new users, proposed at `at`.
        fn add(&mut self, at: Option<UnixTime>, n: usize) {
            let commands = (0..n).map(|i| Command::AddUser { name: format!("u{i}") }).collect();
            let origin = at.map(|at| Origin { node: 1, at });
            let index = self.state.next_seq + 1;
            let command = Command::Batch { commands };
            let entry = Entry {
                index,
                origin,
                actor: Actor::Operator,
                actor_id: None,
                command,
                removed: RemovedKeys::new(),
                ids: Vec::new(),
            };
            let job = self.state.number(entry, self.retention);
            self.recorder.send(job.unwrap());
        }

        fn log(&self) -> HistoryLog {
            HistoryLog::new(self.db.clone(), self.recorder.clone())
        }

        fn seqs(&self) -> Vec<u64> {
            let page = self.log().page(None, usize::MAX, |_| true).unwrap();
            page.events.iter().rev().map(|e| e.seq).collect()
        }
    }

    #[test]
    fn retention_keeps_the_newest_events_by_count_and_by_age() {
        let mut s = store(Retention { max_age_days: 1, max_events: 5 });
        s.add(Some(1_000), 4);
        assert_eq!(s.seqs(), [0, 1, 2, 3]);
        s.add(Some(2_000), 3);
        assert_eq!(s.seqs(), [2, 3, 4, 5, 6], "by count");
        s.add(None, 1);
        s.add(Some(2_000 + 86_400), 1);
        assert_eq!(s.seqs(), [4, 5, 6, 7, 8], "a day old exactly is kept");
        s.add(Some(2_001 + 86_400), 1);
        assert_eq!(s.seqs(), [7, 8, 9], "by age; the event of unknown time stays");
        assert_eq!(s.recorder.caught_up(), Ok(7));
        s.add(Some(2_001 + 2 * 86_400), 1);
        assert_eq!(s.seqs(), [9, 10], "it goes with a newer one");
    }

    #[test]
    fn pages_run_newest_first_and_continue_where_they_stopped() {
        let mut s = store(Retention::default());
        s.add(Some(1), 7);
        let log = s.log();
        let odd = |e: &Event| e.seq % 2 == 1;
        let first = log.page(None, 2, odd).unwrap();
        assert_eq!(first.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 3]);
        let second = log.page(first.next, 2, odd).unwrap();
        assert_eq!(second.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(second.next, None);
        assert_eq!(log.page(Some(0), 2, odd).unwrap().events, []);
    }

    #[test]
    fn a_restored_snapshot_replaces_lost_events_and_an_installed_one_replaces_everything() {
        let mut s = store(Retention::default());
        s.add(Some(1), 3);
        s.recorder.caught_up().unwrap();
        let events = read_all(&s.db, s.state.next_seq).unwrap();
        s.add(Some(1), 2);
        assert_eq!(s.seqs(), [0, 1, 2, 3, 4]);
        assert_eq!(read_all(&s.db, 3).unwrap(), events, "a snapshot's events stop at its next seq");
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf(&s.db, CF_HISTORY), key(2));
        s.db.write(batch).unwrap();
        let at_snapshot = HistoryState { next_seq: 3, first_seq: 0, clock: Some(1) };
        restore(&s.db, &at_snapshot, &events, false).unwrap();
        assert_eq!(s.seqs(), [0, 1, 2, 3, 4]);

        restore(&s.db, &HistoryState { next_seq: 3, first_seq: 1, clock: Some(1) }, &events[1..], true).unwrap();
        assert_eq!(s.seqs(), [1, 2]);
    }
}
