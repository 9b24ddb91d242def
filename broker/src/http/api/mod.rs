//! Routes and handlers, one file per resource. Every write becomes one graph
//! `Command`, authorized here against this node's graph and again, for good,
//! when Raft applies it on every node alike. Bodies are the types of
//! `http::types`; `openapi.rs` describes them.

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use hpfriends_graph::{Actor, Command};

use super::auth::Caller;
use super::error::ApiError;
use super::types::Done;
use super::AppState;

pub mod cluster;
pub mod graph;
pub mod groups;
pub mod health;
pub mod history;
pub mod keys;
pub mod openapi;
pub mod shares;
pub mod users;

type Reply<T> = Result<Json<T>, ApiError>;
type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;
type QueryOf<T> = Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

/// The longest any request may take, its body included (writes and
/// consistent reads wait at most 10 s for the cluster).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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
}

/// Every route of the node: the API, then the web app, with the deadline and
/// consistent reads around them.
pub fn router(state: AppState) -> Router {
    routes()
        .merge(crate::web::routes())
        .fallback(|uri: axum::http::Uri| async move {
            use axum::response::IntoResponse;
            if uri.path().starts_with("/api/") {
                ApiError::not_found("no such endpoint").into_response()
            } else {
                crate::web::not_found().into_response()
            }
        })
        .layer(axum::middleware::map_response(crate::web::security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), consistent_reads))
        .layer(axum::middleware::from_fn_with_state(REQUEST_TIMEOUT, super::serve::request_deadline))
        .with_state(state)
}

/// `GET /api/…?consistent=true`: wait until this node has applied everything
/// the leader had committed when the request arrived, then read locally.
/// Only for an authenticated caller: the wait costs the cluster a round trip.
async fn consistent_reads(
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

pub async fn execute(state: &AppState, actor: Actor, command: Command) -> Result<(), ApiError> {
    state.node.write(actor, command).await.map_err(ApiError::from)
}

/// Runs the write and answers `{"ok": true}`.
async fn write(state: &AppState, actor: Actor, command: Command) -> Reply<Done> {
    execute(state, actor, command).await?;
    Ok(Json(Done::OK))
}

/// Whose things a listing shows: the operator may ask for anyone's (or
/// everyone's, `None`); a user sees only their own.
fn listing_scope(caller: &Actor, asked: Option<String>, what: &str) -> Result<Option<String>, ApiError> {
    match (caller, asked) {
        (Actor::Operator, asked) => Ok(asked),
        (Actor::User(me), None) => Ok(Some(me.clone())),
        (Actor::User(me), Some(u)) if &u == me => Ok(Some(u)),
        (Actor::User(_), Some(_)) => Err(ApiError::forbidden(format!("a user can only list their own {what}"))),
    }
}

/// The user a command acts for: the caller, or for the operator the named one.
fn acting_user(caller: &Actor, named: Option<String>, what: &str) -> Result<String, ApiError> {
    match (caller, named) {
        (Actor::User(me), None) => Ok(me.clone()),
        (Actor::User(me), Some(n)) if &n == me => Ok(n),
        (Actor::User(_), Some(_)) => Err(ApiError::forbidden(format!("a user can only {what} for themselves"))),
        (Actor::Operator, Some(n)) => Ok(n),
        (Actor::Operator, None) => Err(ApiError::bad_request(format!("the operator must name the user to {what} for"))),
    }
}
