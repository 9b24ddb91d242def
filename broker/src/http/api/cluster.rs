//! `/api/v1/cluster`: members, roles and lag; removing a member.

use axum::extract::State;
use axum::Json;
use hpfriends_graph::Actor;

use super::openapi::ApiErrors;
use super::{done, Body, Reply};
use crate::app::cluster;
use crate::app::types::{ClusterStatus, Done, LeaveRequest};
use crate::http::auth::Caller;
use crate::state::AppState;

/// This node's view of the cluster; the nodes' addresses for the operator only.
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatus), ApiErrors))]
pub async fn status(State(state): State<AppState>, Caller(actor): Caller) -> Reply<ClusterStatus> {
    Ok(Json(cluster::status(&state, actor == Actor::Operator)))
}

/// Removes a member (voter or learner); refused when it would leave no voter.
#[utoipa::path(post, path = "/api/v1/cluster/leave", tag = "cluster", request_body = LeaveRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn leave(State(state): State<AppState>, Caller(actor): Caller, body: Body<LeaveRequest>) -> Reply<Done> {
    let Json(b) = body?;
    done(cluster::leave(&state, &actor, b.node_id).await)
}
