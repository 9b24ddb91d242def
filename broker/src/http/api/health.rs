//! Liveness, readiness and the Prometheus text format.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::app::types::{Health, Readiness};
use crate::state::AppState;

/// 200 while the process runs, draining included.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// 200 only when a load balancer should send clients here.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, body = Readiness), (status = 503, description = "not ready; the body says why", body = Readiness))
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let body = state.readiness();
    let status = if body.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

/// Prometheus text format. Unauthenticated, like `/healthz`: keep the HTTP
/// port on a network that only operators and Prometheus reach.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics_text(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    use crate::telemetry::*;
    let set = |m: Metric, value: f64| metrics::gauge!(m.name).set(value);
    let m = state.node.metrics().borrow().clone();
    set(RAFT_TERM, m.current_term as f64);
    set(RAFT_IS_LEADER, if m.current_leader == Some(m.id) { 1.0 } else { 0.0 });
    set(RAFT_LEADER_ID, m.current_leader.unwrap_or(0) as f64);
    set(RAFT_LAST_APPLIED, m.last_applied.map_or(0, |l| l.index) as f64);
    set(RAFT_LAST_LOG_INDEX, m.last_log_index.unwrap_or(0) as f64);
    for (role, on) in [
        ("leader", m.state.is_leader()),
        ("follower", m.state.is_follower()),
        ("candidate", m.state.is_candidate()),
        ("learner", m.state.is_learner()),
    ] {
        metrics::gauge!(RAFT_ROLE.name, "role" => role).set(if on { 1.0 } else { 0.0 });
    }
    set(RAFT_KNOWN_COMMIT, state.node.known_commit() as f64);
    set(INDEX_GENERATION, state.switchboard.view().index.generation() as f64);
    set(INDEX_BUILD_SECONDS, state.node.index_build_time().as_secs_f64());
    set(CLUSTER_AUTH_REFUSED, state.node.cluster_tls().refused() as f64);
    set(CLUSTER_HANDSHAKES_ENDED, state.node.cluster_tls().handshakes_ended() as f64);
    set(RAFT_ENTRIES_SENT, state.node.entries_bytes_sent() as f64);
    let resumed = state.connections.resume_subscriptions();
    set(SUBSCRIPTIONS, (state.switchboard.subscription_count() + resumed) as f64);
    set(SEND_BUFFER_SIZE, state.switchboard.queued_bytes() as f64);
    state.node.read_graph(|g| {
        use std::sync::atomic::Ordering::Relaxed;
        for (from, to, channel, f) in g.filtered_shares() {
            let c = &f.counts;
            for (outcome, n) in [("passed", &c.passed), ("dropped", &c.dropped), ("error", &c.errors)] {
                let labels = [
                    ("from", from.to_string()),
                    ("to", to.to_string()),
                    ("channel", channel.to_string()),
                    ("outcome", outcome.into()),
                ];
                metrics::counter!(SHARE_FILTER.name, &labels).absolute(n.load(Relaxed));
            }
        }
    });
    let (users, groups, shares, keys) =
        state.node.read_graph(|g| (g.user_count(), g.groups().count(), g.share_count(), g.keys().count()));
    for (kind, n) in [("users", users), ("groups", groups), ("shares", shares), ("keys", keys)] {
        metrics::gauge!(GRAPH_SIZE.name, "kind" => kind).set(n as f64);
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], render())
}
