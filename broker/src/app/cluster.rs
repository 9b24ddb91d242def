//! The cluster: members, roles and lag, each node's report; removing a member.

use std::collections::BTreeMap;

use hpfriends_consensus::NodeId;
use hpfriends_graph::Actor;

use super::types::{ClusterStatus, NodeStatus};
use super::AppError;
use crate::cluster::proto::nodes::NodeReport;
use crate::state::AppState;

/// This node's view of the cluster; the nodes' addresses only when `addresses`
/// (for the operator).
pub fn status(state: &AppState, addresses: bool) -> ClusterStatus {
    let m = state.node.metrics().borrow().clone();
    let replication: BTreeMap<u64, Option<u64>> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, log)| (*id, log.map(|l| l.index))).collect())
        .unwrap_or_default();
    let last_log = m.last_log_index.unwrap_or(0);
    let nodes = m
        .membership_config
        .nodes()
        .map(|(id, info)| {
            let matched =
                if *id == m.id { m.last_applied.map(|l| l.index) } else { replication.get(id).copied().flatten() };
            let shown = |addr: &String| addresses.then(|| addr.clone());
            NodeStatus {
                id: *id,
                voter: m.membership_config.membership().get_joint_config().iter().any(|c| c.contains(id)),
                leader: m.current_leader == Some(*id),
                matched_index: matched,
                lag: matched.map(|i| last_log.saturating_sub(i)),
                cluster_addr: shown(&info.cluster_addr),
                http_addr: shown(&info.http_addr),
                hpfeeds_addr: shown(&info.hpfeeds_addr),
            }
        })
        .collect();
    ClusterStatus {
        node_id: m.id,
        role: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_applied: m.last_applied.map(|l| l.index),
        last_log_index: m.last_log_index,
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        index_generation: state.switchboard.view().index.generation(),
        nodes,
    }
}

/// Every member's report of itself (readiness, peer links, connections); a
/// member that does not answer has the reason instead.
pub async fn reports(state: &AppState) -> BTreeMap<NodeId, Result<NodeReport, String>> {
    crate::cluster::report::gather(state, &[], &[]).await.into_iter().collect()
}

/// Removes a member (voter or learner); refused when it would leave no voter.
pub async fn leave(state: &AppState, actor: &Actor, node_id: NodeId) -> Result<(), AppError> {
    if actor != &Actor::Operator {
        return Err(AppError::Forbidden("only the operator changes cluster membership".into()));
    }
    state.node.remove_member(node_id).await?;
    Ok(())
}
