use serde::{Deserialize, Serialize};

/// Why a command was rejected. A rejected command changes nothing.
///
/// These cross the Raft log (as apply results) and the HTTP API, so they are
/// serializable and each has a stable `code()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphError {
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName { what: Named, name: String, reason: String },
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("group {0:?} already exists")]
    GroupExists(String),
    #[error("a user and a group may not share the name {0:?}")]
    NameTaken(String),
    #[error("{user:?} has no invitation to group {group:?}")]
    NotInvited { group: String, user: String },
    #[error("{user:?} is already invited to or a member of group {group:?}")]
    AlreadyMember { group: String, user: String },
    #[error("{user:?} is already an admin of group {group:?}")]
    AlreadyAdmin { group: String, user: String },
    #[error("{user:?} is the last admin of group {group:?}; remove the group instead")]
    LastAdmin { group: String, user: String },
    #[error("a share from {from:?} to {to} on {channel:?} already exists")]
    ShareExists { from: String, to: String, channel: String },
    #[error("no share from {from:?} to {to} on {channel:?}")]
    UnknownShare { from: String, to: String, channel: String },
    #[error("a user cannot share with themselves")]
    SelfShare,
    #[error("authkey ident {0:?} is already taken")]
    IdentExists(String),
    #[error("unknown authkey ident {0:?}")]
    UnknownKey(String),
    #[error("a batch may not contain another batch")]
    NestedBatch,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidAccount(String),
    #[error("{0}")]
    InvalidInvitation(String),
    #[error("the account of {0:?} is disabled")]
    AccountDisabled(String),
    #[error("{user:?} already has an API token labelled {label:?}")]
    TokenExists { user: String, label: String },
    #[error("{user:?} has no API token labelled {label:?}")]
    UnknownToken { user: String, label: String },
    #[error("{0}")]
    InvalidSetting(String),
    #[error("invalid filter {part}: {reason}")]
    InvalidFilter { part: String, reason: String },
    #[error("this node cannot read a log entry written by a newer version: {0}")]
    UnknownCommand(String),
}

/// What an invalid name was to be: its place in the message, and the field
/// a form shows the error at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Named {
    #[serde(rename = "user name")]
    User,
    #[serde(rename = "group name")]
    Group,
    #[serde(rename = "channel")]
    Channel,
    #[serde(rename = "ident")]
    Ident,
    #[serde(rename = "secret")]
    Secret,
    #[serde(rename = "token label")]
    TokenLabel,
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Named::User => "user name",
            Named::Group => "group name",
            Named::Channel => "channel",
            Named::Ident => "ident",
            Named::Secret => "secret",
            Named::TokenLabel => "token label",
        })
    }
}

impl GraphError {
    /// Stable machine-readable code (never reused for another meaning).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "invalid_name",
            Self::UnknownUser(_) => "unknown_user",
            Self::UserExists(_) => "user_exists",
            Self::UnknownGroup(_) => "unknown_group",
            Self::GroupExists(_) => "group_exists",
            Self::NameTaken(_) => "name_taken",
            Self::NotInvited { .. } => "not_invited",
            Self::AlreadyMember { .. } => "already_member",
            Self::AlreadyAdmin { .. } => "already_admin",
            Self::LastAdmin { .. } => "last_admin",
            Self::ShareExists { .. } => "share_exists",
            Self::UnknownShare { .. } => "unknown_share",
            Self::SelfShare => "self_share",
            Self::IdentExists(_) => "ident_exists",
            Self::UnknownKey(_) => "unknown_key",
            Self::NestedBatch => "nested_batch",
            Self::UnknownCommand(_) => "unknown_command",
            Self::Forbidden(_) => "forbidden",
            Self::InvalidAccount(_) => "invalid_account",
            Self::InvalidInvitation(_) => "invalid_invitation",
            Self::AccountDisabled(_) => "account_disabled",
            Self::TokenExists { .. } => "token_exists",
            Self::UnknownToken { .. } => "unknown_token",
            Self::InvalidSetting(_) => "invalid_setting",
            Self::InvalidFilter { .. } => "invalid_filter",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_every_variant_then_serde_round_trips() {
        let s = || "x".to_string();
        let all = [
            GraphError::InvalidName { what: Named::Channel, name: s(), reason: s() },
            GraphError::UnknownUser(s()),
            GraphError::UserExists(s()),
            GraphError::UnknownGroup(s()),
            GraphError::GroupExists(s()),
            GraphError::NameTaken(s()),
            GraphError::NotInvited { group: s(), user: s() },
            GraphError::AlreadyMember { group: s(), user: s() },
            GraphError::AlreadyAdmin { group: s(), user: s() },
            GraphError::LastAdmin { group: s(), user: s() },
            GraphError::ShareExists { from: s(), to: s(), channel: s() },
            GraphError::UnknownShare { from: s(), to: s(), channel: s() },
            GraphError::SelfShare,
            GraphError::IdentExists(s()),
            GraphError::UnknownKey(s()),
            GraphError::NestedBatch,
            GraphError::UnknownCommand(s()),
            GraphError::Forbidden(s()),
            GraphError::InvalidAccount(s()),
            GraphError::InvalidInvitation(s()),
            GraphError::AccountDisabled(s()),
            GraphError::TokenExists { user: s(), label: s() },
            GraphError::UnknownToken { user: s(), label: s() },
            GraphError::InvalidSetting(s()),
            GraphError::InvalidFilter { part: s(), reason: s() },
        ];
        for e in all {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<GraphError>(&json).unwrap(), e, "{json}");
        }
    }
}
