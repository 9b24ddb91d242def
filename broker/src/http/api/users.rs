//! `/api/v1/users`: the operator manages users; anyone signed in lists them.

use axum::extract::{Path, State};
use axum::Json;
use hpfriends_graph::Command;

use super::openapi::ApiErrors;
use super::{write, Body, Reply};
use crate::http::auth::{new_user_token, Caller};
use crate::http::types::{Done, InvitationLink, IssuedToken, NewUser, UserInfo, UserList};
use crate::http::AppState;

/// Every user's name (users find each other by name to share).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = UserList), ApiErrors))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Reply<UserList> {
    Ok(Json(list_users(&state)))
}

pub fn list_users(state: &AppState) -> UserList {
    let now = crate::http::accounts::now();
    let users = state.node.read_graph(|g| {
        g.users()
            .map(|(n, u)| UserInfo {
                name: n.to_string(),
                has_token: u.token_hash.is_some(),
                has_password: u.account.password_hash.is_some(),
                invited: u.account.invitation.as_ref().is_some_and(|i| now < i.expires_at),
                disabled: u.account.disabled,
            })
            .collect()
    });
    UserList { users }
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

/// The operator invites a person (the user is created if new) or, for an
/// existing user, resets their password: a one-time link that expires.
#[utoipa::path(post, path = "/api/v1/users/{name}/invite", tag = "users", params(("name" = String, Path)), responses((status = 200, body = InvitationLink), ApiErrors))]
pub async fn invite(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Reply<InvitationLink> {
    let (link, expires_at) = crate::http::accounts::invite(&state, actor, &name).await?;
    Ok(Json(InvitationLink { user: name, link, expires_at }))
}

/// A disabled user's sessions end and their keys and tokens stop working, on every node.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "users", params(("name" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn disable(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply<Done> {
    write(&state, actor, Command::SetUserDisabled { name, disabled: true }).await
}

#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "users", params(("name" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn enable(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply<Done> {
    write(&state, actor, Command::SetUserDisabled { name, disabled: false }).await
}
