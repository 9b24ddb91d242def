//! Users: the operator manages them; anyone signed in lists them.

use hpfriends_graph::{Actor, Command};

use super::types::UserInfo;
use super::{execute, AppError};
use crate::state::AppState;

/// Every user: names for everyone (users find each other by name to
/// share), their account's state for the operator and the user themselves.
pub fn list(state: &AppState, viewer: &Actor) -> Vec<UserInfo> {
    let now = super::accounts::now();
    state.node.read_graph(|g| {
        g.users()
            .map(|(n, u)| {
                let shown = match viewer {
                    Actor::Operator => true,
                    Actor::User(me) => me == n,
                };
                let fact = |f: bool| shown.then_some(f);
                UserInfo {
                    name: n.to_string(),
                    has_token: fact(u.token_hash.is_some()),
                    has_password: fact(u.account.password_hash.is_some()),
                    invited: fact(u.account.invitation.as_ref().is_some_and(|i| now < i.expires_at)),
                    disabled: fact(u.account.disabled),
                }
            })
            .collect()
    })
}

pub async fn add(state: &AppState, actor: Actor, name: String) -> Result<(), AppError> {
    execute(state, actor, Command::AddUser { name }).await
}

/// Removes the user with every key, share, membership and admin role it has.
pub async fn remove(state: &AppState, actor: Actor, name: String) -> Result<(), AppError> {
    execute(state, actor, Command::RemoveUser { name }).await
}

/// A new API token for the user, shown once; the old one stops working.
pub async fn new_token(state: &AppState, actor: Actor, name: &str) -> Result<String, AppError> {
    let (token, token_hash) = super::accounts::new_user_token(name);
    execute(state, actor, Command::SetUserToken { name: name.to_string(), token_hash }).await?;
    Ok(token)
}

/// A disabled user's sessions end and their keys and tokens stop working, on every node.
pub async fn set_disabled(state: &AppState, actor: Actor, name: String, disabled: bool) -> Result<(), AppError> {
    execute(state, actor, Command::SetUserDisabled { name, disabled }).await
}

/// At most `max` user names starting with `typed` and, with `groups`, group
/// names as `group:NAME` (`typed` may start with `group:` to ask for groups only).
pub fn names_starting(state: &AppState, typed: &str, groups: bool, max: usize) -> Vec<String> {
    let prefix = typed.strip_prefix("group:").unwrap_or(typed);
    state.node.read_graph(|g| {
        let mut out: Vec<String> = Vec::new();
        if !typed.starts_with("group:") {
            let users = g.user_names_from(prefix).take_while(|n| n.starts_with(prefix));
            out.extend(users.take(max).map(str::to_string));
        }
        if groups {
            let groups = g.group_names_from(prefix).take_while(|n| n.starts_with(prefix));
            out.extend(groups.take(max.saturating_sub(out.len())).map(|n| format!("group:{n}")));
        }
        out
    })
}
