//! One Raft member: storage, state machine, openraft, and the write/read API
//! the broker uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hpfriends_graph::{Actor, Command, Graph, GraphError, SharingIndex};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tokio::sync::watch;

use crate::cluster_tls::{ClusterTls, Trust};
use crate::grpc::{JoinOutcome, ReadIndexOutcome, Signals, WriteOutcome};
use crate::membership::JoinError;
use crate::network::{connect, decode, encode, Network, PeerRpc};
use crate::pre_vote::Timers;
use crate::store::{open_db, read_identity, write_identity, Identity, LogStore, Published, StateMachineStore};
pub use crate::store::{KeyEntry, KeyTable, OnApply};
use crate::{NodeId, NodeInfo, Raft, RaftMetrics, Request};

pub struct NodeOptions {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub info: NodeInfo,
    /// Start a new one-node cluster if this data dir holds none.
    pub bootstrap: bool,
    /// What proves peers to each other on the cluster port.
    pub trust: Trust,
    /// Snapshot (and compact the log) after this many entries.
    pub snapshot_every_logs: u64,
    /// The command format version this node announces and reads; normally
    /// `hpfriends_graph::COMMAND_VERSION`.
    pub command_version: u32,
    /// Told of every applied change (the publish path).
    pub on_apply: Arc<dyn OnApply>,
}

/// How long a write may take, across leader changes, before the caller is told
/// the cluster cannot commit it.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// How long one forwarded RPC to the leader may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Committed, and rejected deterministically by every node: nothing changed.
    #[error(transparent)]
    Rejected(#[from] GraphError),
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    #[error("the cluster cannot commit writes now: {0}")]
    Unavailable(String),
    /// A consistent read could not learn what the leader has committed.
    #[error("the cluster cannot confirm a consistent read now: {0}")]
    ReadUnavailable(String),
    #[error("membership change refused: {0}")]
    Membership(String),
    /// The entry kind is newer than what some voter runs; nothing was written.
    #[error("not every voter can read this entry yet: {0}")]
    NeedsUpgrade(String),
}

/// Why leadership was not handed over; the node stays a working leader.
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    #[error("no voter caught up with the log")]
    NoVoterCaughtUp,
    #[error("node {0} left the membership")]
    TargetLeft(NodeId),
    #[error(transparent)]
    Connect(#[from] crate::cluster_tls::ConnectError),
    #[error("node {target} refused to campaign: {why}")]
    CampaignRefused { target: NodeId, why: String },
    #[error("node {target} did not take over: {why}")]
    NotTakenOver { target: NodeId, why: String },
}

pub struct ConsensusNode {
    id: NodeId,
    raft: Raft,
    published: Arc<Published>,
    tls: ClusterTls,
    /// Bytes of log entries sent to peers ([`Network`]).
    entries_sent: Arc<std::sync::atomic::AtomicU64>,
    command_version: u32,
    pub(crate) signals: Arc<Signals>,
    /// Joins run one at a time on the leader: openraft refuses a membership
    /// change while another is being committed.
    join_lock: tokio::sync::Mutex<()>,
    db: Arc<rocksdb::DB>,
    log_store: LogStore,
    identity: std::sync::Mutex<Identity>,
    /// The election timer ([`crate::pre_vote::run`]).
    elections: tokio::task::JoinHandle<()>,
}

/// The heartbeat and election timers (ms). Followers refuse to vote until
/// `ELECTION_TIMEOUT_MAX` has passed since the leader's last message.
const HEARTBEAT_INTERVAL: u64 = 100;
const ELECTION_TIMEOUT_MIN: u64 = 400;
const ELECTION_TIMEOUT_MAX: u64 = 800;
pub(crate) const TIMERS: Timers = Timers {
    heartbeat: Duration::from_millis(HEARTBEAT_INTERVAL),
    election_min: Duration::from_millis(ELECTION_TIMEOUT_MIN),
    election_max: Duration::from_millis(ELECTION_TIMEOUT_MAX),
};
/// How long to wait for a voter's answer about its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(2);

/// One attempt's outcome inside a retry loop.
enum Attempt<T> {
    Done(T),
    Retry(String),
}

/// A write sent to the leader: retried when the leader is unreachable, slow
/// or has moved; done with the leader's answer otherwise.
async fn forward_write(mut rpc: PeerRpc, request: &Request) -> Attempt<Result<(), WriteError>> {
    let reply = match tokio::time::timeout(FORWARD_TIMEOUT, rpc.client_write(encode(request))).await {
        Err(_) => return Attempt::Retry("the leader did not answer in time".into()),
        Ok(Err(status)) => return Attempt::Retry(format!("leader unreachable: {}", status.message())),
        Ok(Ok(reply)) => reply,
    };
    match decode::<WriteOutcome>(reply.get_ref()) {
        Ok(Ok(outcome)) => Attempt::Done(outcome.result.map_err(WriteError::Rejected)),
        Ok(Err(ClientWriteError::ForwardToLeader(_))) => Attempt::Retry("the leader moved".into()),
        Ok(Err(e)) => Attempt::Done(Err(WriteError::Unavailable(e.to_string()))),
        Err(e) => Attempt::Done(Err(WriteError::Unavailable(format!("cannot read the leader's answer: {e}")))),
    }
}

impl ConsensusNode {
    pub async fn start(opts: NodeOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("cannot create data dir {}", opts.data_dir.display()))?;
        let db_dir = opts.data_dir.join("raft");
        let (db, fresh) = open_db(&db_dir)?;
        let identity = read_identity(&db).context("cannot read the node's identity")?;
        if let Some(id) = identity.as_ref().filter(|i| i.node_id != opts.node_id) {
            anyhow::bail!(
                "{} belongs to node {}, not node {}: start it with --node-id {}, or give node {} its own data dir",
                opts.data_dir.display(),
                id.node_id,
                opts.node_id,
                id.node_id,
                opts.node_id
            );
        }
        let log_store = LogStore::new(db.clone());
        let state_machine = StateMachineStore::load(db.clone(), opts.command_version, opts.on_apply.clone())
            .context("cannot load the last snapshot")?;
        let published = state_machine.shared();

        let config = openraft::Config {
            cluster_name: "hpfriends".into(),
            heartbeat_interval: HEARTBEAT_INTERVAL,
            election_timeout_min: ELECTION_TIMEOUT_MIN,
            election_timeout_max: ELECTION_TIMEOUT_MAX,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(opts.snapshot_every_logs),
            max_in_snapshot_log_to_keep: (opts.snapshot_every_logs / 5).min(1_000),
            // Large graphs: give a snapshot transfer time.
            install_snapshot_timeout: 30_000,
            // Elections are started by the pre-vote timer instead.
            enable_elect: false,
            ..Default::default()
        };
        let config = Arc::new(config.validate().context("invalid Raft config")?);
        let source_ip = opts.info.cluster_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
        let tls = ClusterTls::new(opts.trust, opts.node_id)?.with_source_ip(source_ip);
        let entries_sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let network = Network { tls: tls.clone(), entries_sent: entries_sent.clone() };
        let raft = Raft::new(opts.node_id, config, network, log_store.clone(), state_machine)
            .await
            .context("cannot start Raft")?;

        let mut identity = identity.unwrap_or(Identity { node_id: opts.node_id, cluster_id: None });
        if !raft.is_initialized().await? {
            if opts.bootstrap {
                // Only over nothing: a used data dir is never replaced by a new cluster.
                anyhow::ensure!(
                    fresh,
                    "{} holds a node that never became part of a cluster: start it with --join, or give it an \
                     empty data dir to bootstrap a new cluster",
                    opts.data_dir.display()
                );
                identity.cluster_id = Some(hex::encode(rand::random::<[u8; 16]>()));
                write_identity(&db, &identity)?;
                tracing::info!(node_id = opts.node_id, "empty data dir: bootstrapping a new one-node cluster");
                raft.initialize(BTreeMap::from([(opts.node_id, opts.info.clone())]))
                    .await
                    .context("cannot bootstrap the cluster")?;
            } else if fresh {
                write_identity(&db, &identity)?;
            }
        }
        let signals = Arc::new(Signals::default());
        let elections = tokio::spawn(crate::pre_vote::run(
            opts.node_id,
            raft.clone(),
            log_store.clone(),
            tls.clone(),
            signals.clone(),
            TIMERS,
        ));
        Ok(Self {
            id: opts.node_id,
            raft,
            published,
            tls,
            entries_sent,
            command_version: opts.command_version,
            signals,
            join_lock: tokio::sync::Mutex::new(()),
            db,
            log_store,
            identity: std::sync::Mutex::new(identity),
            elections,
        })
    }

    /// False for a fresh node that waits to be added to a cluster.
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
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

    /// The Raft service for the cluster port (refuses unauthenticated peers).
    pub fn grpc_service(self: &Arc<Self>) -> crate::grpc::AuthenticatedRaftService {
        crate::grpc::service(self.clone())
    }

    pub(crate) fn log_store(&self) -> &LogStore {
        &self.log_store
    }

    pub fn cluster_tls(&self) -> &ClusterTls {
        &self.tls
    }

    /// Bytes of log entries this node has sent to its peers, each send
    /// counted once (`hpfriends_raft_entries_sent_bytes`).
    pub fn entries_bytes_sent(&self) -> u64 {
        self.entries_sent.load(Ordering::Relaxed)
    }

    pub fn command_version(&self) -> u32 {
        self.command_version
    }

    /// The id of the cluster this node belongs to (`None` until it joined).
    pub fn cluster_id(&self) -> Option<String> {
        self.identity.lock().expect("identity lock").cluster_id.clone()
    }

    /// Records the cluster this node joined; refuses another cluster than the
    /// one its data dir already belongs to.
    pub fn joined(&self, cluster_id: &str) -> anyhow::Result<()> {
        let mut identity = self.identity.lock().expect("identity lock");
        match &identity.cluster_id {
            Some(own) if own != cluster_id => anyhow::bail!(
                "this data dir belongs to cluster {own}, and the node asked to join cluster {cluster_id}: give it \
                 an empty data dir to join another cluster"
            ),
            Some(_) => Ok(()),
            None => {
                identity.cluster_id = Some(cluster_id.to_string());
                write_identity(&self.db, &identity)
            }
        }
    }

    /// Proposes `command` on behalf of `actor`; returns once it is committed
    /// and applied by the leader. On a follower it is forwarded to the leader,
    /// retried across leader changes until `WRITE_DEADLINE`. A write the
    /// actor may not make, or that would not apply, is refused here, against
    /// this node's graph, so it never becomes a log entry; apply checks
    /// again, authoritatively.
    pub async fn write(&self, actor: Actor, command: Command) -> Result<(), WriteError> {
        self.read_graph(|g| hpfriends_graph::authorize(&actor, &command, g)).map_err(GraphError::from)?;
        self.dry_run(&command).await?;
        self.check_voters_read(&command).await?;
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let request = Request {
            command,
            actor,
            id: Some(hex::encode(rand::random::<[u8; 16]>())),
            origin: Some(crate::Origin { node: self.id, at }),
        };
        self.with_leader("commit the write", |leader| {
            let request = request.clone();
            async move {
                match leader {
                    None if self.signals.handing_off.load(Ordering::Acquire) => {
                        Attempt::Retry("leadership is being handed off".into())
                    }
                    None => match self.raft.client_write(request).await {
                        Ok(resp) => Attempt::Done(resp.data.result.map_err(WriteError::Rejected)),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                            Attempt::Retry("leadership moved".into())
                        }
                        Err(e) => Attempt::Done(Err(WriteError::Unavailable(e.to_string()))),
                    },
                    Some(rpc) => forward_write(rpc, &request).await,
                }
            }
        })
        .await
    }

    /// Refuses a command that would not apply (`Graph::dry_run`, at the cost of
    /// what it names). Before refusing, this node catches up with the leader
    /// and looks again: what was changed through another node a moment ago
    /// is not refused here for not being known yet.
    async fn dry_run(&self, command: &Command) -> Result<(), WriteError> {
        if self.read_graph(|g| g.dry_run(command)).is_ok() {
            return Ok(());
        }
        let _ = self.read_barrier().await;
        self.read_graph(|g| g.dry_run(command)).map_err(WriteError::from)
    }

    /// Refuses a command whose entry kind some voter cannot read yet: during a
    /// rolling upgrade a new kind is written only once every voter runs a
    /// binary that knows it. Entries every version reads skip the check.
    async fn check_voters_read(&self, command: &Command) -> Result<(), WriteError> {
        let needed = command.min_version();
        if needed <= 1 {
            return Ok(());
        }
        if needed > self.command_version {
            return Err(WriteError::NeedsUpgrade(format!(
                "the entry needs command version {needed}; this node (node {}) runs version {}",
                self.id, self.command_version
            )));
        }
        let voters: Vec<(NodeId, NodeInfo)> = {
            let m = self.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            membership
                .voter_ids()
                .filter(|id| *id != self.id)
                .filter_map(|id| membership.get_node(&id).map(|info| (id, info.clone())))
                .collect()
        };
        let mut behind = Vec::new();
        for (id, info) in voters {
            match self.peer_command_version(&info).await {
                Ok(v) if v >= needed => {}
                Ok(v) => behind.push(format!("node {id} runs version {v}")),
                Err(e) => behind.push(format!("node {id} did not tell its version ({e})")),
            }
        }
        if behind.is_empty() {
            Ok(())
        } else {
            Err(WriteError::NeedsUpgrade(format!(
                "the entry needs command version {needed} on every voter; {}",
                behind.join("; ")
            )))
        }
    }

    async fn peer_command_version(&self, info: &NodeInfo) -> Result<u32, String> {
        let mut rpc = connect(&info.cluster_addr, self.tls.clone()).map_err(|e| e.to_string())?;
        match tokio::time::timeout(VERSION_TIMEOUT, rpc.command_version(encode(&()))).await {
            Err(_) => Err(format!("no answer within {VERSION_TIMEOUT:?}")),
            Ok(Err(status)) => Err(status.message().to_string()),
            Ok(Ok(reply)) => decode(reply.get_ref()).map_err(|e| e.to_string()),
        }
    }

    /// Hands Raft leadership to a caught-up voter before this node stops.
    /// openraft 0.9 has no transfer call, so: stop writes, heartbeats and
    /// the election timer here; wait until the followers' leader lease has run out;
    /// ask the most caught-up voter to start an election, which it wins
    /// because its log is complete. Returns the new leader, or `None` when
    /// this node does not lead or has no peer to hand to.
    pub async fn hand_off_leadership(&self, timeout: Duration) -> Result<Option<NodeId>, HandOffError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return Ok(None);
        }
        let membership = m.membership_config.membership().clone();
        if !membership.voter_ids().any(|id| id != self.id) {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        self.signals.handing_off.store(true, Ordering::Release);
        let runtime = self.raft.runtime_config();
        runtime.heartbeat(false);
        // A voter (not this node) whose matched index is this node's last log index.
        let caught_up_voter = |m: &RaftMetrics| {
            m.replication.iter().flatten().find_map(|(id, matched)| {
                let voter = *id != self.id && membership.voter_ids().any(|v| v == *id);
                (voter && matched.map(|l| l.index) == m.last_log_index).then_some(*id)
            })
        };
        let outcome = async {
            // Writes already accepted still replicate; wait for a voter that has them all.
            let m = self
                .raft
                .wait(Some(timeout))
                .metrics(|m| caught_up_voter(m).is_some(), "a voter caught up with the log")
                .await
                .map_err(|_| HandOffError::NoVoterCaughtUp)?;
            let target = caught_up_voter(&m).ok_or(HandOffError::NoVoterCaughtUp)?;
            tokio::time::sleep(Duration::from_millis(ELECTION_TIMEOUT_MAX + HEARTBEAT_INTERVAL)).await;
            let info = membership.get_node(&target).ok_or(HandOffError::TargetLeft(target))?;
            let mut rpc = connect(&info.cluster_addr, self.tls.clone())?;
            let refused = |why: String| HandOffError::CampaignRefused { target, why };
            let reply = rpc.campaign(encode(&())).await.map_err(|s| refused(s.message().to_string()))?;
            decode::<Result<(), String>>(reply.get_ref()).map_err(|e| refused(e.to_string()))?.map_err(refused)?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let me = self.id;
            self.raft
                .wait(Some(left))
                .metrics(|m| m.current_leader.is_some_and(|l| l != me), "another node leads")
                .await
                .map_err(|e| HandOffError::NotTakenOver { target, why: e.to_string() })?;
            Ok(self.raft.metrics().borrow().current_leader)
        }
        .await;
        if outcome.is_err() {
            // Stay a working leader: the node is still needed.
            runtime.heartbeat(true);
        }
        self.signals.handing_off.store(false, Ordering::Release);
        outcome
    }

    /// Waits until this node has applied everything committed before the
    /// call, as confirmed by the leader: a read after this is linearizable.
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        let index = self
            .with_leader("confirm a linearizable read", |leader| async move {
                let outcome: ReadIndexOutcome = match leader {
                    None => self
                        .raft
                        .ensure_linearizable()
                        .await
                        .map(|id| id.map(|l| l.index))
                        .map_err(|e| format!("not the leader: {e}")),
                    Some(mut rpc) => match rpc.read_index(encode(&())).await {
                        Ok(r) => decode::<ReadIndexOutcome>(r.get_ref()).unwrap_or_else(|e| Err(e.to_string())),
                        Err(status) => return Attempt::Retry(status.message().to_string()),
                    },
                };
                match outcome {
                    Ok(index) => Attempt::Done(Ok(index)),
                    Err(e) => Attempt::Retry(e),
                }
            })
            .await
            .map_err(|e| match e {
                WriteError::Unavailable(why) => WriteError::ReadUnavailable(why),
                other => other,
            })?;
        if let Some(index) = index {
            self.raft
                .wait(Some(WRITE_DEADLINE))
                .applied_index_at_least(Some(index), "linearizable read")
                .await
                .map_err(|e| WriteError::ReadUnavailable(format!("did not catch up with the leader: {e}")))?;
        }
        Ok(())
    }

    /// Adds a node (learner, then voter once caught up), via the leader.
    /// Joins that arrive together are done one after the other.
    pub async fn join(&self, id: NodeId, info: NodeInfo) -> Result<(), WriteError> {
        self.with_leader("add the node", |leader| {
            let info = info.clone();
            async move {
                let outcome = match leader {
                    None => {
                        let _one_at_a_time = self.join_lock.lock().await;
                        crate::membership::join_here(&self.raft, id, info).await
                    }
                    Some(mut rpc) => match rpc.join(encode(&(id, info))).await {
                        Ok(r) => decode::<JoinOutcome>(r.get_ref())
                            .unwrap_or_else(|e| Err(JoinError::Refused(format!("cannot read the answer: {e}"))))
                            .map(drop),
                        Err(status) => return Attempt::Retry(status.message().to_string()),
                    },
                };
                match outcome {
                    Ok(()) => Attempt::Done(Ok(())),
                    Err(e) if e.is_final() => Attempt::Done(Err(WriteError::Membership(e.to_string()))),
                    Err(e) => Attempt::Retry(e.to_string()),
                }
            }
        })
        .await
    }

    /// Runs `attempt` here when this node leads (`None`) or against the
    /// leader's RPC client, retrying until it is done or `WRITE_DEADLINE` passes.
    async fn with_leader<'a, T, F, Fut>(&'a self, what: &str, mut attempt: F) -> Result<T, WriteError>
    where
        F: FnMut(Option<PeerRpc>) -> Fut,
        Fut: std::future::Future<Output = Attempt<Result<T, WriteError>>> + 'a,
    {
        let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
        loop {
            let leader = {
                let m = self.raft.metrics().borrow().clone();
                m.current_leader
                    .map(|id| (id, m.membership_config.nodes().find(|(n, _)| **n == id).map(|(_, i)| i.clone())))
            };
            let outcome = match leader {
                Some((id, _)) if id == self.id => attempt(None).await,
                Some((_, Some(info))) => match connect(&info.cluster_addr, self.tls.clone()) {
                    Ok(rpc) => attempt(Some(rpc)).await,
                    Err(e) => Attempt::Retry(e.to_string()),
                },
                _ => Attempt::Retry("no leader is known".into()),
            };
            let why = match outcome {
                Attempt::Done(result) => return result,
                Attempt::Retry(why) => why,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(WriteError::Unavailable(format!(
                    "could not {what} within {WRITE_DEADLINE:?} (no quorum reachable?): {why}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
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

    /// How long the last full sharing-index build (a snapshot load) took.
    /// The audit trail of the graph, as this node applied it.
    pub fn history(&self) -> &crate::store::HistoryLog {
        self.published.history()
    }

    pub fn index_build_time(&self) -> Duration {
        self.published.index_build_time()
    }

    /// Runs `f` on the current graph and its sharing index.
    pub fn read_index<T>(&self, f: impl FnOnce(&Graph, &SharingIndex) -> T) -> T {
        self.published.read_index(f)
    }

    /// True when this node leads, or has applied everything up to the commit
    /// index its leader last told it: its reads are current.
    pub fn caught_up(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader == Some(self.id) {
            return true;
        }
        let applied = m.last_applied.map_or(0, |l| l.index);
        m.current_leader.is_some() && applied >= self.signals.known_commit.load(Ordering::Acquire)
    }

    /// The highest commit index a leader has sent this node (0 on the leader
    /// itself, which knows its commit from its own metrics).
    pub fn known_commit(&self) -> u64 {
        self.signals.known_commit.load(Ordering::Acquire)
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
        self.elections.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

impl Drop for ConsensusNode {
    fn drop(&mut self) {
        // The timer holds a handle on Raft, which would otherwise outlive the node.
        self.elections.abort();
    }
}
