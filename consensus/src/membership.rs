//! Adding a node: as a learner first, promoted to voter once caught up.

use std::collections::BTreeSet;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::{NodeId, NodeInfo, Raft};

/// Why a join did not happen (yet). Only `Refused` is final: the others are
/// retried until the join is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum JoinError {
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// Another membership change is being committed (a node joining at the same time).
    #[error("another membership change is in progress: {0}")]
    Busy(String),
    #[error("the cluster cannot commit the change now: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
}

impl JoinError {
    pub fn is_final(&self) -> bool {
        matches!(self, JoinError::Refused(_))
    }
}

/// Runs on the leader, one join at a time (the caller holds the join lock).
/// Idempotent: a node that is already a voter is left as it is, and a node
/// that is already a learner is promoted.
pub async fn join_here(raft: &Raft, id: NodeId, info: NodeInfo) -> Result<(), JoinError> {
    raft.ensure_linearizable().await.map_err(|e| JoinError::NotLeader(e.to_string()))?;
    let membership = raft.metrics().borrow().membership_config.clone();
    if membership.membership().voter_ids().any(|v| v == id) {
        return Ok(());
    }
    // Blocking: returns once the learner has caught up with the log.
    raft.add_learner(id, info, true).await.map_err(|e| classify(e, &format!("cannot add node {id} as a learner")))?;
    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| classify(e, &format!("cannot promote node {id} to voter")))?;
    tracing::info!(node_id = id, "node joined as a voter");
    Ok(())
}

fn classify(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>, what: &str) -> JoinError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => JoinError::NotLeader(f.to_string()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(p))) => {
            JoinError::Busy(p.to_string())
        }
        other => JoinError::Refused(format!("{what}: {other}")),
    }
}
