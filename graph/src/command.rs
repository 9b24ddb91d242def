//! Every mutation of the graph. These are the Raft log entries.
//!
//! Compatibility rule: variants and fields are only ever added (new fields with
//! `#[serde(default)]`), never renamed or removed, so a newer node reads every
//! entry an older one wrote. A new variant carries a higher `min_version()` and
//! is only proposed once every voter understands it.

use serde::{Deserialize, Serialize};

use crate::accounts::UnixTime;
use crate::model::{AuthKey, ShareKind, Target};

/// The command format version this build writes and understands.
/// 1: v0.1.0. 2: accounts (the web app's sign-in), the history's retention,
/// resume keys and their places, owners' keeps, share filters.
pub const COMMAND_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    AddUser {
        name: String,
    },
    /// Removes the user with every key, share, membership and admin role it has.
    RemoveUser {
        name: String,
    },
    /// Stores the hash of a user's API token (the token itself is never stored).
    SetUserToken {
        name: String,
        token_hash: String,
    },
    /// The creator becomes the first admin and an accepted member.
    AddGroup {
        name: String,
        creator: String,
    },
    RemoveGroup {
        name: String,
    },
    AddGroupAdmin {
        group: String,
        user: String,
    },
    InviteMember {
        group: String,
        user: String,
    },
    AcceptMembership {
        group: String,
        user: String,
    },
    /// Leaving a group, declining an invitation, or an admin removing a member.
    RemoveMember {
        group: String,
        user: String,
    },
    AddShare {
        from: String,
        to: Target,
        channel: String,
        kind: ShareKind,
        /// Once accepted, it opens the archive from before it was (docs/sharing.md, "The past").
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        with_history: bool,
    },
    AcceptShare {
        from: String,
        to: Target,
        channel: String,
    },
    RemoveShare {
        from: String,
        to: Target,
        channel: String,
    },
    /// Sets or clears what a share lets through (docs/sharing.md, "Filters").
    /// `key` (hex, 32 bytes) becomes the sender's pseudonym key if the filter
    /// pseudonymizes and they have none yet; it never replaces one.
    SetShareFilter {
        from: String,
        to: Target,
        channel: String,
        filter: Option<crate::Filter>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    AddKey(AuthKey),
    RemoveKey {
        ident: String,
    },
    /// Creates the user if needed and opens a one-time link to set their
    /// password (for an existing user: a password reset). Replaces an earlier link.
    InviteUser {
        name: String,
        token_hash: String,
        expires_at: UnixTime,
    },
    /// `invitation` is the hash of the link's token when set through one.
    /// Ends every session of the user.
    SetPassword {
        name: String,
        password_hash: String,
        #[serde(default)]
        invitation: Option<String>,
        at: UnixTime,
    },
    /// A disabled user's sessions end and their keys and tokens stop working.
    SetUserDisabled {
        name: String,
        disabled: bool,
    },
    StartSession {
        actor: crate::Actor,
        session_hash: String,
        expires_at: UnixTime,
        at: UnixTime,
    },
    EndSession {
        session_hash: String,
    },
    /// Signing out everywhere: ends every session of `actor` the graph holds
    /// when the entry is applied, so one started through another node just
    /// before is ended too (the log decides, not what one node knew).
    EndSessionsOf {
        actor: crate::Actor,
    },
    AddApiToken {
        name: String,
        label: String,
        token_hash: String,
        at: UnixTime,
    },
    RemoveApiToken {
        name: String,
        label: String,
    },
    /// How much of the audit trail every node keeps.
    SetHistoryRetention(crate::history::Retention),
    /// How long `owner`'s messages on `channel` are kept in the archive
    /// (`None`: as long as the node keeps everything).
    SetChannelKeep {
        owner: String,
        channel: String,
        keep: Option<crate::Keep>,
    },
    /// Where resume keys' subscriptions had reached, written by the node
    /// that served them. Never refused: a place whose key changed meanwhile
    /// is ignored. Not a change anyone made: the history does not record it.
    SetResumePositions {
        positions: Vec<crate::resume::ResumePosition>,
    },
    /// All or nothing.
    Batch {
        commands: Vec<Command>,
    },
}

impl Command {
    /// The lowest command format version that can apply this entry.
    pub fn min_version(&self) -> u32 {
        match self {
            Command::Batch { commands } => commands.iter().map(Command::min_version).max().unwrap_or(1),
            c if c.is_account() => 2,
            Command::SetHistoryRetention(_) | Command::SetResumePositions { .. } | Command::SetChannelKeep { .. } => 2,
            Command::SetShareFilter { .. } => 2,
            Command::AddKey(key) if key.resume => 2,
            _ => 1,
        }
    }

    /// The entries of people's accounts (`accounts.rs` applies them).
    pub fn is_account(&self) -> bool {
        matches!(
            self,
            Command::InviteUser { .. }
                | Command::SetPassword { .. }
                | Command::SetUserDisabled { .. }
                | Command::StartSession { .. }
                | Command::EndSession { .. }
                | Command::EndSessionsOf { .. }
                | Command::AddApiToken { .. }
                | Command::RemoveApiToken { .. }
        )
    }
}
