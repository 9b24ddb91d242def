//! The replicated state machine: the graph, its sharing index and authkeys,
//! kept in memory and persisted as snapshots in RocksDB; and the history of
//! the graph, written to its column family as entries apply.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hpfriends_graph::history::{Event, Ids};
use hpfriends_graph::{Actor, AuthKey, Command, Graph, GraphError, LookupMap, SharingIndex, UserId};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use rocksdb::DB;
use serde::{Deserialize, Serialize};

use super::history::{self, HistoryLog, HistoryState, Recorder};
use super::{cf, synced, CF_SNAPSHOT};
use crate::{Entry, LogId, NodeId, NodeInfo, Response, StorageError, TypeConfig};

/// The snapshot's meta (JSON) and its data (the bytes as they are).
const KEY_META: &[u8] = b"current-meta";
const KEY_DATA: &[u8] = b"current-data";
/// v0.1.0 kept both in one JSON value, the data as an array of numbers
/// (four bytes and more per byte); read when the two keys are not there.
const KEY_V0_1: &[u8] = b"current";

/// An authkey with its owner's id, as the publish path uses it: its channel
/// lists sorted, so checking a frame costs the log of their length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub key: AuthKey,
    pub owner: UserId,
}

impl KeyEntry {
    pub fn new(key: &AuthKey, owner: UserId) -> KeyEntry {
        let mut key = key.clone();
        for list in [&mut key.publish, &mut key.subscribe] {
            list.sort_unstable();
            list.dedup();
        }
        KeyEntry { key, owner }
    }

    pub fn may_publish(&self, channel: &str) -> bool {
        self.key.publish.binary_search_by(|c| c.as_str().cmp(channel)).is_ok()
    }

    pub fn may_subscribe(&self, channel: &str) -> bool {
        self.key.subscribe.binary_search_by(|c| c.as_str().cmp(channel)).is_ok()
    }
}

/// Authkeys by ident.
pub type KeyTable = LookupMap<String, Arc<KeyEntry>>;

/// Told of the state after every applied change, snapshot load included:
/// the one way from an applied entry to the publish path.
pub trait OnApply: Send + Sync + 'static {
    fn applied(&self, index: &SharingIndex, keys: &Arc<KeyTable>, last_applied: Option<LogId>);
}

/// For nodes whose applies nobody reads (tests of the store).
impl OnApply for () {
    fn applied(&self, _: &SharingIndex, _: &Arc<KeyTable>, _: Option<LogId>) {}
}

/// State shared between the Raft state machine and the node's readers.
pub struct Published {
    state: RwLock<MachineState>,
    on_apply: Arc<dyn OnApply>,
    history: HistoryLog,
}

impl Published {
    /// Runs `f` on the current graph (a short read lock; never held across an await).
    pub fn read_graph<T>(&self, f: impl FnOnce(&Graph) -> T) -> T {
        f(&self.state.read().expect("state lock poisoned").graph)
    }

    /// Runs `f` on the current graph and its sharing index.
    pub fn read_index<T>(&self, f: impl FnOnce(&Graph, &SharingIndex) -> T) -> T {
        let state = self.state.read().expect("state lock poisoned");
        f(&state.graph, &state.index)
    }

    /// The audit trail as this node has applied it.
    pub fn history(&self) -> &HistoryLog {
        &self.history
    }

    /// How long the last full sharing-index build (a snapshot load) took.
    pub fn index_build_time(&self) -> std::time::Duration {
        self.state.read().expect("state lock poisoned").index_build
    }

    fn publish(&self, state: &MachineState) {
        self.on_apply.applied(&state.index, &state.keys, state.last_applied);
    }
}

#[derive(Default)]
struct MachineState {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, NodeInfo>,
    graph: Graph,
    index: SharingIndex,
    keys: Arc<KeyTable>,
    recent: RecentRequests,
    history: HistoryState,
    index_build: std::time::Duration,
}

/// Results of the last requests by id, so that a write retried after a lost
/// answer is answered, not applied twice. Part of the snapshot: every node
/// must make the same decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RecentRequests {
    order: VecDeque<String>,
    results: HashMap<String, Result<(), GraphError>>,
}

impl RecentRequests {
    const CAPACITY: usize = 10_000;

    fn get(&self, id: &str) -> Option<&Result<(), GraphError>> {
        self.results.get(id)
    }

    fn insert(&mut self, id: String, result: Result<(), GraphError>) {
        if self.order.len() == Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.results.insert(id, result);
    }
}

impl MachineState {
    fn from_snapshot(data: SnapshotData) -> Self {
        let graph = data.graph.restore();
        let started = std::time::Instant::now();
        let index = SharingIndex::build(&graph);
        let index_build = started.elapsed();
        let keys = Arc::new(key_table(&graph));
        MachineState {
            last_applied: data.last_applied,
            membership: data.membership,
            graph,
            index,
            keys,
            recent: data.recent,
            history: data.history,
            index_build,
        }
    }
}

fn key_table(graph: &Graph) -> KeyTable {
    graph
        .keys()
        .filter(|k| graph.is_enabled(&k.owner)) // a disabled user's keys log nobody in
        .filter_map(|k| {
            let owner = graph.user_id(&k.owner)?; // every key has an existing owner
            Some((k.ident.clone(), Arc::new(KeyEntry::new(k, owner))))
        })
        .collect()
}

/// The serialized form of a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, NodeInfo>,
    graph: Graph,
    #[serde(default)]
    recent: RecentRequests,
    #[serde(default)]
    history: HistoryState,
    #[serde(default)]
    history_events: Vec<Event>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    recorder: Arc<Recorder>,
    shared: Arc<Published>,
    snapshots_built: Arc<AtomicU64>,
    /// The command format version this node reads (`COMMAND_VERSION` unless
    /// a newer one is announced for an upgrade test).
    command_version: u32,
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

impl StateMachineStore {
    /// Loads the last snapshot from `db`, if any.
    pub fn load(db: Arc<DB>, command_version: u32, on_apply: Arc<dyn OnApply>) -> Result<Self, StorageError> {
        let state = match read_stored(&db)? {
            Some(stored) => {
                let mut data: SnapshotData =
                    serde_json::from_slice(&stored.data).map_err(|e| sm_err(ErrorVerb::Read, e))?;
                history::restore(&db, &data.history, &std::mem::take(&mut data.history_events), false)
                    .map_err(|e| sm_err(ErrorVerb::Write, AnyError::error(e)))?;
                MachineState::from_snapshot(data)
            }
            None => MachineState::default(),
        };
        let recorder = Arc::new(Recorder::start(db.clone(), state.history.first_seq));
        let history = HistoryLog::new(db.clone(), recorder.clone());
        let shared = Arc::new(Published { state: RwLock::new(MachineState::default()), on_apply, history });
        shared.publish(&state);
        *shared.state.write().expect("fresh lock") = state;
        Ok(Self { db, recorder, shared, snapshots_built: Arc::new(AtomicU64::new(0)), command_version })
    }

    pub fn shared(&self) -> Arc<Published> {
        self.shared.clone()
    }
}

/// The last applied index of the stored snapshot, if there is one.
pub(super) fn stored_last_applied(db: &DB) -> Result<Option<u64>, String> {
    let stored = read_stored(db).map_err(|e| format!("the snapshot cannot be read: {e}"))?;
    Ok(stored.and_then(|s| s.meta.last_log_id.map(|l| l.index)))
}

fn read_stored(db: &DB) -> Result<Option<StoredSnapshot>, StorageError> {
    let get = |key| db.get_cf(cf(db, CF_SNAPSHOT), key).map_err(|e| sm_err(ErrorVerb::Read, e));
    match (get(KEY_META)?, get(KEY_DATA)?) {
        (Some(meta), Some(data)) => {
            let meta = serde_json::from_slice(&meta).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            Ok(Some(StoredSnapshot { meta, data }))
        }
        _ => get(KEY_V0_1)?.map(|b| serde_json::from_slice(&b)).transpose().map_err(|e| sm_err(ErrorVerb::Read, e)),
    }
}

/// Meta and data in one synced batch; a v0.1.0 snapshot goes with it.
fn write_stored(db: &DB, stored: &StoredSnapshot) -> Result<(), StorageError> {
    let meta = serde_json::to_vec(&stored.meta).map_err(|e| sm_err(ErrorVerb::Write, e))?;
    let mut batch = rocksdb::WriteBatch::default();
    let family = cf(db, CF_SNAPSHOT);
    batch.put_cf(family, KEY_META, meta);
    batch.put_cf(family, KEY_DATA, &stored.data);
    batch.delete_cf(family, KEY_V0_1);
    db.write_opt(batch, &synced()).map_err(|e| sm_err(ErrorVerb::Write, e))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (mut data, last_applied, membership) = {
            let state = self.shared.state.read().expect("state lock poisoned");
            let data = SnapshotData {
                last_applied: state.last_applied,
                membership: state.membership.clone(),
                graph: state.graph.clone(),
                recent: state.recent.clone(),
                history: state.history,
                history_events: Vec::new(),
            };
            (data, state.last_applied, state.membership.clone())
        };
        // The events of every entry up to `last_applied` (handed to the recorder under the lock).
        let (recorder, db, next_seq) = (self.recorder.clone(), self.db.clone(), data.history.next_seq);
        let events = tokio::task::spawn_blocking(move || {
            recorder.caught_up()?;
            history::read_all(&db, next_seq)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| sm_err(ErrorVerb::Read, AnyError::error(e)))?;
        data.history.first_seq = events.first().map_or(next_seq, |e| e.seq);
        data.history_events = events;
        let bytes = serde_json::to_vec(&data).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let n = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{n}", id.leader_id, id.index),
            None => format!("empty-{n}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        write_stored(&self.db, &StoredSnapshot { meta: meta.clone(), data: bytes.clone() })?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, NodeInfo>), StorageError> {
        let state = self.shared.state.read().expect("state lock poisoned");
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut jobs = Vec::new();
        let mut state = self.shared.state.write().expect("state lock poisoned");
        let state = &mut *state;
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(())
                }
                EntryPayload::Normal(req) => match req.id.as_deref().and_then(|id| state.recent.get(id)) {
                    Some(earlier) => earlier.clone(),
                    None => {
                        let removed = hpfriends_graph::history::removed_keys(&req.command, &state.graph);
                        let actor_id = match &req.actor {
                            Actor::User(name) => state.graph.user_id(name),
                            Actor::Operator => None,
                        };
                        state.graph.set_position(entry.log_id.index);
                        let result = apply_command(state, &req.actor, &req.command, self.command_version);
                        if let Some(id) = req.id {
                            state.recent.insert(id, result.as_ref().map(drop).map_err(Clone::clone));
                        }
                        match result {
                            Ok(ids) => {
                                let (index, retention) = (entry.log_id.index, state.graph.history_retention());
                                let entry = history::Entry {
                                    index,
                                    origin: req.origin,
                                    actor: req.actor,
                                    actor_id,
                                    command: req.command,
                                    removed,
                                    ids,
                                };
                                jobs.extend(state.history.number(entry, retention));
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                },
            };
            responses.push(Response { result });
        }
        // Handed over under the lock: a snapshot waits for what it covers.
        for job in jobs {
            self.recorder.send(job);
        }
        self.shared.publish(state);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let mut data: SnapshotData = serde_json::from_slice(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let (recorder, db, snapshot) = (self.recorder.clone(), self.db.clone(), data.history);
        let events = std::mem::take(&mut data.history_events);
        tokio::task::spawn_blocking(move || {
            recorder.caught_up()?;
            history::restore(&db, &snapshot, &events, true)?;
            recorder.restart_at(snapshot.first_seq);
            Ok::<_, String>(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| sm_err(ErrorVerb::Write, AnyError::error(e)))?;
        write_stored(&self.db, &StoredSnapshot { meta: meta.clone(), data: bytes })?;
        let new_state = MachineState::from_snapshot(data);
        let mut state = self.shared.state.write().expect("state lock poisoned");
        *state = new_state;
        self.shared.publish(&state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(read_stored(&self.db)?
            .map(|stored| Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}

/// Applies an entry's command; the ids of what each recorded change names.
fn apply_command(
    state: &mut MachineState,
    actor: &Actor,
    command: &Command,
    version: u32,
) -> Result<Vec<Ids>, GraphError> {
    if command.min_version() > version {
        return Err(GraphError::UnknownCommand(format!("needs command version {}", command.min_version())));
    }
    hpfriends_graph::authorize(actor, command, &state.graph)?;
    let applied = state.graph.apply(command)?;
    state.index.update(&state.graph, &applied);
    if applied.keys_changed {
        state.keys = Arc::new(key_table(&state.graph));
    }
    Ok(applied.ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_entry_allows_exactly_the_channels_its_key_lists() {
        let listed: Vec<String> = ["z", "a", "m", "a", "cowrie.sessions", "é"].map(String::from).to_vec();
        let key = AuthKey {
            ident: "k".into(),
            secret: "s".into(),
            owner: "u".into(),
            publish: listed.clone(),
            subscribe: listed[..2].to_vec(),
            resume: false,
        };
        let entry = KeyEntry::new(&key, 7);
        for channel in ["z", "a", "m", "cowrie.sessions", "é", "b", "", "cowrie", "zz"] {
            assert_eq!(entry.may_publish(channel), listed.iter().any(|c| c == channel), "{channel:?}");
            assert_eq!(entry.may_subscribe(channel), listed[..2].iter().any(|c| c == channel), "{channel:?}");
        }
    }

    #[tokio::test]
    async fn given_a_snapshot_of_v0_1_0_then_it_loads_and_the_next_one_is_stored_as_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = super::super::open_db(&dir.path().join("raft")).unwrap();
        let mut graph = Graph::new();
        graph.apply(&Command::AddUser { name: "old".into() }).unwrap();
        let data = serde_json::json!({"last_applied": null, "membership": StoredMembership::<NodeId, NodeInfo>::default(), "graph": graph});
        let meta = SnapshotMeta::<NodeId, NodeInfo> { snapshot_id: "v0.1.0".into(), ..Default::default() };
        let old = serde_json::json!({"meta": meta, "data": serde_json::to_vec(&data).unwrap()});
        db.put_cf(cf(&db, CF_SNAPSHOT), KEY_V0_1, serde_json::to_vec(&old).unwrap()).unwrap();

        let mut machine = StateMachineStore::load(db.clone(), hpfriends_graph::COMMAND_VERSION, Arc::new(())).unwrap();
        assert!(machine.shared().read_graph(|g| g.has_user("old")));
        machine.build_snapshot().await.unwrap();
        let raw = db.get_cf(cf(&db, CF_SNAPSHOT), KEY_DATA).unwrap().unwrap();
        assert!(raw.starts_with(b"{"), "the data is stored as the JSON it is, not as numbers");
        assert!(db.get_cf(cf(&db, CF_SNAPSHOT), KEY_V0_1).unwrap().is_none());
        let again = StateMachineStore::load(db, hpfriends_graph::COMMAND_VERSION, Arc::new(())).unwrap();
        assert!(again.shared().read_graph(|g| g.has_user("old")));
    }
}
