//! `/api/v1/users`: the operator manages users; anyone signed in lists them.

use axum::extract::{Path, State};
use axum::Json;
use hpfriends_graph::Command;

use super::openapi::ApiErrors;
use super::{write, Body, Reply};
use crate::http::auth::{new_user_token, Caller};
use crate::http::types::{Done, IssuedToken, NewUser, UserInfo, UserList};
use crate::http::AppState;

/// Every user's name (users find each other by name to share).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = UserList), ApiErrors))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Reply<UserList> {
    let users = state.node.read_graph(|g| {
        g.users().map(|(n, u)| UserInfo { name: n.to_string(), has_token: u.token_hash.is_some() }).collect()
    });
    Ok(Json(UserList { users }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser, responses((status = 200, body = Done), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<NewUser>) -> Reply<Done> {
    let Json(body) = body?;
    write(&state, actor, Command::AddUser { name: body.name }).await
}

/// Removes the user with every key, share, membership and admin role it has.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn remove(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply<Done> {
    write(&state, actor, Command::RemoveUser { name }).await
}

/// A new API token for the user; the old one stops working.
#[utoipa::path(post, path = "/api/v1/users/{name}/token", tag = "users", params(("name" = String, Path)), responses((status = 200, body = IssuedToken), ApiErrors))]
pub async fn token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Reply<IssuedToken> {
    let (token, token_hash) = new_user_token(&name);
    super::execute(&state, actor, Command::SetUserToken { name: name.clone(), token_hash }).await?;
    Ok(Json(IssuedToken { user: name, token }))
}
