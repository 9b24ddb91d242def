//! The Raft log and vote in RocksDB.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::{cf, synced, CF_LOG, CF_META};
use crate::{Entry, LogId, NodeId, StorageError, TypeConfig};

pub(super) const KEY_VOTE: &[u8] = b"vote";
pub(super) const KEY_COMMITTED: &[u8] = b"committed";
pub(super) const KEY_LAST_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().expect("log keys are 8 bytes"))
}

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let raw =
            self.db.get_cf(cf(&self.db, CF_META), key).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        raw.map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let opts = if sync { synced() } else { rocksdb::WriteOptions::default() };
        self.db
            .put_cf_opt(cf(&self.db, CF_META), key, bytes, &opts)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    /// The id of the last entry this node holds (also when compacted away).
    pub(crate) fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        Ok(self.last_entry_id()?.or(last_purged))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(io_err(ErrorSubject::Logs, ErrorVerb::Read, e)),
            Some(Ok((_, value))) => {
                let entry: Entry =
                    serde_json::from_slice(&value).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let mode = IteratorMode::From(&index_key(start), Direction::Forward);
        let mut entries = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_LOG), mode) {
            let (key, value) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            if !range.contains(&index_of(&key)) {
                break;
            }
            let entry: Entry =
                serde_json::from_slice(&value).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState { last_purged_log_id: self.get_meta(KEY_LAST_PURGED)?, last_log_id: self.last_log_id()? })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying a little less on restart.
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let value = serde_json::to_vec(&entry).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            batch.put_cf(cf(&self.db, CF_LOG), index_key(entry.log_id.index), value);
        }
        // The WAL is synced before openraft hears the entries are durable.
        let result = self.db.write_opt(batch, &synced()).map_err(std::io::Error::other);
        let report = result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(report);
        result.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf_log = cf(&self.db, CF_LOG);
        self.db
            .delete_range_cf_opt(cf_log, index_key(log_id.index), index_key(u64::MAX), &synced())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        // delete_range excludes the end key.
        self.db
            .delete_cf_opt(cf_log, index_key(u64::MAX), &synced())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(KEY_LAST_PURGED, &log_id, true)?;
        self.db
            .delete_range_cf(cf(&self.db, CF_LOG), index_key(0), index_key(log_id.index + 1))
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
