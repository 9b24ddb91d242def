//! Routes and handlers, one file per resource: each takes the caller and the
//! body, calls the use case in `app/` and answers JSON. Bodies are the types
//! of `app::types`; `openapi.rs` describes them.

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::auth::Caller;
use super::error::ApiError;
use crate::app::types::Done;
use crate::app::AppError;
use crate::state::AppState;

pub mod cluster;
pub mod graph;
pub mod groups;
pub mod health;
pub mod history;
pub mod keeps;
pub mod keys;
pub mod messages;
pub mod openapi;
pub mod shares;
pub mod users;

type Reply<T> = Result<Json<T>, ApiError>;
type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;
type QueryOf<T> = Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

/// The longest any request may take, its body included (writes and
/// consistent reads wait at most 10 s for the cluster).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics_text))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/users", get(users::list).post(users::add))
        .route("/api/v1/users/{name}", delete(users::remove))
        .route("/api/v1/users/{name}/token", post(users::token))
        .route("/api/v1/users/{name}/invite", post(users::invite))
        .route("/api/v1/users/{name}/disable", post(users::disable))
        .route("/api/v1/users/{name}/enable", post(users::enable))
        .route("/api/v1/groups", get(groups::list).post(groups::add))
        .route("/api/v1/groups/{group}/invite", post(groups::invite))
        .route("/api/v1/groups/{group}/join", post(groups::join))
        .route("/api/v1/groups/{group}/leave", post(groups::leave))
        .route("/api/v1/groups/{group}/remove-member", post(groups::remove_member))
        .route("/api/v1/groups/{group}/admins", post(groups::add_admin))
        .route("/api/v1/shares", get(shares::list).post(shares::add))
        .route("/api/v1/shares/accept", post(shares::accept))
        .route("/api/v1/shares/filter", post(shares::filter))
        .route("/api/v1/shares/remove", post(shares::remove))
        .route("/api/v1/keys", get(keys::list).post(keys::add))
        .route("/api/v1/keys/{ident}", delete(keys::remove).put(keys::change))
        .route("/api/v1/keys/{ident}/activity", get(keys::activity))
        .route("/api/v1/explain", get(graph::explain))
        .route("/api/v1/apply", post(graph::apply).layer(DefaultBodyLimit::max(graph::MAX_APPLY_BODY)))
        .route("/api/v1/cluster/status", get(cluster::status))
        .route("/api/v1/cluster/leave", post(cluster::leave))
        .route("/api/v1/history", get(history::list))
        .route("/api/v1/history/retention", get(history::retention).put(history::set_retention))
        .route("/api/v1/messages", get(messages::list))
        .route("/api/v1/archive/keeps", get(keeps::list).put(keeps::set))
}

/// `GET /api/…?consistent=true`: wait until this node has applied everything
/// the leader had committed when the request arrived, then read locally.
/// Only for an authenticated caller: the wait costs the cluster a round trip.
pub async fn consistent_reads(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let wanted = req.method() == axum::http::Method::GET
        && req.uri().path().starts_with("/api/")
        && req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "consistent=true"));
    if !wanted {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    if let Err(e) = Caller::from_request_parts(&mut parts, &state).await {
        return e.into_response();
    }
    if let Err(e) = state.node.read_barrier().await {
        return ApiError::from(e).into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body)).await
}

/// Answers `{"ok": true}` for a use case that answers nothing else.
fn done(result: Result<(), AppError>) -> Reply<Done> {
    result?;
    Ok(Json(Done::OK))
}
