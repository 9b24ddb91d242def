//! Adding a node: as a learner first, promoted to voter once caught up.

use std::collections::BTreeSet;

use openraft::ChangeMembers;

use crate::{NodeId, NodeInfo, Raft};

/// Runs on the leader. Idempotent: a node that is already a voter is left as it is.
pub async fn join_here(raft: &Raft, id: NodeId, info: NodeInfo) -> Result<(), String> {
    raft.ensure_linearizable().await.map_err(|e| format!("not the leader: {e}"))?;
    let membership = raft.metrics().borrow().membership_config.clone();
    if membership.membership().voter_ids().any(|v| v == id) {
        return Ok(());
    }
    // Blocking: returns once the learner has caught up with the log.
    raft.add_learner(id, info, true).await.map_err(|e| format!("cannot add node {id} as a learner: {e}"))?;
    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| format!("cannot promote node {id} to voter: {e}"))?;
    tracing::info!(node_id = id, "node joined as a voter");
    Ok(())
}
