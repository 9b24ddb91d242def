//! The audit trail of the sharing graph: what each applied command changed,
//! who asked, when, and through which node. The state machine records an
//! [`Event`] per changed thing with the time and node the proposer fixed in
//! the entry, so every node records the same history; secrets are never in it.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::accounts::UnixTime;
use crate::model::{Graph, Target};
use crate::{Actor, Command, GraphError};

/// How much history every node keeps: events older than `max_age_days` (by
/// the newest entry's time) or beyond the newest `max_events` are dropped.
/// A cluster setting (an entry), so every node drops the same events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub max_age_days: u32,
    pub max_events: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_age_days: 365, max_events: 1_000_000 }
    }
}

impl Retention {
    pub const MAX_AGE_DAYS: u32 = 36_500;
    pub const MAX_EVENTS: u64 = 100_000_000;

    pub fn check(&self) -> Result<(), GraphError> {
        if !(1..=Self::MAX_AGE_DAYS).contains(&self.max_age_days) {
            return Err(GraphError::InvalidSetting(format!(
                "max_age_days must be 1 to {}, not {}",
                Self::MAX_AGE_DAYS,
                self.max_age_days
            )));
        }
        if !(1..=Self::MAX_EVENTS).contains(&self.max_events) {
            return Err(GraphError::InvalidSetting(format!(
                "max_events must be 1 to {}, not {}",
                Self::MAX_EVENTS,
                self.max_events
            )));
        }
        Ok(())
    }

    pub fn max_age_secs(&self) -> u64 {
        u64::from(self.max_age_days) * 86_400
    }
}

/// One recorded change, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, the same on every node.
    pub seq: u64,
    /// The Raft log index of the entry (a batch's changes share it).
    pub index: u64,
    /// When the entry was proposed; `None` for entries of v0.1.0 nodes.
    pub at: Option<UnixTime>,
    /// The node the request came in through.
    pub node: Option<u64>,
    pub actor: Actor,
    /// The command, secrets and hashes taken out: `{"op": "add_share", …}`.
    pub change: serde_json::Value,
    /// Users it names (for a key: its owner).
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
}

impl Event {
    /// Reads an event as `Record` wrote it.
    pub fn decode(json: &[u8]) -> Result<Event, serde_json::Error> {
        let mut event: Event = serde_json::from_slice(json)?;
        if let Some(fields) = event.change.as_object_mut() {
            for secret in SECRET_FIELDS {
                fields.remove(secret);
            }
        }
        Ok(event)
    }
}

/// What one command changed, borrowed from it: recording a 10,000-command
/// declaration must cost the write path little.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change<'a> {
    /// The command with its secrets and hashes emptied.
    pub change: Cow<'a, Command>,
    pub users: Vec<Cow<'a, str>>,
    pub groups: Vec<Cow<'a, str>>,
    pub channels: Vec<Cow<'a, str>>,
}

/// An event as the state machine writes it ([`Event::decode`] reads it).
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub seq: u64,
    pub index: u64,
    pub at: Option<UnixTime>,
    pub node: Option<u64>,
    pub actor: &'a Actor,
    #[serde(flatten)]
    pub change: &'a Change<'a>,
}

/// Fields of commands that hold secrets or their hashes.
const SECRET_FIELDS: [&str; 5] = ["secret", "token_hash", "password_hash", "session_hash", "invitation"];

/// The keys `command` removes, as the graph holds them *before* it is
/// applied: all a change needs to know of the graph (whose key it was).
pub fn removed_keys(command: &Command, graph: &Graph) -> RemovedKeys {
    match command {
        Command::Batch { commands } => commands.iter().flat_map(|c| removed_keys(c, graph)).collect(),
        Command::RemoveKey { ident } => graph.key(ident).map(|k| (ident.clone(), k.clone())).into_iter().collect(),
        _ => RemovedKeys::new(),
    }
}

/// Keys removed by an entry, by ident.
pub type RemovedKeys = std::collections::BTreeMap<String, crate::AuthKey>;

/// How many changes `command` makes (the events `changes` returns).
pub fn count(command: &Command) -> u64 {
    match command {
        Command::Batch { commands } => commands.iter().map(count).sum(),
        Command::StartSession { .. } | Command::EndSession { .. } => 0,
        _ => 1,
    }
}

/// The changes `command` makes; `removed`: what `removed_keys` found before
/// it was applied. Sessions are sign-ins, not changes to what is shared,
/// and are not recorded.
pub fn changes<'a>(command: &'a Command, removed: &'a RemovedKeys) -> Vec<Change<'a>> {
    match command {
        Command::Batch { commands } => commands.iter().flat_map(|c| changes(c, removed)).collect(),
        Command::StartSession { .. } | Command::EndSession { .. } => Vec::new(),
        single => vec![change_of(single, removed)],
    }
}

fn change_of<'a>(command: &'a Command, removed: &'a RemovedKeys) -> Change<'a> {
    let mut users: Vec<Cow<'a, str>> = Vec::new();
    let mut groups: Vec<Cow<'a, str>> = Vec::new();
    let mut channels: Vec<Cow<'a, str>> = Vec::new();
    match command {
        Command::AddUser { name }
        | Command::RemoveUser { name }
        | Command::SetUserToken { name, .. }
        | Command::InviteUser { name, .. }
        | Command::SetPassword { name, .. }
        | Command::SetUserDisabled { name, .. }
        | Command::AddApiToken { name, .. }
        | Command::RemoveApiToken { name, .. } => users.push(name.into()),
        Command::AddGroup { name, creator } => {
            users.push(creator.into());
            groups.push(name.into());
        }
        Command::RemoveGroup { name } => groups.push(name.into()),
        Command::AddGroupAdmin { group, user }
        | Command::InviteMember { group, user }
        | Command::AcceptMembership { group, user }
        | Command::RemoveMember { group, user } => {
            users.push(user.into());
            groups.push(group.into());
        }
        Command::AddShare { from, to, channel, .. }
        | Command::AcceptShare { from, to, channel }
        | Command::RemoveShare { from, to, channel } => {
            users.push(from.into());
            match to {
                Target::User(u) => users.push(u.into()),
                Target::Group(g) => groups.push(g.into()),
            }
            channels.push(channel.into());
        }
        Command::AddKey(key) => {
            users.push((&key.owner).into());
            channels.extend(key.publish.iter().chain(&key.subscribe).map(Cow::from));
        }
        Command::RemoveKey { ident } => {
            if let Some(key) = removed.get(ident) {
                users.push((&key.owner).into());
                channels.extend(key.publish.iter().chain(&key.subscribe).map(Cow::from));
            }
        }
        Command::SetHistoryRetention(_) => {}
        Command::StartSession { .. } | Command::EndSession { .. } | Command::Batch { .. } => {}
    }
    if users.len() > 1 {
        users.sort();
        users.dedup();
    }
    if channels.len() > 1 {
        channels.sort();
        channels.dedup();
    }
    Change { change: redacted(command), users, groups, channels }
}

/// The command with its secrets and hashes emptied (a copy only for the
/// kinds that hold one).
fn redacted(command: &Command) -> Cow<'_, Command> {
    let mut copy = match command {
        Command::AddKey(_)
        | Command::SetUserToken { .. }
        | Command::InviteUser { .. }
        | Command::SetPassword { .. }
        | Command::AddApiToken { .. } => command.clone(),
        _ => return Cow::Borrowed(command),
    };
    match &mut copy {
        Command::AddKey(key) => key.secret.clear(),
        Command::SetUserToken { token_hash, .. }
        | Command::InviteUser { token_hash, .. }
        | Command::AddApiToken { token_hash, .. } => token_hash.clear(),
        Command::SetPassword { password_hash, invitation, .. } => {
            password_hash.clear();
            *invitation = None;
        }
        _ => {}
    }
    Cow::Owned(copy)
}

/// A user as the history sees them: their name and the groups they now
/// administer, belong to or are invited to. Taken from the graph once, so a
/// long scan of the history does not hold the graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub groups: BTreeSet<String>,
}

impl Person {
    pub fn of(name: &str, graph: &Graph) -> Person {
        let groups = graph
            .groups()
            .filter(|(_, g)| g.admins.contains(name) || g.members.contains_key(name))
            .map(|(n, _)| n.to_string())
            .collect();
        Person { name: name.to_string(), groups }
    }

    /// An event touches a user who made it, whom it names (their shares in
    /// and out, their keys), or a group of theirs.
    pub fn touched_by(&self, event: &Event) -> bool {
        matches!(&event.actor, Actor::User(a) if *a == self.name)
            || event.users.contains(&self.name)
            || event.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// Which events a query wants; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Who asks: `None` for the operator (everything), else what touches them.
    pub viewer: Option<Person>,
    /// Events that touch this user.
    pub user: Option<Person>,
    pub channel: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        self.viewer.as_ref().is_none_or(|p| p.touched_by(event))
            && self.user.as_ref().is_none_or(|p| p.touched_by(event))
            && self.channel.as_deref().is_none_or(|c| event.channels.iter().any(|x| x == c))
            && self.since.is_none_or(|s| event.at.is_some_and(|at| at >= s))
            && self.until.is_none_or(|u| event.at.is_some_and(|at| at < u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthKey, ShareKind};

    fn graph() -> Graph {
        let mut g = Graph::new();
        for c in [
            Command::AddUser { name: "alice".into() },
            Command::AddUser { name: "bob".into() },
            Command::AddUser { name: "carol".into() },
            Command::AddGroup { name: "cert".into(), creator: "carol".into() },
            Command::AddKey(AuthKey {
                ident: "alice-sensor".into(),
                secret: "s3cret-s3cret-s3cret".into(),
                owner: "alice".into(),
                publish: vec!["cowrie.sessions".into()],
                subscribe: vec![],
            }),
        ] {
            g.apply(&c).unwrap();
        }
        g
    }

    fn event(actor: Actor, change: Change) -> Event {
        let record = Record { seq: 0, index: 1, at: Some(1_000), node: Some(1), actor: &actor, change: &change };
        Event::decode(&serde_json::to_vec(&record).unwrap()).unwrap()
    }

    #[test]
    fn secrets_and_hashes_are_never_recorded() {
        let g = graph();
        let commands = [
            Command::AddKey(AuthKey {
                ident: "k".into(),
                secret: "TOPSECRET1".into(),
                owner: "bob".into(),
                publish: vec![],
                subscribe: vec![],
            }),
            Command::SetUserToken { name: "bob".into(), token_hash: "TOPSECRET2".into() },
            Command::InviteUser { name: "bob".into(), token_hash: "TOPSECRET3".into(), expires_at: 5 },
            Command::SetPassword {
                name: "bob".into(),
                password_hash: "TOPSECRET4".into(),
                invitation: Some("TOPSECRET5".into()),
                at: 4,
            },
            Command::AddApiToken { name: "bob".into(), label: "ci".into(), token_hash: "TOPSECRET6".into(), at: 4 },
        ];
        for c in &commands {
            let recorded = serde_json::to_string(&changes(c, &removed_keys(c, &g))).unwrap();
            assert!(!recorded.contains("TOPSECRET"), "{recorded}");
            assert!(recorded.contains("bob"), "{recorded}");
            let read = event(Actor::Operator, changes(c, &removed_keys(c, &g)).remove(0));
            for secret in SECRET_FIELDS {
                assert!(read.change.get(secret).is_none(), "{secret} is not even named: {}", read.change);
            }
        }
    }

    #[test]
    fn sign_ins_are_not_changes_and_a_batch_is_one_change_per_command() {
        let start = Command::StartSession { actor: Actor::Operator, session_hash: "h".into(), expires_at: 9, at: 1 };
        assert!(changes(&start, &RemovedKeys::new()).is_empty());
        let batch = Command::Batch {
            commands: vec![Command::AddUser { name: "dave".into() }, start, Command::RemoveUser { name: "bob".into() }],
        };
        let ops: Vec<_> = changes(&batch, &RemovedKeys::new())
            .into_iter()
            .map(|c| serde_json::to_value(&c.change).unwrap()["op"].clone())
            .collect();
        assert_eq!(ops, ["add_user", "remove_user"]);
    }

    #[test]
    fn a_removed_key_is_recorded_with_its_owner_and_channels() {
        let remove = Command::RemoveKey { ident: "alice-sensor".into() };
        let removed = removed_keys(&remove, &graph());
        let c = &changes(&remove, &removed)[0];
        assert_eq!(c.users, ["alice"]);
        assert_eq!(c.channels, ["cowrie.sessions"]);
    }

    #[test]
    fn a_user_sees_what_touches_them_and_their_groups() {
        let mut g = graph();
        g.apply(&Command::InviteMember { group: "cert".into(), user: "bob".into() }).unwrap();
        let share = Command::AddShare {
            from: "alice".into(),
            to: Target::Group("cert".into()),
            channel: "cowrie.sessions".into(),
            kind: ShareKind::Shares,
        };
        let e = event(Actor::User("alice".into()), changes(&share, &RemovedKeys::new()).remove(0));
        let seen_by = |name: &str| Filter { viewer: Some(Person::of(name, &g)), ..Filter::default() }.matches(&e);
        assert!(seen_by("alice"), "the actor");
        assert!(seen_by("carol"), "the group's admin");
        assert!(seen_by("bob"), "an invited member");
        g.apply(&Command::AddUser { name: "eve".into() }).unwrap();
        assert!(!Filter { viewer: Some(Person::of("eve", &g)), ..Filter::default() }.matches(&e));
        assert!(Filter::default().matches(&e), "the operator");

        let by_channel = Filter { channel: Some("cowrie.sessions".into()), ..Filter::default() };
        assert!(by_channel.matches(&e));
        assert!(!Filter { channel: Some("dionaea".into()), ..Filter::default() }.matches(&e));
        assert!(Filter { since: Some(1_000), until: Some(1_001), ..Filter::default() }.matches(&e));
        assert!(!Filter { until: Some(1_000), ..Filter::default() }.matches(&e));
    }

    #[test]
    fn retention_is_bounded() {
        assert!(Retention::default().check().is_ok());
        assert!(Retention { max_age_days: 0, max_events: 5 }.check().is_err());
        assert!(Retention { max_age_days: 5, max_events: 0 }.check().is_err());
        assert!(Retention { max_age_days: 5, max_events: Retention::MAX_EVENTS + 1 }.check().is_err());
    }
}
