//! The audit trail on disk: the `history` column family, seq (big-endian
//! `u64`) → event (JSON). The state machine writes it as it applies entries,
//! under its lock, and carries it in snapshots: the Raft log is compacted,
//! the history is not. Retention runs at the same entries on every node.

use std::sync::Arc;

use hpfriends_graph::accounts::UnixTime;
use hpfriends_graph::history::{Change, Event, Retention};
use hpfriends_graph::Actor;
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::cf;
use crate::Origin;

pub(crate) const CF_HISTORY: &str = "history";

/// Where the history stands; part of the state machine and its snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryState {
    /// The seq the next event gets.
    pub next_seq: u64,
    /// The oldest kept event (`next_seq` when there is none).
    pub first_seq: u64,
    /// The newest entry time seen: the clock retention by age reads.
    pub clock: Option<UnixTime>,
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn decode(key: &[u8], value: &[u8]) -> Result<Event, String> {
    let seq = u64::from_be_bytes(key.try_into().map_err(|_| "a history key is not 8 bytes".to_string())?);
    serde_json::from_slice(value).map_err(|e| format!("history event {seq} does not decode: {e}"))
}

/// Adds the events of one applied entry to `batch`.
pub(crate) fn record(
    db: &DB,
    batch: &mut WriteBatch,
    state: &mut HistoryState,
    index: u64,
    origin: Option<Origin>,
    actor: &Actor,
    changes: Vec<Change>,
) {
    if let Some(at) = origin.map(|o| o.at) {
        state.clock = Some(state.clock.map_or(at, |c| c.max(at)));
    }
    for change in changes {
        let event = Event {
            seq: state.next_seq,
            index,
            at: origin.map(|o| o.at),
            node: origin.map(|o| o.node),
            actor: actor.clone(),
            change,
        };
        let json = serde_json::to_vec(&event).expect("an event serializes");
        batch.put_cf(cf(db, CF_HISTORY), key(event.seq), json);
        state.next_seq += 1;
    }
}

/// Drops what `retention` no longer keeps, after the newest events are written.
/// An event of unknown time (proposed by a v0.1.0 node) goes only with a
/// newer one of known time, never on its own.
pub(crate) fn prune(db: &DB, state: &mut HistoryState, retention: Retention) -> Result<(), String> {
    let mut first = state.first_seq.max(state.next_seq.saturating_sub(retention.max_events));
    if let Some(clock) = state.clock {
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
    if first > state.first_seq {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(db, CF_HISTORY), key(state.first_seq), key(first));
        db.write(batch).map_err(|e| format!("pruning the history: {e}"))?;
        state.first_seq = first;
    }
    Ok(())
}

/// Every kept event, as of `snapshot` (taken under the state machine's lock).
pub(crate) fn read_all(snapshot: &rocksdb::SnapshotWithThreadMode<'_, DB>, db: &DB) -> Result<Vec<Event>, String> {
    snapshot
        .iterator_cf(cf(db, CF_HISTORY), IteratorMode::Start)
        .map(|item| {
            let (k, v) = item.map_err(|e| format!("reading the history: {e}"))?;
            decode(&k, &v)
        })
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
}

impl HistoryLog {
    /// Events looked at per page at most, so that a query for something rare
    /// costs bounded time; the page then ends early with `next` set.
    pub const SCAN_BUDGET: usize = 20_000;

    pub(crate) fn new(db: Arc<DB>) -> Self {
        HistoryLog { db }
    }

    /// Up to `limit` events older than `before` (or the newest) that `keep`.
    pub fn page(&self, before: Option<u64>, limit: usize, keep: impl Fn(&Event) -> bool) -> Result<Page, String> {
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
    use hpfriends_graph::Command;

    fn db() -> (tempfile::TempDir, Arc<DB>) {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = super::super::open_db(&dir.path().join("raft")).unwrap();
        (dir, db)
    }

    fn add(db: &DB, state: &mut HistoryState, at: Option<UnixTime>, n: usize) {
        let mut batch = WriteBatch::default();
        let changes = (0..n)
            .flat_map(|i| {
                hpfriends_graph::history::changes(&Command::AddUser { name: format!("u{i}") }, &Default::default())
            })
            .collect();
        let origin = at.map(|at| Origin { node: 1, at });
        record(db, &mut batch, state, state.next_seq + 1, origin, &Actor::Operator, changes);
        db.write(batch).unwrap();
    }

    fn seqs(db: &Arc<DB>) -> Vec<u64> {
        let page = HistoryLog::new(db.clone()).page(None, usize::MAX, |_| true).unwrap();
        page.events.iter().rev().map(|e| e.seq).collect()
    }

    #[test]
    fn retention_keeps_the_newest_events_by_count_and_by_age() {
        let (_dir, db) = db();
        let mut state = HistoryState::default();
        let retention = Retention { max_age_days: 1, max_events: 5 };
        add(&db, &mut state, Some(1_000), 4);
        prune(&db, &mut state, retention).unwrap();
        assert_eq!(seqs(&db), [0, 1, 2, 3]);
        add(&db, &mut state, Some(2_000), 3);
        prune(&db, &mut state, retention).unwrap();
        assert_eq!(seqs(&db), [2, 3, 4, 5, 6], "by count");
        add(&db, &mut state, None, 1);
        add(&db, &mut state, Some(2_000 + 86_400), 1);
        prune(&db, &mut state, retention).unwrap();
        assert_eq!(seqs(&db), [4, 5, 6, 7, 8], "a day old exactly is kept");
        add(&db, &mut state, Some(2_001 + 86_400), 1);
        prune(&db, &mut state, retention).unwrap();
        assert_eq!(seqs(&db), [7, 8, 9], "by age; the event of unknown time stays");
        assert_eq!(state.first_seq, 7);
        add(&db, &mut state, Some(2_001 + 2 * 86_400), 1);
        prune(&db, &mut state, retention).unwrap();
        assert_eq!(seqs(&db), [9, 10], "it goes with a newer one");
    }

    #[test]
    fn pages_run_newest_first_and_continue_where_they_stopped() {
        let (_dir, db) = db();
        let mut state = HistoryState::default();
        add(&db, &mut state, Some(1), 7);
        let log = HistoryLog::new(db.clone());
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
        let (_dir, db) = db();
        let mut state = HistoryState::default();
        add(&db, &mut state, Some(1), 3);
        let snapshot = db.snapshot();
        let events = read_all(&snapshot, &db).unwrap();
        drop(snapshot);
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf(&db, CF_HISTORY), key(2));
        db.write(batch).unwrap();
        restore(&db, &state, &events, false).unwrap();
        assert_eq!(seqs(&db), [0, 1, 2]);

        add(&db, &mut state, Some(1), 2);
        restore(&db, &HistoryState { next_seq: 3, first_seq: 1, clock: Some(1) }, &events[1..], true).unwrap();
        assert_eq!(seqs(&db), [1, 2]);
    }
}
