//! Every mutation of the graph. These are the Raft log entries.
//!
//! Compatibility rule: variants and fields are only ever added (new fields with
//! `#[serde(default)]`), never renamed or removed, so a newer node reads every
//! entry an older one wrote. A new variant carries a higher `min_version()` and
//! is only proposed once every voter understands it.

use serde::{Deserialize, Serialize};

use crate::model::{AuthKey, ShareKind, Target};

/// The command format version this build writes and understands.
pub const COMMAND_VERSION: u32 = 1;

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
    AddKey(AuthKey),
    RemoveKey {
        ident: String,
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
            _ => 1,
        }
    }
}
