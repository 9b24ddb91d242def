//! RocksDB storage: one column family per concern, big-endian `u64` keys.
//!
//! - `log`: index → entry (JSON)
//! - `meta`: vote, committed log id, last purged log id
//! - `snapshot`: the current snapshot (meta + graph)
//!
//! The state machine lives in memory and is persisted through snapshots: on
//! start it loads the last snapshot and openraft re-applies the committed log
//! after it (the committed log id is saved for that).

mod log;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub use log::LogStore;
pub use state_machine::{KeyEntry, Published, StateMachineStore, View};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_SNAPSHOT: &str = "snapshot";

/// Opens (or creates) the node's database under `dir`.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOG, CF_META, CF_SNAPSHOT].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
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
