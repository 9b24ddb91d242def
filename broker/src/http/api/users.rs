//! `/api/v1/users`: the operator manages users; anyone signed in lists them.

use axum::extract::{Path, State};
use axum::Json;

use super::openapi::ApiErrors;
use super::{done, Body, Reply};
use crate::app::types::{Done, InvitationLink, IssuedToken, NewUser, UserList};
use crate::app::{accounts, users};
use crate::http::auth::Caller;
use crate::state::AppState;

/// Every user's name (users find each other by name to share); the state
/// of their account to the operator, and to a user about themselves.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = UserList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller) -> Reply<UserList> {
    Ok(Json(UserList { users: users::list(&state, &actor) }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser, responses((status = 200, body = Done), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<NewUser>) -> Reply<Done> {
    let Json(body) = body?;
    done(users::add(&state, actor, body.name).await)
}

/// Removes the user with every key, share, membership and admin role it has.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn remove(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply<Done> {
    done(users::remove(&state, actor, name).await)
}

/// A new API token for the user; the old one stops working.
#[utoipa::path(post, path = "/api/v1/users/{name}/token", tag = "users", params(("name" = String, Path)), responses((status = 200, body = IssuedToken), ApiErrors))]
pub async fn token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Reply<IssuedToken> {
    let token = users::new_token(&state, actor, &name).await?;
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
    let (link, expires_at) = accounts::invite(&state, actor, &name).await?;
    Ok(Json(InvitationLink { user: name, link, expires_at }))
}

/// A disabled user's sessions end and their keys and tokens stop working, on every node.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "users", params(("name" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn disable(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply<Done> {
    done(users::set_disabled(&state, actor, name, true).await)
}

#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "users", params(("name" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn enable(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply<Done> {
    done(users::set_disabled(&state, actor, name, false).await)
}
