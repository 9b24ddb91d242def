//! `/api/v1/cluster`: members, roles and lag; removing a member.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use hpfriends_graph::Actor;

use super::openapi::ApiErrors;
use super::{Body, Reply};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::types::{ClusterStatus, Done, LeaveRequest, NodeStatus};
use crate::http::AppState;

/// This node's view of the cluster; the nodes' addresses for the operator only.
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatus), ApiErrors))]
pub async fn status(State(state): State<AppState>, Caller(actor): Caller) -> Reply<ClusterStatus> {
    Ok(Json(cluster_status(&state, actor == Actor::Operator)))
}

pub fn cluster_status(state: &AppState, addresses: bool) -> ClusterStatus {
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
        index_generation: state.router.view().index.generation(),
        nodes,
    }
}

/// Removes a member (voter or learner); refused when it would leave no voter.
#[utoipa::path(post, path = "/api/v1/cluster/leave", tag = "cluster", request_body = LeaveRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn leave(State(state): State<AppState>, Caller(actor): Caller, body: Body<LeaveRequest>) -> Reply<Done> {
    if actor != Actor::Operator {
        return Err(ApiError::forbidden("only the operator changes cluster membership"));
    }
    let Json(b) = body?;
    state.node.remove_member(b.node_id).await?;
    Ok(Json(Done::OK))
}
