//! Raft for the hpfriends graph: openraft (`storage-v2`) with its log, vote and
//! snapshots in RocksDB. After each apply the node tells its [`OnApply`]
//! (the broker's publish path) the new sharing index and authkeys.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub mod cluster_tls;
pub mod grpc;
pub mod log_budget;
mod membership;
pub mod network;
mod node;
mod pre_vote;
pub mod store;

/// Generated from `proto/cluster.proto`.
pub mod proto {
    tonic::include_proto!("hpfriends.cluster.v1");
}

pub use membership::JoinError;
pub use node::{ConsensusNode, HandOffError, KeyEntry, KeyTable, NodeOptions, OnApply, WriteError};

/// Raft node identifier (the `--node-id` flag).
pub type NodeId = u64;

/// What every member announces about itself; kept in the Raft membership so
/// every node knows every other node's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub cluster_addr: String,
    pub http_addr: String,
    pub hpfeeds_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster={} http={} hpfeeds={}", self.cluster_addr, self.http_addr, self.hpfeeds_addr)
    }
}

/// A Raft log entry's payload. Fields are only ever added, with defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: hpfriends_graph::Command,
    /// Checked at apply time (`hpfriends_graph::authorize`) on every node.
    #[serde(default)]
    pub actor: hpfriends_graph::Actor,
    /// Unique per write: a retried write with the same id is answered with
    /// the first result instead of being applied again.
    #[serde(default)]
    pub id: Option<String>,
    /// The node the request came in through and its clock then: what the
    /// history records, the same on every node. `None` from v0.1.0 nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub node: NodeId,
    pub at: hpfriends_graph::accounts::UnixTime,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.command)
    }
}

/// The outcome of applying one entry: graph commands are validated at apply
/// time, deterministically on every node, so a rejection is a normal result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub result: Result<(), hpfriends_graph::GraphError>,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, NodeInfo>;
