//! `/api/v1/shares`: offer, accept, remove, list.

use axum::extract::State;
use axum::Json;
use hpfriends_graph::{Actor, Command, Target};

use super::openapi::ApiErrors;
use super::{acting_user, listing_scope, write, Body, QueryOf, Reply};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::types::{Done, ListQuery, ShareList, ShareRequest};
use crate::http::AppState;

/// Shares from and to the user (the operator: anyone's, or all): those to a
/// group show for its accepted members and admins, not for invited users.
#[utoipa::path(get, path = "/api/v1/shares", tag = "shares", params(ListQuery), responses((status = 200, body = ShareList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller, query: QueryOf<ListQuery>) -> Reply<ShareList> {
    let axum::extract::Query(q) = query?;
    Ok(Json(list_shares(&state, &actor, q.user)?))
}

pub fn list_shares(state: &AppState, actor: &Actor, user: Option<String>) -> Result<ShareList, ApiError> {
    let user = listing_scope(actor, user, "shares")?;
    let shares = state.node.read_graph(|g| match &user {
        None => g.all_shares().collect(),
        Some(u) => g.shares_of(u),
    });
    Ok(ShareList { shares })
}

/// Offers a share; it carries data once the recipient (or a group admin) accepts.
#[utoipa::path(post, path = "/api/v1/shares", tag = "shares", request_body = ShareRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareRequest>) -> Reply<Done> {
    let Json(b) = body?;
    write(&state, actor.clone(), offer_command(&actor, b)?).await
}

pub fn offer_command(actor: &Actor, b: ShareRequest) -> Result<Command, ApiError> {
    let from = acting_user(actor, b.from, "offer a share")?;
    let kind = b.kind.ok_or_else(|| ApiError::bad_request("missing field `kind`: shares or shares_all"))?;
    Ok(Command::AddShare { from, to: b.to, channel: b.channel, kind })
}

/// The share a request names: `from` is the caller's when a user leaves it out.
fn share_key(actor: &Actor, b: ShareRequest) -> Result<(String, Target, String), ApiError> {
    let from = match (b.from, actor) {
        (Some(f), _) => f,
        (None, Actor::User(me)) => me.clone(),
        (None, Actor::Operator) => return Err(ApiError::bad_request("missing field `from`")),
    };
    Ok((from, b.to, b.channel))
}

pub fn accept_command(actor: &Actor, b: ShareRequest) -> Result<Command, ApiError> {
    let (from, to, channel) = share_key(actor, b)?;
    Ok(Command::AcceptShare { from, to, channel })
}

pub fn remove_command(actor: &Actor, b: ShareRequest) -> Result<Command, ApiError> {
    let (from, to, channel) = share_key(actor, b)?;
    Ok(Command::RemoveShare { from, to, channel })
}

#[utoipa::path(post, path = "/api/v1/shares/accept", tag = "shares", request_body = ShareRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn accept(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareRequest>) -> Reply<Done> {
    let Json(b) = body?;
    write(&state, actor.clone(), accept_command(&actor, b)?).await
}

/// Either side removes a share; delivery stops on each node as it applies this.
#[utoipa::path(post, path = "/api/v1/shares/remove", tag = "shares", request_body = ShareRequest, responses((status = 200, body = Done), ApiErrors))]
pub async fn remove(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareRequest>) -> Reply<Done> {
    let Json(b) = body?;
    write(&state, actor.clone(), remove_command(&actor, b)?).await
}
