//! One Raft member: storage, state machine, openraft, and the write/read API
//! the broker uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hpfriends_graph::{Actor, Command, Graph, GraphError};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tokio::sync::watch;

use crate::network::Network;
use crate::store::{open_db, LogStore, Published, StateMachineStore};
pub use crate::store::{KeyEntry, View};
use crate::{NodeId, NodeInfo, Raft, RaftMetrics, Request};

pub struct NodeOptions {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub info: NodeInfo,
    /// Start a new one-node cluster if this data dir holds none.
    pub bootstrap: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Committed, and rejected deterministically by every node: nothing changed.
    #[error(transparent)]
    Rejected(#[from] GraphError),
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    #[error("the cluster cannot commit writes now: {0}")]
    Unavailable(String),
    #[error("membership change refused: {0}")]
    Membership(String),
}

pub struct ConsensusNode {
    id: NodeId,
    raft: Raft,
    published: Arc<Published>,
}

impl ConsensusNode {
    pub async fn start(opts: NodeOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("cannot create data dir {}", opts.data_dir.display()))?;
        let db_dir = opts.data_dir.join("raft");
        let db = open_db(&db_dir).with_context(|| format!("cannot open RocksDB in {}", db_dir.display()))?;
        let log_store = LogStore::new(db.clone());
        let state_machine = StateMachineStore::load(db).context("cannot load the last snapshot")?;
        let published = state_machine.shared();

        let config = openraft::Config {
            cluster_name: "hpfriends".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        };
        let config = Arc::new(config.validate().context("invalid Raft config")?);
        let raft =
            Raft::new(opts.node_id, config, Network, log_store, state_machine).await.context("cannot start Raft")?;

        if opts.bootstrap && !raft.is_initialized().await? {
            tracing::info!(node_id = opts.node_id, "empty data dir: bootstrapping a new one-node cluster");
            raft.initialize(BTreeMap::from([(opts.node_id, opts.info.clone())]))
                .await
                .context("cannot bootstrap the cluster")?;
        }
        Ok(Self { id: opts.node_id, raft, published })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.raft.metrics()
    }

    /// Proposes `command` on behalf of `actor`; returns once it is committed
    /// and applied here. Authorization and validation happen at apply time.
    pub async fn write(&self, actor: Actor, command: Command) -> Result<(), WriteError> {
        match self.raft.client_write(Request { command, actor }).await {
            Ok(resp) => resp.data.result.map_err(WriteError::Rejected),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader { leader: f.leader_id.zip(f.leader_node) })
            }
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
    }

    /// Removes `id` from the cluster (voter or learner). Refused when it
    /// would leave no voter, or when `id` is not a member.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), WriteError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let is_voter = membership.membership().voter_ids().any(|v| v == id);
        let is_node = membership.nodes().any(|(n, _)| *n == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if is_node {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(WriteError::Membership(format!("node {id} is not a member of this cluster")));
        };
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader { leader: f.leader_id.zip(f.leader_node) })
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(WriteError::Membership(e.to_string()))
            }
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
    }

    pub fn read_graph<T>(&self, f: impl FnOnce(&Graph) -> T) -> T {
        self.published.read_graph(f)
    }

    /// The newest view; `subscribe` to be told of each new one.
    pub fn view(&self) -> Arc<View> {
        self.published.view()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.published.subscribe()
    }

    /// Waits until this node knows a leader.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .context("no leader")?;
        Ok(())
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}
