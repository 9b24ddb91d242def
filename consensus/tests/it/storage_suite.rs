//! openraft's own storage test suite against the RocksDB log and state
//! machine, each case on a fresh data dir on disk.

use std::sync::Arc;

use hpfriends_consensus::store::{open_db, LogStore, StateMachineStore};
use hpfriends_consensus::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for OnDisk {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (db, fresh) = open_db(&dir.path().join("raft")).expect("a new database");
        assert!(fresh, "a fresh dir makes a fresh database");
        let sm = StateMachineStore::load(db.clone(), hpfriends_graph::COMMAND_VERSION, Arc::new(()))?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn given_the_rocksdb_store_then_openraft_storage_suite_passes() {
    Suite::test_all(OnDisk).unwrap();
}
