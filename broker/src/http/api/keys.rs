//! `/api/v1/keys`: the hpfeeds credentials of sensors and readers.

use axum::extract::{Path, State};
use axum::Json;
use hpfriends_graph::{Actor, AuthKey, Command};

use super::graph::refuse_short_secrets;
use super::openapi::ApiErrors;
use super::{acting_user, listing_scope, write, Body, QueryOf, Reply};
use crate::cluster::report::gather;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::types::{
    CreatedKey, Done, KeyActivity, KeyChannels, KeyConnection, KeyFailedLogin, KeyList, ListQuery, NewKey,
    UnansweredNode,
};
use crate::http::AppState;

/// The user's keys (the operator: anyone's, or all).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(ListQuery), responses((status = 200, body = KeyList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller, query: QueryOf<ListQuery>) -> Reply<KeyList> {
    let axum::extract::Query(q) = query?;
    Ok(Json(list_keys(&state, &actor, q.owner)?))
}

pub fn list_keys(state: &AppState, actor: &Actor, owner: Option<String>) -> Result<KeyList, ApiError> {
    let owner = listing_scope(actor, owner, "keys")?;
    let keys =
        state.node.read_graph(|g| g.keys().filter(|k| owner.as_ref().is_none_or(|o| &k.owner == o)).cloned().collect());
    Ok(KeyList { keys })
}

/// A new key; the secret is generated when none is given.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = NewKey, responses((status = 200, body = CreatedKey), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<NewKey>) -> Reply<CreatedKey> {
    let Json(b) = body?;
    Ok(Json(add_key(&state, actor, b).await?))
}

pub async fn add_key(state: &AppState, actor: Actor, b: NewKey) -> Result<CreatedKey, ApiError> {
    let owner = acting_user(&actor, b.owner, "create a key")?;
    let secret = b.secret.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let key = AuthKey { ident: b.ident, secret, owner, publish: b.publish, subscribe: b.subscribe };
    refuse_short_secrets(&[Command::AddKey(key.clone())], state.min_key_secret_len)?;
    super::execute(state, actor, Command::AddKey(key.clone())).await?;
    Ok(CreatedKey { key })
}

/// Removes a key; its live connections are closed on every node.
#[utoipa::path(delete, path = "/api/v1/keys/{ident}", tag = "keys", params(("ident" = String, Path)), responses((status = 200, body = Done), ApiErrors))]
pub async fn remove(State(state): State<AppState>, Caller(actor): Caller, Path(ident): Path<String>) -> Reply<Done> {
    write(&state, actor, Command::RemoveKey { ident }).await
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
    Ok(Json(change_channels(&state, actor, &ident, b).await?))
}

pub async fn change_channels(
    state: &AppState,
    actor: Actor,
    ident: &str,
    b: KeyChannels,
) -> Result<CreatedKey, ApiError> {
    let old = state
        .node
        .read_graph(|g| g.key(ident).cloned())
        .ok_or_else(|| ApiError::from(hpfriends_graph::GraphError::UnknownKey(ident.to_string())))?;
    let key = AuthKey { publish: b.publish, subscribe: b.subscribe, ..old };
    // One entry: the key is never missing in between, so its sessions stay.
    let commands = vec![Command::RemoveKey { ident: ident.to_string() }, Command::AddKey(key.clone())];
    super::execute(state, actor, Command::Batch { commands }).await?;
    Ok(CreatedKey { key })
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
    Ok(Json(key_activity(&state, &actor, &ident).await?))
}

pub async fn key_activity(state: &AppState, actor: &Actor, ident: &str) -> Result<KeyActivity, ApiError> {
    let owner = state.node.read_graph(|g| g.key(ident).map(|k| k.owner.clone()));
    let owner = match (owner, actor) {
        (Some(owner), Actor::Operator) => owner,
        (Some(owner), Actor::User(me)) if &owner == me => owner,
        _ => return Err(ApiError::not_found(format!("no key {ident:?} of yours"))),
    };
    let mut a = KeyActivity {
        ident: ident.to_string(),
        owner,
        published: 0,
        published_bytes: 0,
        delivered: 0,
        delivered_bytes: 0,
        last_publish: None,
        last_subscribe: None,
        connections: Vec::new(),
        failed_logins: Vec::new(),
        unanswered: Vec::new(),
    };
    let since = |t: u64| (t != 0).then_some(t);
    for (node, report) in gather(state, &[], &[ident.to_string()]).await {
        let report = match report {
            Ok(r) => r,
            Err(reason) => {
                a.unanswered.push(UnansweredNode { node, reason });
                continue;
            }
        };
        for k in report.activity.into_iter().filter(|k| k.ident == ident) {
            a.published += k.published;
            a.published_bytes += k.published_bytes;
            a.delivered += k.delivered;
            a.delivered_bytes += k.delivered_bytes;
            a.last_publish = a.last_publish.max(since(k.last_publish));
            a.last_subscribe = a.last_subscribe.max(since(k.last_subscribe));
            a.connections.extend(k.live.into_iter().map(|c| KeyConnection {
                node,
                remote: c.remote,
                since: c.since,
                channels: c.channels,
            }));
            a.failed_logins.extend(k.failed_logins.into_iter().map(|f| KeyFailedLogin {
                node,
                at: f.at,
                remote: f.remote,
                reason: f.reason,
            }));
        }
    }
    a.connections.sort_by_key(|c| (c.node, c.since));
    a.failed_logins.sort_by_key(|f| std::cmp::Reverse(f.at));
    Ok(a)
}
