//! Where each resume key's subscriptions had reached when its last
//! connection ended (docs/protocol.md, "Resume"): the node that served it
//! writes the place, any node reads it when the key subscribes again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Graph, UserId};

/// Per publishing node, the number of the first of its messages the
/// subscriber has not received (the archive numbers each node's messages).
pub type Marks = BTreeMap<u64, u64>;

/// One channel's place, as `Command::SetResumePositions` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePosition {
    pub ident: String,
    /// The key's owner when the place was taken: a key another user makes
    /// later with the same ident never gets it.
    pub owner: UserId,
    pub channel: String,
    #[serde(with = "pairs")]
    pub marks: Marks,
}

/// A key's places, by channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPositions {
    pub owner: UserId,
    #[serde(with = "channel_pairs")]
    pub channels: BTreeMap<String, Marks>,
}

/// Marks as `[[node, seq], …]`: a command is read through an internally
/// tagged enum, where JSON's string keys do not become numbers again.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Marks;

    pub fn serialize<S: Serializer>(marks: &Marks, s: S) -> Result<S::Ok, S::Error> {
        marks.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Marks, D::Error> {
        Ok(Vec::<(u64, u64)>::deserialize(d)?.into_iter().collect())
    }
}

mod channel_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Marks;

    pub fn serialize<S: Serializer>(channels: &BTreeMap<String, Marks>, s: S) -> Result<S::Ok, S::Error> {
        let pairs: BTreeMap<&String, Vec<(&u64, &u64)>> =
            channels.iter().map(|(c, m)| (c, m.iter().collect())).collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Marks>, D::Error> {
        let pairs = BTreeMap::<String, Vec<(u64, u64)>>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(c, m)| (c, m.into_iter().collect())).collect())
    }
}

impl Graph {
    /// Where `ident`'s subscription to `channel` had reached, if the key is
    /// still `owner`'s and marked `resume`.
    pub fn resume_position(&self, ident: &str, owner: UserId, channel: &str) -> Option<&Marks> {
        let key = self.key(ident).filter(|k| k.resume && self.user_id(&k.owner) == Some(owner))?;
        let at = self.resume.get(&key.ident).filter(|p| p.owner == owner)?;
        at.channels.get(channel)
    }

    /// Keeps each place whose key is still there, `resume`, its owner's, and
    /// subscribed to the channel; others are ignored (the key changed while
    /// the place was on its way). Per node the further one is kept.
    pub(crate) fn set_resume_positions(&mut self, positions: &[ResumePosition]) {
        for p in positions {
            let Some(key) = self.key(&p.ident) else { continue };
            if !key.resume || self.user_id(&key.owner) != Some(p.owner) || !key.subscribe.contains(&p.channel) {
                continue;
            }
            let at = self
                .resume
                .entry(p.ident.clone())
                .or_insert_with(|| KeyPositions { owner: p.owner, ..Default::default() });
            // Places only move on: one from a connection that ended late never
            // takes back what a newer one had reached.
            let marks = at.channels.entry(p.channel.clone()).or_default();
            for (&node, &seq) in &p.marks {
                let m = marks.entry(node).or_insert(seq);
                *m = (*m).max(seq);
            }
        }
    }

    /// After keys changed: places of keys gone, no longer `resume`, now
    /// another user's, or of channels the key no longer subscribes to go.
    pub(crate) fn forget_stale_positions(&mut self) {
        let mut resume = std::mem::take(&mut self.resume);
        resume.retain(|ident, at| {
            let Some(key) = self.key(ident).filter(|k| k.resume && self.user_id(&k.owner) == Some(at.owner)) else {
                return false;
            };
            at.channels.retain(|c, _| key.subscribe.contains(c));
            !at.channels.is_empty()
        });
        self.resume = resume;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthKey, Command};

    fn key(ident: &str, owner: &str, resume: bool) -> Command {
        Command::AddKey(AuthKey {
            ident: ident.into(),
            secret: "s".repeat(20),
            owner: owner.into(),
            publish: vec![],
            subscribe: vec!["c".into(), "d".into()],
            resume,
        })
    }

    fn at(g: &Graph, ident: &str, owner: &str, channel: &str, marks: &[(u64, u64)]) -> Command {
        Command::SetResumePositions {
            positions: vec![ResumePosition {
                ident: ident.into(),
                owner: g.user_id(owner).unwrap(),
                channel: channel.into(),
                marks: marks.iter().copied().collect(),
            }],
        }
    }

    #[test]
    fn given_places_then_only_the_resume_key_of_the_same_owner_keeps_them() {
        let mut g = Graph::new();
        for c in [
            Command::AddUser { name: "ann".into() },
            Command::AddUser { name: "bob".into() },
            key("k", "ann", true),
            key("plain", "ann", false),
        ] {
            g.apply(&c).unwrap();
        }
        let ann = g.user_id("ann").unwrap();
        g.apply(&at(&g, "k", "ann", "c", &[(1, 5)])).unwrap();
        g.apply(&at(&g, "k", "ann", "c", &[(1, 4)])).unwrap();
        g.apply(&at(&g, "plain", "ann", "c", &[(1, 5)])).unwrap();
        g.apply(&at(&g, "k", "ann", "nope", &[(1, 5)])).unwrap();
        assert_eq!(g.resume_position("k", ann, "c"), Some(&Marks::from([(1, 5)])), "a late place does not go back");
        assert_eq!(g.resume_position("plain", ann, "c"), None, "not a resume key");
        assert_eq!(g.resume_position("k", ann, "nope"), None, "not a channel the key subscribes to");

        // The key goes and bob makes one with its ident: nothing of ann's place is his.
        g.apply(&Command::RemoveKey { ident: "k".into() }).unwrap();
        g.apply(&key("k", "bob", true)).unwrap();
        let bob = g.user_id("bob").unwrap();
        assert_eq!(g.resume_position("k", bob, "c"), None);
        // A place ann's connection took before, arriving late, is not kept for bob's key.
        let late = Command::SetResumePositions {
            positions: vec![ResumePosition {
                ident: "k".into(),
                owner: ann,
                channel: "c".into(),
                marks: Marks::from([(1, 9)]),
            }],
        };
        g.apply(&late).unwrap();
        assert_eq!(g.resume_position("k", bob, "c"), None);
        assert_eq!(g.resume_position("k", ann, "c"), None);
    }

    #[test]
    fn given_places_then_they_survive_the_log_and_the_snapshot() {
        let command = Command::SetResumePositions {
            positions: vec![ResumePosition {
                ident: "k".into(),
                owner: 1,
                channel: "c".into(),
                marks: Marks::from([(1, 5), (3, 9)]),
            }],
        };
        let again: Command = serde_json::from_slice(&serde_json::to_vec(&command).unwrap()).unwrap();
        assert_eq!(again, command);
        let mut g = Graph::new();
        g.apply(&Command::AddUser { name: "ann".into() }).unwrap();
        g.apply(&key("k", "ann", true)).unwrap();
        g.apply(&at(&g, "k", "ann", "c", &[(1, 5), (3, 9)])).unwrap();
        let restored: Graph = serde_json::from_slice(&serde_json::to_vec(&g).unwrap()).unwrap();
        let ann = restored.user_id("ann").unwrap();
        assert_eq!(restored.resume_position("k", ann, "c"), Some(&Marks::from([(1, 5), (3, 9)])));
    }

    #[test]
    fn given_a_key_changed_in_one_batch_then_its_places_stay_for_the_channels_it_keeps() {
        let mut g = Graph::new();
        g.apply(&Command::AddUser { name: "ann".into() }).unwrap();
        g.apply(&key("k", "ann", true)).unwrap();
        let ann = g.user_id("ann").unwrap();
        g.apply(&at(&g, "k", "ann", "c", &[(1, 5)])).unwrap();
        g.apply(&at(&g, "k", "ann", "d", &[(2, 7)])).unwrap();
        // How PUT /api/v1/keys/{ident} changes a key's channels.
        let mut narrower = AuthKey {
            ident: "k".into(),
            secret: "s".repeat(20),
            owner: "ann".into(),
            publish: vec![],
            subscribe: vec!["c".into()],
            resume: true,
        };
        g.apply(&Command::Batch {
            commands: vec![Command::RemoveKey { ident: "k".into() }, Command::AddKey(narrower.clone())],
        })
        .unwrap();
        assert_eq!(g.resume_position("k", ann, "c"), Some(&Marks::from([(1, 5)])));
        assert_eq!(g.resume_position("k", ann, "d"), None);
        narrower.resume = false;
        g.apply(&Command::Batch {
            commands: vec![Command::RemoveKey { ident: "k".into() }, Command::AddKey(narrower)],
        })
        .unwrap();
        assert_eq!(g.resume_position("k", ann, "c"), None, "no longer a resume key");
        assert!(g.resume.is_empty());
    }
}
