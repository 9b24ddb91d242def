//! How long the archive keeps an owner's messages on a channel, when they
//! want less than the node keeps, or none (docs/sharing.md, "The past").

use std::time::Duration;

use hpfriends_graph::{Actor, Command, Keep};

use super::types::{KeepList, KeepSetting};
use super::{acting_user, execute, AppError, Field};
use crate::state::AppState;

/// What `owner` (the caller, for a user) keeps, by channel.
pub fn list(state: &AppState, actor: &Actor, owner: Option<String>) -> Result<KeepList, AppError> {
    let owner = acting_user(actor, owner, "list the keeps")?;
    let keeps = state.node.read_graph(|g| g.keeps_of(&owner));
    let keeps = keeps
        .into_iter()
        .map(|(channel, keep)| KeepSetting { channel, keep: shown(keep), owner: Some(owner.clone()) })
        .collect();
    Ok(KeepList { owner, keeps })
}

/// Sets how long the owner's messages on the channel are kept.
pub async fn set(state: &AppState, actor: Actor, b: KeepSetting) -> Result<(), AppError> {
    let owner = acting_user(&actor, b.owner, "set a keep")?;
    let keep = parse(&b.keep)?;
    execute(state, actor, Command::SetChannelKeep { owner, channel: b.channel, keep }).await
}

/// `off`, `default` (the node's keep) or a length of time such as `2d`.
pub fn parse(text: &str) -> Result<Option<Keep>, AppError> {
    match text.trim() {
        "off" => Ok(Some(Keep::Off)),
        "default" | "" => Ok(None),
        span => humantime::parse_duration(span)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1))
            .map(|d| Some(Keep::Secs(d.as_secs())))
            .ok_or_else(|| {
                AppError::invalid(Field::Time, format!("keep is off, default or a time like 12h or 2d, not {span:?}"))
            }),
    }
}

/// How a keep is written: `off` or a length of time.
pub fn shown(keep: Keep) -> String {
    match keep {
        Keep::Off => "off".into(),
        Keep::Secs(secs) => humantime::format_duration(Duration::from_secs(secs)).to_string(),
    }
}
