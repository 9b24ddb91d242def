//! `/api/v1/keys`: the hpfeeds credentials of sensors and readers.

use axum::extract::{Path, State};
use axum::Json;

use super::openapi::ApiErrors;
use super::{done, Body, QueryOf, Reply};
use crate::app::types::{CreatedKey, Done, KeyActivity, KeyChannels, KeyList, ListQuery, NewKey};
use crate::app::{activity, keys};
use crate::http::auth::Caller;
use crate::state::AppState;

/// The user's keys (the operator: anyone's, or all).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(ListQuery), responses((status = 200, body = KeyList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller, query: QueryOf<ListQuery>) -> Reply<KeyList> {
    let axum::extract::Query(q) = query?;
    Ok(Json(KeyList { keys: keys::list(&state, &actor, q.owner)? }))
}

/// A new key; the secret is generated when none is given.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = NewKey, responses((status = 200, body = CreatedKey), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<NewKey>) -> Reply<CreatedKey> {
    let Json(b) = body?;
    Ok(Json(CreatedKey { key: keys::add(&state, actor, b).await? }))
}

/// Removes a key; its live connections are closed on every node.
#[utoipa::path(delete, path = "/api/v1/keys/{ident}", tag = "keys", params(("ident" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn remove(State(state): State<AppState>, Caller(actor): Caller, Path(ident): Path<String>) -> Reply<Done> {
    done(keys::remove(&state, actor, ident).await)
}

/// Changes what a key may publish and subscribe to (its ident and secret
/// stay): live connections lose the channels it no longer allows at once.
#[utoipa::path(put, path = "/api/v1/keys/{ident}", tag = "keys", params(("ident" = String, Path)), request_body = KeyChannels, responses((status = 200, body = CreatedKey), ApiErrors))]
pub async fn change(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ident): Path<String>,
    body: Body<KeyChannels>,
) -> Reply<CreatedKey> {
    let Json(b) = body?;
    Ok(Json(CreatedKey { key: keys::change_channels(&state, actor, &ident, b).await? }))
}

/// What the key did: messages and bytes published and delivered, when it last
/// published and subscribed, its connections now and its last failed logins,
/// summed over every node (a node that does not answer is named).
#[utoipa::path(get, path = "/api/v1/keys/{ident}/activity", tag = "keys", params(("ident" = String, Path)), responses((status = 200, body = KeyActivity), ApiErrors))]
pub async fn activity(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ident): Path<String>,
) -> Reply<KeyActivity> {
    Ok(Json(activity::of_key(&state, &actor, &ident).await?))
}
