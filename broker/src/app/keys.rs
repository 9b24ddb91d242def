//! Keys: the hpfeeds credentials of sensors and readers.

use hpfriends_graph::{Actor, AuthKey, Command, GraphError};

use super::graph::refuse_short_secrets;
use super::types::{KeyChannels, NewKey};
use super::{acting_user, execute, listing_scope, AppError};
use crate::state::AppState;

/// The user's keys (the operator: anyone's, or all).
pub fn list(state: &AppState, actor: &Actor, owner: Option<String>) -> Result<Vec<AuthKey>, AppError> {
    let owner = listing_scope(actor, owner, "keys")?;
    Ok(state.node.read_graph(|g| g.keys().filter(|k| owner.as_ref().is_none_or(|o| &k.owner == o)).cloned().collect()))
}

/// A new key; the secret is generated when none is given.
pub async fn add(state: &AppState, actor: Actor, b: NewKey) -> Result<AuthKey, AppError> {
    let owner = acting_user(&actor, b.owner, "create a key")?;
    let secret = b.secret.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let key = AuthKey { ident: b.ident, secret, owner, publish: b.publish, subscribe: b.subscribe, resume: b.resume };
    refuse_short_secrets(&[Command::AddKey(key.clone())], state.min_key_secret_len)?;
    execute(state, actor, Command::AddKey(key.clone())).await?;
    Ok(key)
}

/// Removes a key; its live connections are closed on every node.
pub async fn remove(state: &AppState, actor: Actor, ident: String) -> Result<(), AppError> {
    execute(state, actor, Command::RemoveKey { ident }).await
}

/// Changes what a key may publish and subscribe to (its ident and secret
/// stay): live connections lose the channels it no longer allows at once.
pub async fn change_channels(state: &AppState, actor: Actor, ident: &str, b: KeyChannels) -> Result<AuthKey, AppError> {
    let old = super::read_before_refusing(state, |g| g.key(ident).cloned(), Option::is_none)
        .await
        .ok_or_else(|| AppError::from(GraphError::UnknownKey(ident.to_string())))?;
    let key = AuthKey { publish: b.publish, subscribe: b.subscribe, ..old };
    // One entry: the key is never missing in between, so its connections stay.
    let commands = vec![Command::RemoveKey { ident: ident.to_string() }, Command::AddKey(key.clone())];
    execute(state, actor, Command::Batch { commands }).await?;
    Ok(key)
}
