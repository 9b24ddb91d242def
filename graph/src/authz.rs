//! Who may issue which command (docs/sharing.md, "Who may change what").
//!
//! The operator may do anything. A user may change only their own keys and
//! shares, accept what is offered to them, and manage groups they administer.

use crate::model::{Graph, Target};
use crate::Command;

/// Who issued a command. Travels with the command in the Raft log, so every
/// node authorizes it at apply time against the same state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    #[default]
    Operator,
    User(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forbidden: {0}")]
pub struct Forbidden(pub String);

impl From<Forbidden> for crate::GraphError {
    fn from(f: Forbidden) -> Self {
        crate::GraphError::Forbidden(f.0)
    }
}

pub fn authorize(actor: &Actor, cmd: &Command, graph: &Graph) -> Result<(), Forbidden> {
    let Actor::User(me) = actor else {
        return Ok(());
    };
    let me = me.as_str();
    let deny = |why: String| Err(Forbidden(why));
    let admin_of = |group: &str| graph.is_group_admin(group, me);
    let receives = |to: &Target| match to {
        Target::User(u) => u == me,
        Target::Group(g) => admin_of(g),
    };
    match cmd {
        Command::SetHistoryRetention(_) => deny("only the operator sets how much history is kept".into()),
        Command::AddUser { .. }
        | Command::RemoveUser { .. }
        | Command::InviteUser { .. }
        | Command::SetUserDisabled { .. } => deny("only the operator manages users".into()),
        Command::StartSession { actor: Actor::User(name), .. }
        | Command::SetPassword { name, .. }
        | Command::AddApiToken { name, .. }
        | Command::RemoveApiToken { name, .. } => {
            if name == me {
                Ok(())
            } else {
                deny(format!("{me} cannot change {name}'s account"))
            }
        }
        Command::StartSession { actor: Actor::Operator, .. } => deny("only the operator signs in as operator".into()),
        Command::EndSession { session_hash } => match graph.session_owner(session_hash) {
            Some(Actor::User(owner)) if owner == me => Ok(()),
            None => Ok(()),
            Some(_) => deny("a user may only end their own sessions".into()),
        },
        Command::SetUserToken { name, .. } if name == me => Ok(()),
        Command::SetUserToken { .. } => deny("a user may only renew their own token".into()),
        Command::AddGroup { creator, .. } if creator == me => Ok(()),
        Command::AddGroup { .. } => deny("a group's creator must be the user who creates it".into()),
        Command::RemoveGroup { name: group, .. }
        | Command::AddGroupAdmin { group, .. }
        | Command::InviteMember { group, .. } => {
            if admin_of(group) {
                Ok(())
            } else {
                deny(format!("{me} is not an admin of group {group}"))
            }
        }
        Command::AcceptMembership { user, group } if user != me => {
            deny(format!("only {user} can accept an invitation to {group}"))
        }
        Command::AcceptMembership { .. } => Ok(()),
        Command::RemoveMember { group, user } => {
            if user == me || admin_of(group) {
                Ok(())
            } else {
                deny(format!("only {user} or an admin of {group} can remove that membership"))
            }
        }
        Command::AddShare { from, .. } if from != me => deny(format!("{me} cannot offer {from}'s data")),
        Command::AddShare { .. } => Ok(()),
        Command::AcceptShare { to, .. } => {
            if receives(to) {
                Ok(())
            } else {
                deny(format!("only the recipient {to} (for a group: an admin) can accept this share"))
            }
        }
        Command::RemoveShare { from, to, .. } => {
            if from == me || receives(to) {
                Ok(())
            } else {
                deny("only the sender or the recipient can remove a share".into())
            }
        }
        Command::AddKey(key) if key.owner != me => deny(format!("{me} cannot create keys for {}", key.owner)),
        Command::AddKey(_) => Ok(()),
        Command::RemoveKey { ident } => match graph.key(ident) {
            Some(k) if k.owner != me => deny(format!("key {ident} belongs to another user")),
            _ => Ok(()), // unknown keys get the ordinary "unknown" error
        },
        Command::Batch { commands } => commands.iter().try_for_each(|c| authorize(actor, c, graph)),
    }
}
