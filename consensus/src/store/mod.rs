//! RocksDB storage: one column family per concern, big-endian `u64` keys.
//!
//! - `log`: index → entry (JSON)
//! - `meta`: vote, committed log id, last purged log id
//! - `snapshot`: the current snapshot (meta + graph + history)
//! - `history`: the audit trail, seq → event (`history.rs`)
//!
//! The state machine lives in memory and is persisted through snapshots: on
//! start it loads the last snapshot and openraft re-applies the committed log
//! after it (the committed log id is saved for that).

mod history;
mod log;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::{Entry, LogId, NodeId};

pub use history::{HistoryLog, HistoryState, Page};
pub use log::LogStore;
pub use state_machine::{KeyEntry, KeyTable, OnApply, Published, StateMachineStore};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_SNAPSHOT: &str = "snapshot";

/// RocksDB's own info log goes here (beside `raft/`, not in it), so that a
/// refused start leaves the database files exactly as they were.
const INFO_LOG_DIR: &str = "raft-info-log";

/// Opens the node's database under `dir`, creating it only when `dir` holds
/// nothing. A database that holds anything is first opened read-only and
/// checked whole; if any file is damaged or missing, or the log does not fit
/// the snapshot, the node refuses to start and nothing in `dir` is written.
/// Returns the database and whether it was created now.
pub fn open_db(dir: &Path) -> anyhow::Result<(Arc<DB>, bool)> {
    let fresh = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => anyhow::bail!("cannot read the data dir {}: {e}", dir.display()),
    };
    let mut opts = Options::default();
    opts.create_if_missing(fresh);
    opts.create_missing_column_families(fresh);
    opts.set_paranoid_checks(true);
    // Every log write is synced before Raft counts it durable: a WAL that
    // cannot be replayed to its end has lost promised writes. Refuse it
    // instead of recovering to the last good point (RocksDB's default).
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
    if let Some(parent) = dir.parent() {
        let log_dir = parent.join(INFO_LOG_DIR);
        std::fs::create_dir_all(&log_dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", log_dir.display()))?;
        opts.set_db_log_dir(log_dir);
    }
    let names = [CF_LOG, CF_META, CF_SNAPSHOT, history::CF_HISTORY];
    if !fresh {
        // A store of v0.1.0 has no history yet; every other family must be there.
        let existing = DB::list_cf(&opts, dir).unwrap_or_default();
        let present: Vec<&str> =
            names.into_iter().filter(|n| *n != history::CF_HISTORY || existing.iter().any(|e| e == n)).collect();
        let check = DB::open_cf_for_read_only(&opts, dir, &present, false)
            .map_err(|e| e.to_string())
            .and_then(|db| check_consistent(&db, present.contains(&history::CF_HISTORY)));
        if let Err(why) = check {
            anyhow::bail!(damaged(dir, &why));
        }
        opts.create_missing_column_families(true);
    }
    let cfs = names.map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| anyhow::anyhow!(damaged(dir, &e.to_string())))?;
    Ok((Arc::new(db), fresh))
}

/// The refusal: what is wrong, which files, and the ways out.
fn damaged(dir: &Path, why: &str) -> String {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    files.sort();
    let lower = why.to_lowercase();
    let named_in_error: Vec<&String> = files.iter().filter(|f| why.contains(f.as_str())).collect();
    let suspects: Vec<&String> = if !named_in_error.is_empty() {
        named_in_error
    } else {
        files
            .iter()
            .filter(|f| {
                (f.ends_with(".log") && (lower.contains("record") || lower.contains("wal") || lower.contains(".log")))
                    || (f.starts_with("MANIFEST") && lower.contains("manifest"))
                    || (f.as_str() == "CURRENT" && lower.contains("current"))
                    || (f.ends_with(".sst")
                        && (lower.contains("sst") || lower.contains("block") || lower.contains("table")))
            })
            .collect()
    };
    let named = if suspects.is_empty() {
        format!("files there: {}", files.join(", "))
    } else {
        format!("damaged or missing: {}", suspects.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "))
    };
    format!(
        "the Raft store in {} cannot be read consistently, so this node will not start ({why}; {named}). \
         Nothing in it was changed. Restore the data dir from a backup, or remove this node from the cluster \
         (`hpfriends ctl cluster remove ID`), delete the data dir and start the node again with --join to \
         rejoin empty",
        dir.display()
    )
}

/// Reads everything once (every block's checksum is verified on the way)
/// and checks that vote, log and snapshot fit together.
fn check_consistent(db: &DB, with_history: bool) -> Result<(), String> {
    use openraft::Vote;
    let meta = |key: &[u8]| -> Result<Option<Vec<u8>>, String> {
        db.get_cf(cf(db, CF_META), key).map_err(|e| format!("reading {}: {e}", String::from_utf8_lossy(key)))
    };
    let decode = |what: &str, bytes: &[u8]| -> Result<serde_json::Value, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("{what} does not decode: {e}"))
    };
    let vote: Option<Vote<NodeId>> = match meta(log::KEY_VOTE)? {
        Some(b) => Some(serde_json::from_slice(&b).map_err(|e| format!("the vote does not decode: {e}"))?),
        None => None,
    };
    let purged: Option<LogId> = match meta(log::KEY_LAST_PURGED)? {
        Some(b) => Some(serde_json::from_slice(&b).map_err(|e| format!("the last purged id does not decode: {e}"))?),
        None => None,
    };
    if let Some(b) = meta(log::KEY_COMMITTED)? {
        decode("the committed id", &b)?;
    }
    let mut first: Option<u64> = None;
    let mut last: Option<LogId> = None;
    for item in db.iterator_cf(cf(db, CF_LOG), rocksdb::IteratorMode::Start) {
        let (key, value) = item.map_err(|e| format!("reading the log: {e}"))?;
        let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| "a log key is not 8 bytes".to_string())?);
        let entry: Entry =
            serde_json::from_slice(&value).map_err(|e| format!("log entry {index} does not decode: {e}"))?;
        if entry.log_id.index != index {
            return Err(format!("log entry under index {index} says index {}", entry.log_id.index));
        }
        if let Some(prev) = last {
            if index != prev.index + 1 {
                return Err(format!("the log jumps from index {} to {index}", prev.index));
            }
        }
        first.get_or_insert(index);
        last = Some(entry.log_id);
    }
    if let (Some(p), Some(f)) = (purged, first) {
        if f != p.index + 1 {
            return Err(format!("the log starts at {f}, but entries up to {} were purged", p.index));
        }
    }
    let reach = last.or(purged).map(|l| l.index);
    if let Some(snapshot) = state_machine::stored_last_applied(db)? {
        if reach.is_none_or(|r| r < snapshot) {
            return Err(format!("the snapshot is at index {snapshot}, but the log ends at {reach:?}"));
        }
        if purged.is_some_and(|p| p.index > snapshot) {
            return Err(format!("entries after the snapshot (index {snapshot}) were purged"));
        }
    }
    if with_history {
        for item in db.iterator_cf(cf(db, history::CF_HISTORY), rocksdb::IteratorMode::Start) {
            item.map_err(|e| format!("reading the history: {e}"))?;
        }
    }
    if let (Some(last), true) = (last, vote.is_none()) {
        return Err(format!("the log holds entries up to {} but there is no vote", last.index));
    }
    if let (Some(last), Some(vote)) = (last, vote) {
        if vote.leader_id().get_term() < last.leader_id.get_term() {
            return Err(format!(
                "the vote is for term {} but the log holds term {}",
                vote.leader_id().get_term(),
                last.leader_id.get_term()
            ));
        }
    }
    Ok(())
}

const KEY_IDENTITY: &[u8] = b"identity";

/// Whose data dir this is: written when the node bootstraps a cluster or
/// first starts to join one, completed with the cluster id once it joined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub node_id: NodeId,
    pub cluster_id: Option<String>,
}

pub fn read_identity(db: &DB) -> anyhow::Result<Option<Identity>> {
    let raw = db.get_cf(cf(db, CF_META), KEY_IDENTITY)?;
    Ok(raw.map(|b| serde_json::from_slice(&b)).transpose()?)
}

pub fn write_identity(db: &DB, identity: &Identity) -> anyhow::Result<()> {
    db.put_cf_opt(cf(db, CF_META), KEY_IDENTITY, serde_json::to_vec(identity)?, &synced())?;
    Ok(())
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column families are created in open_db")
}

/// Writes that must survive a crash before Raft is told they happened.
pub(crate) fn synced() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, Vote};

    fn entry(index: u64, term: u64) -> Vec<u8> {
        let e = Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank };
        serde_json::to_vec(&e).unwrap()
    }

    /// Writes into a fresh store, closes it, and opens it again.
    fn reopened(write: impl FnOnce(&DB)) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft");
        {
            let (db, fresh) = open_db(&path).unwrap();
            assert!(fresh);
            write(&db);
        }
        open_db(&path).map(drop).map_err(|e| e.to_string())
    }

    fn vote(db: &DB, term: u64) {
        let v = serde_json::to_vec(&Vote::new(term, 1)).unwrap();
        db.put_cf(cf(db, CF_META), log::KEY_VOTE, v).unwrap();
    }

    #[test]
    fn given_a_log_that_does_not_fit_together_then_the_store_is_refused() {
        let put = |db: &DB, key: u64, value: Vec<u8>| db.put_cf(cf(db, CF_LOG), key.to_be_bytes(), value).unwrap();
        assert_eq!(
            reopened(|db| {
                vote(db, 1);
                put(db, 1, entry(1, 1));
                put(db, 2, entry(2, 1));
            }),
            Ok(())
        );
        let err = reopened(|db| {
            vote(db, 1);
            put(db, 1, entry(1, 1));
            put(db, 3, entry(3, 1));
        })
        .unwrap_err();
        assert!(err.contains("the log jumps from index 1 to 3"), "{err}");
        let err = reopened(|db| {
            vote(db, 1);
            put(db, 4, entry(5, 1));
        })
        .unwrap_err();
        assert!(err.contains("log entry under index 4 says index 5"), "{err}");
        let err = reopened(|db| put(db, 1, entry(1, 1))).unwrap_err();
        assert!(err.contains("no vote"), "{err}");
        let err = reopened(|db| {
            vote(db, 1);
            put(db, 1, entry(1, 2));
        })
        .unwrap_err();
        assert!(err.contains("the vote is for term 1 but the log holds term 2"), "{err}");
        let err = reopened(|db| {
            vote(db, 1);
            db.put_cf(
                cf(db, CF_META),
                log::KEY_LAST_PURGED,
                serde_json::to_vec(&LogId::new(CommittedLeaderId::new(1, 1), 5)).unwrap(),
            )
            .unwrap();
            put(db, 9, entry(9, 1));
        })
        .unwrap_err();
        assert!(err.contains("the log starts at 9, but entries up to 5 were purged"), "{err}");
        assert!(err.contains("will not start") && err.contains("--join"), "{err}");
    }
    #[test]
    fn given_a_store_of_v0_1_0_without_history_then_it_opens_and_gains_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft");
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db = DB::open_cf(&opts, &path, [CF_LOG, CF_META, CF_SNAPSHOT]).unwrap();
            vote(&db, 1);
        }
        let (db, fresh) = open_db(&path).unwrap();
        assert!(!fresh);
        assert!(db.cf_handle(history::CF_HISTORY).is_some());
        drop(db);
        let err = {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let other = dir.path().join("no-log");
            drop(DB::open_cf(&opts, &other, [CF_META, CF_SNAPSHOT]).unwrap());
            open_db(&other).map(drop).unwrap_err().to_string()
        };
        assert!(err.contains("will not start"), "a store missing its log is still refused: {err}");
    }
}
