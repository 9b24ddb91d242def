//! `/api/v1/shares`: offer, accept, remove, list.

use axum::extract::State;
use axum::Json;

use super::openapi::ApiErrors;
use super::{done, Body, QueryOf, Reply};
use crate::app::shares;
use crate::app::types::{Done, ListQuery, ShareList, ShareRequest};
use crate::http::auth::Caller;
use crate::state::AppState;

/// Shares from and to the user (the operator: anyone's, or all): those to a
/// group show for its accepted members and admins, not for invited users.
#[utoipa::path(get, path = "/api/v1/shares", tag = "shares", params(ListQuery), responses((status = 200, body = ShareList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller, query: QueryOf<ListQuery>) -> Reply<ShareList> {
    let axum::extract::Query(q) = query?;
    Ok(Json(ShareList { shares: shares::list(&state, &actor, q.user)? }))
}

/// Offers a share; it carries data once the recipient (or a group admin) accepts.
#[utoipa::path(post, path = "/api/v1/shares", tag = "shares", request_body = ShareRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareRequest>) -> Reply<Done> {
    let Json(b) = body?;
    done(shares::offer(&state, actor, b).await)
}

/// Sets, changes or clears (no `filter`) what a share lets through (the sender only).
#[utoipa::path(post, path = "/api/v1/shares/filter", tag = "shares", request_body = ShareRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn filter(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareRequest>) -> Reply<Done> {
    let Json(b) = body?;
    done(shares::filter(&state, actor, b).await)
}

#[utoipa::path(post, path = "/api/v1/shares/accept", tag = "shares", request_body = ShareRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn accept(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareRequest>) -> Reply<Done> {
    let Json(b) = body?;
    done(shares::accept(&state, actor, b).await)
}

/// Either side removes a share; delivery stops on each node as it applies this.
#[utoipa::path(post, path = "/api/v1/shares/remove", tag = "shares", request_body = ShareRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn remove(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareRequest>) -> Reply<Done> {
    let Json(b) = body?;
    done(shares::remove(&state, actor, b).await)
}
