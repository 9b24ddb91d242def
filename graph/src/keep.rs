//! How long an owner's messages on a channel are kept in the archive, when
//! they want less than the node keeps (`archive_keep`), or none at all
//! (`ctl archive set --channel C --keep 2d|off`). Applied when a message is
//! read, so a shorter keep hides what is older at once, and by the archive's
//! writer, which stops keeping an excluded channel and deletes what is past
//! its keep (docs/sharing.md, "The past").

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{Graph, UserId};
use crate::GraphError;

/// The longest keep an owner may set: ten years (the node's bound).
pub const MAX_KEEP_SECS: u64 = 10 * 365 * 86_400;
/// Channels one owner may set a keep on: the archive's writer looks at each.
pub const MAX_KEEPS_PER_OWNER: usize = 1_000;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Not archived at all.
    Off,
    /// Kept this many seconds (or the node's `archive_keep`, if shorter).
    Secs(u64),
}

impl Keep {
    /// Whether a message published at `time_us` is still kept at `now_us`.
    pub fn keeps(&self, time_us: u64, now_us: u64) -> bool {
        match self {
            Keep::Off => false,
            Keep::Secs(secs) => now_us.saturating_sub(time_us) < secs.saturating_mul(1_000_000),
        }
    }
}

/// The owners' keeps on one channel, by owner id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelKeeps(HashMap<UserId, Keep>);

impl ChannelKeeps {
    /// Whether `owner`'s message published at `time_us` is kept at `now_us`.
    pub fn keeps(&self, owner: UserId, time_us: u64, now_us: u64) -> bool {
        self.0.get(&owner).is_none_or(|k| k.keeps(time_us, now_us))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Graph {
    /// What each owner keeps of `channel`, where they set it.
    pub fn channel_keeps(&self, channel: &str) -> ChannelKeeps {
        let mut out = HashMap::new();
        for (owner, channels) in &self.keeps {
            if let (Some(keep), Some(id)) = (channels.get(channel), self.user_id(owner)) {
                out.insert(id, *keep);
            }
        }
        ChannelKeeps(out)
    }

    /// Every keep set, by owner id and channel: what the archive's writer applies.
    pub fn all_keeps(&self) -> HashMap<(UserId, String), Keep> {
        let mut out = HashMap::new();
        for (owner, channels) in &self.keeps {
            let Some(id) = self.user_id(owner) else { continue };
            for (channel, keep) in channels {
                out.insert((id, channel.clone()), *keep);
            }
        }
        out
    }

    /// The keeps `owner` set, by channel.
    pub fn keeps_of(&self, owner: &str) -> BTreeMap<String, Keep> {
        self.keeps.get(owner).cloned().unwrap_or_default()
    }

    pub(crate) fn set_keep(&mut self, owner: &str, channel: &str, keep: Option<Keep>) -> Result<(), GraphError> {
        match keep {
            Some(keep) => {
                let channels = self.keeps.entry(owner.to_string()).or_default();
                if channels.len() >= MAX_KEEPS_PER_OWNER && !channels.contains_key(channel) {
                    return Err(GraphError::InvalidSetting(format!(
                        "{owner} has keeps on {MAX_KEEPS_PER_OWNER} channels, the most there may be"
                    )));
                }
                channels.insert(channel.to_string(), keep);
            }
            None => {
                if let Some(channels) = self.keeps.get_mut(owner) {
                    channels.remove(channel);
                    if channels.is_empty() {
                        self.keeps.remove(owner);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    #[test]
    fn given_keeps_set_and_cleared_then_each_owner_s_messages_are_kept_as_they_said() {
        let mut g = Graph::new();
        for name in ["ann", "bob"] {
            g.apply(&Command::AddUser { name: name.into() }).unwrap();
        }
        let set = |owner: &str, keep| Command::SetChannelKeep { owner: owner.into(), channel: "c".into(), keep };
        g.apply(&set("ann", Some(Keep::Secs(60)))).unwrap();
        g.apply(&set("bob", Some(Keep::Off))).unwrap();
        let (ann, bob) = (g.user_id("ann").unwrap(), g.user_id("bob").unwrap());
        let keeps = g.channel_keeps("c");
        let now = 1_000_000_000;
        assert!(keeps.keeps(ann, now - 59_000_000, now) && !keeps.keeps(ann, now - 61_000_000, now));
        assert!(!keeps.keeps(bob, now, now), "off: nothing");
        assert!(g.channel_keeps("d").is_empty(), "another channel: the node's keep");
        g.apply(&set("ann", None)).unwrap();
        assert!(g.channel_keeps("c").keeps(ann, 0, now), "cleared: the node's keep again");
        assert_eq!(g.apply(&set("nobody", Some(Keep::Off))), Err(GraphError::UnknownUser("nobody".into())));
        assert!(g.apply(&set("ann", Some(Keep::Secs(0)))).is_err(), "a keep of nothing is `off`");
        // At most so many channels per owner; the dry run refuses the one past it too.
        let on =
            |c: usize| Command::SetChannelKeep { owner: "ann".into(), channel: format!("c{c}"), keep: Some(Keep::Off) };
        for c in 0..MAX_KEEPS_PER_OWNER {
            g.apply(&on(c)).unwrap();
        }
        assert!(matches!(g.dry_run(&on(MAX_KEEPS_PER_OWNER)), Err(GraphError::InvalidSetting(_))));
        assert!(matches!(g.apply(&on(MAX_KEEPS_PER_OWNER)), Err(GraphError::InvalidSetting(_))));
        g.apply(&on(0)).unwrap();
        assert_eq!(g.keeps_of("ann").len(), MAX_KEEPS_PER_OWNER, "changing one already set is fine");
        // The user goes, and a new one takes the name: nothing of bob's keep is theirs.
        g.apply(&Command::RemoveUser { name: "bob".into() }).unwrap();
        g.apply(&Command::AddUser { name: "bob".into() }).unwrap();
        assert!(g.keeps_of("bob").is_empty());
    }
}
