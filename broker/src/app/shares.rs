//! Shares: offer, accept, remove, list.

use hpfriends_graph::{explain, publishers_reaching, Actor, Command, Filter, ShareRecord, Target};

use super::types::ShareRequest;
use super::{acting_user, execute, listing_scope, AppError, Field};
use crate::state::AppState;

/// Shares from and to the user (the operator: anyone's, or all): those to a
/// group show for its accepted members and admins, not for invited users.
pub fn list(state: &AppState, actor: &Actor, user: Option<String>) -> Result<Vec<ShareRecord>, AppError> {
    let user = listing_scope(actor, user, "shares")?;
    Ok(state.node.read_graph(|g| match &user {
        None => g.all_shares().collect(),
        Some(u) => g.shares_of(u),
    }))
}

/// The offers `me` may answer: not yet accepted, to them or to a group they
/// administer (`graph::authz::may_accept`).
pub fn offers_to(state: &AppState, me: &str) -> Result<Vec<ShareRecord>, AppError> {
    let shares = list(state, &Actor::User(me.to_string()), None)?;
    Ok(state.node.read_graph(|g| {
        shares
            .into_iter()
            .filter(|s| !s.accepted && s.from != me && hpfriends_graph::may_accept(g, me, &s.to))
            .collect()
    }))
}

/// Offers a share; it carries data once the recipient (or a group admin)
/// accepts. With a filter, both in one entry.
pub async fn offer(state: &AppState, actor: Actor, b: ShareRequest) -> Result<(), AppError> {
    let from = acting_user(&actor, b.from, "offer a share")?;
    let kind = b.kind.ok_or_else(|| AppError::invalid(Field::Kind, "missing field `kind`: shares or shares_all"))?;
    let add = Command::AddShare {
        from: from.clone(),
        to: b.to.clone(),
        channel: b.channel.clone(),
        kind,
        with_history: b.with_history,
    };
    let command = match b.filter.filter(|f| !f.is_empty()) {
        None => add,
        Some(f) => Command::Batch { commands: vec![add, set_filter(from, b.to, b.channel, Some(f))] },
    };
    execute(state, actor, command).await
}

/// Sets, changes or (with none) clears what a share lets through; the
/// sender's, effective on every node as it applies it.
pub async fn filter(state: &AppState, actor: Actor, b: ShareRequest) -> Result<(), AppError> {
    let from = acting_user(&actor, b.from, "filter a share")?;
    execute(state, actor, set_filter(from, b.to, b.channel, b.filter)).await
}

/// The command, with a fresh pseudonym key in case the sender has none yet.
fn set_filter(from: String, to: Target, channel: String, filter: Option<Filter>) -> Command {
    let mut command = Command::SetShareFilter { from, to, channel, filter, key: None };
    with_pseudonym_keys(std::slice::from_mut(&mut command));
    command
}

/// Gives each filter that pseudonymizes a fresh key, in case its sender has
/// none yet (the graph keeps the first one a sender gets, never replaces it).
pub(super) fn with_pseudonym_keys(commands: &mut [Command]) {
    for c in commands {
        if let Command::SetShareFilter { filter: Some(f), key, .. } = c {
            if !f.pseudonymize.is_empty() {
                *key = Some(hex::encode(rand::random::<[u8; 32]>()));
            }
        }
    }
}

pub async fn accept(state: &AppState, actor: Actor, b: ShareRequest) -> Result<(), AppError> {
    let (from, to, channel) = share_key(&actor, b)?;
    execute(state, actor, Command::AcceptShare { from, to, channel }).await
}

/// Either side removes a share (or declines an offer); delivery stops on
/// each node as it applies this.
pub async fn remove(state: &AppState, actor: Actor, b: ShareRequest) -> Result<(), AppError> {
    let (from, to, channel) = share_key(&actor, b)?;
    execute(state, actor, Command::RemoveShare { from, to, channel }).await
}

/// The share a request names: `from` is the caller's when a user leaves it out.
fn share_key(actor: &Actor, b: ShareRequest) -> Result<(String, Target, String), AppError> {
    let from = match (b.from, actor) {
        (Some(f), _) => f,
        (None, Actor::User(me)) => me.clone(),
        (None, Actor::Operator) => return Err(AppError::invalid(Field::Share, "missing field `from`")),
    };
    Ok((from, b.to, b.channel))
}

/// (publisher, channel, path) for every publisher whose data reaches `me`
/// (the sharing rule walked back from me), each with the path `explain` finds.
pub fn receiving(state: &AppState, me: &str) -> Vec<(String, String, String)> {
    state.node.read_graph(|g| {
        publishers_reaching(g, me)
            .into_iter()
            .map(|(channel, publisher)| {
                let path = explain(g, &publisher, me, &channel).to_string();
                (publisher, channel, path)
            })
            .collect()
    })
}

/// Channels the user may see messages on: those their keys subscribe to
/// and those shared with them or their groups.
pub fn readable_channels(state: &AppState, me: &str) -> Vec<String> {
    state.node.read_graph(|g| {
        let mut channels: Vec<String> =
            g.keys().filter(|k| k.owner == me).flat_map(|k| k.subscribe.iter().cloned()).collect();
        let mut targets = vec![Target::User(me.to_string())];
        targets.extend(g.groups_of(me).map(|group| Target::Group(group.to_string())));
        for to in &targets {
            channels.extend(g.shares_into(to).map(|(channel, _)| channel.to_string()));
        }
        channels.sort();
        channels.dedup();
        channels
    })
}
