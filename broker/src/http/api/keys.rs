//! `/api/v1/keys`: the hpfeeds credentials of sensors and readers.

use axum::extract::{Path, State};
use axum::Json;
use hpfriends_graph::{AuthKey, Command};

use super::graph::refuse_short_secrets;
use super::openapi::ApiErrors;
use super::{acting_user, listing_scope, write, Body, QueryOf, Reply};
use crate::http::auth::Caller;
use crate::http::types::{CreatedKey, Done, KeyList, ListQuery, NewKey};
use crate::http::AppState;

/// The user's keys (the operator: anyone's, or all).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(ListQuery), responses((status = 200, body = KeyList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller, query: QueryOf<ListQuery>) -> Reply<KeyList> {
    let axum::extract::Query(q) = query?;
    let owner = listing_scope(&actor, q.owner, "keys")?;
    let keys =
        state.node.read_graph(|g| g.keys().filter(|k| owner.as_ref().is_none_or(|o| &k.owner == o)).cloned().collect());
    Ok(Json(KeyList { keys }))
}

/// A new key; the secret is generated when none is given.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = NewKey, responses((status = 200, body = CreatedKey), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<NewKey>) -> Reply<CreatedKey> {
    let Json(b) = body?;
    let owner = acting_user(&actor, b.owner, "create a key")?;
    let secret = b.secret.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let key = AuthKey { ident: b.ident, secret, owner, publish: b.publish, subscribe: b.subscribe };
    refuse_short_secrets(&[Command::AddKey(key.clone())], state.min_key_secret_len)?;
    super::execute(&state, actor, Command::AddKey(key.clone())).await?;
    Ok(Json(CreatedKey { key }))
}

/// Removes a key; its live connections are closed on every node.
#[utoipa::path(delete, path = "/api/v1/keys/{ident}", tag = "keys", params(("ident" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn remove(State(state): State<AppState>, Caller(actor): Caller, Path(ident): Path<String>) -> Reply<Done> {
    write(&state, actor, Command::RemoveKey { ident }).await
}
