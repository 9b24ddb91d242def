//! The audit trail of the sharing graph: what each applied command changed,
//! who asked, when, and through which node. The state machine records an
//! [`Event`] per changed thing with the time and node the proposer fixed in
//! the entry, so every node records the same history; secrets are never in it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::accounts::UnixTime;
use crate::model::{Graph, GroupId, Target, UserId};
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
    /// The actor's user id when they made it.
    #[serde(default)]
    pub actor_id: Option<UserId>,
    /// The command, secrets and hashes taken out: `{"op": "add_share", …}`.
    pub change: serde_json::Value,
    /// Users it names (for a key: its owner).
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    /// Which users and groups those names were.
    #[serde(default)]
    pub ids: Ids,
}

/// The ids of the users and groups a change names, as they were when it
/// was applied: a name taken again later is another user or group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, UserId>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, GroupId>,
}

impl Ids {
    /// The ids `graph` gives the names `command` uses (names it lacks are left out).
    pub fn of(command: &Command, graph: &Graph) -> Ids {
        let removed = removed_keys(command, graph);
        let named = names(command, &removed);
        Ids {
            users: named.users.iter().filter_map(|u| Some((u.to_string(), graph.user_id(u)?))).collect(),
            groups: named.groups.iter().filter_map(|g| Some((g.to_string(), graph.group(g)?.id))).collect(),
        }
    }

    /// These ids, and `later`'s for the names these lack.
    pub fn or(mut self, later: Ids) -> Ids {
        for (name, id) in later.users {
            self.users.entry(name).or_insert(id);
        }
        for (name, id) in later.groups {
            self.groups.entry(name).or_insert(id);
        }
        self
    }
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
    pub actor_id: Option<UserId>,
    #[serde(flatten)]
    pub change: &'a Change<'a>,
    pub ids: &'a Ids,
}

/// Fields of commands that hold secrets or their hashes.
const SECRET_FIELDS: [&str; 6] = ["secret", "token_hash", "password_hash", "session_hash", "invitation", "key"];

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
        Command::StartSession { .. }
        | Command::EndSession { .. }
        | Command::EndSessionsOf { .. }
        | Command::SetResumePositions { .. } => 0,
        _ => 1,
    }
}

/// The changes `command` makes; `removed`: what `removed_keys` found before
/// it was applied. Sessions are sign-ins and resume places a connection's
/// progress, not changes to what is shared: neither is recorded.
pub fn changes<'a>(command: &'a Command, removed: &'a RemovedKeys) -> Vec<Change<'a>> {
    match command {
        Command::Batch { commands } => commands.iter().flat_map(|c| changes(c, removed)).collect(),
        Command::StartSession { .. }
        | Command::EndSession { .. }
        | Command::EndSessionsOf { .. }
        | Command::SetResumePositions { .. } => Vec::new(),
        single => vec![change_of(single, removed)],
    }
}

fn change_of<'a>(command: &'a Command, removed: &'a RemovedKeys) -> Change<'a> {
    let Names { users, groups, channels } = names(command, removed);
    Change { change: redacted(command), users, groups, channels }
}

/// The users, groups and channels a command names, each once.
struct Names<'a> {
    users: Vec<Cow<'a, str>>,
    groups: Vec<Cow<'a, str>>,
    channels: Vec<Cow<'a, str>>,
}

fn names<'a>(command: &'a Command, removed: &'a RemovedKeys) -> Names<'a> {
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
        | Command::SetShareFilter { from, to, channel, .. }
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
        Command::SetHistoryRetention(_) | Command::SetResumePositions { .. } => {}
        Command::SetChannelKeep { owner, channel, .. } => {
            users.push(owner.into());
            channels.push(channel.into());
        }
        Command::StartSession { .. }
        | Command::EndSession { .. }
        | Command::EndSessionsOf { .. }
        | Command::Batch { .. } => {}
    }
    if users.len() > 1 {
        users.sort();
        users.dedup();
    }
    if channels.len() > 1 {
        channels.sort();
        channels.dedup();
    }
    Names { users, groups, channels }
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
        Command::SetShareFilter { key: Some(_), .. } => command.clone(),
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
        Command::SetShareFilter { key, .. } => *key = None,
        _ => {}
    }
    Cow::Owned(copy)
}

/// A user as the history sees them: who they are and the groups they now
/// administer or belong to (not those they are only invited to). Taken from the graph once, so a
/// long scan of the history does not hold the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub id: UserId,
    pub groups: BTreeMap<String, GroupId>,
}

impl Person {
    /// `None` when `graph` has no user of that name.
    pub fn of(name: &str, graph: &Graph) -> Option<Person> {
        let id = graph.user_id(name)?;
        let groups = graph
            .groups()
            .filter(|(_, g)| g.admins.contains(name) || g.members.get(name) == Some(&true))
            .map(|(n, g)| (n.to_string(), g.id))
            .collect();
        Some(Person { name: name.to_string(), id, groups })
    }

    /// An event touches a user who made it, whom it names (their shares in
    /// and out, their keys), or a group of theirs: this user and these
    /// groups, not earlier holders of their names.
    pub fn touched_by(&self, event: &Event) -> bool {
        matches!(&event.actor, Actor::User(a) if *a == self.name && event.actor_id == Some(self.id))
            || event.ids.users.get(&self.name) == Some(&self.id)
            || event.ids.groups.iter().any(|(g, id)| self.groups.get(g) == Some(id))
    }
}

/// Which events a query wants; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Who asks: `None` for the operator (everything), else what touches them.
    pub viewer: Option<Person>,
    /// Events that name this user or that they made, whoever held the name.
    pub user: Option<String>,
    pub channel: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        self.viewer.as_ref().is_none_or(|p| p.touched_by(event))
            && self.user.as_deref().is_none_or(|u| names_user(event, u))
            && self.channel.as_deref().is_none_or(|c| event.channels.iter().any(|x| x == c))
            && self.since.is_none_or(|s| event.at.is_some_and(|at| at >= s))
            && self.until.is_none_or(|u| event.at.is_some_and(|at| at < u))
    }
}

fn names_user(event: &Event, user: &str) -> bool {
    matches!(&event.actor, Actor::User(a) if a == user) || event.users.iter().any(|u| u == user)
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
                resume: false,
            }),
        ] {
            g.apply(&c).unwrap();
        }
        g
    }

    fn event(actor: Actor, change: Change) -> Event {
        let record = Record {
            seq: 0,
            index: 1,
            at: Some(1_000),
            node: Some(1),
            actor: &actor,
            actor_id: None,
            change: &change,
            ids: &Ids::default(),
        };
        Event::decode(&serde_json::to_vec(&record).unwrap()).unwrap()
    }

    /// Applies `command` to `g` and reads back its first event as every node records it.
    fn recorded(g: &mut Graph, actor: Actor, command: &Command) -> Event {
        let removed = removed_keys(command, g);
        let actor_id = match &actor {
            Actor::User(name) => g.user_id(name),
            Actor::Operator => None,
        };
        let applied = g.apply(command).unwrap();
        let change = changes(command, &removed).remove(0);
        let record = Record {
            seq: 0,
            index: 1,
            at: Some(1_000),
            node: Some(1),
            actor: &actor,
            actor_id,
            change: &change,
            ids: &applied.ids[0],
        };
        Event::decode(&serde_json::to_vec(&record).unwrap()).unwrap()
    }

    fn seen_by(g: &Graph, name: &str, e: &Event) -> bool {
        Filter { viewer: Person::of(name, g), ..Filter::default() }.matches(e)
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
                resume: false,
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
            Command::SetShareFilter {
                from: "bob".into(),
                to: Target::User("carol".into()),
                channel: "c".into(),
                filter: Some(crate::Filter { pseudonymize: vec!["/ip".into()], ..Default::default() }),
                key: Some("TOPSECRET7".into()),
            },
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
            with_history: false,
        };
        let e = recorded(&mut g, Actor::User("alice".into()), &share);
        assert!(seen_by(&g, "alice", &e), "the actor");
        assert!(seen_by(&g, "carol", &e), "the group's admin");
        assert!(!seen_by(&g, "bob", &e), "an invited user, until he joins");
        g.apply(&Command::AcceptMembership { group: "cert".into(), user: "bob".into() }).unwrap();
        assert!(seen_by(&g, "bob", &e), "a member");
        g.apply(&Command::AddUser { name: "eve".into() }).unwrap();
        assert!(!seen_by(&g, "eve", &e));
        assert!(Filter::default().matches(&e), "the operator");
        assert!(Filter { user: Some("alice".into()), ..Filter::default() }.matches(&e));
        assert!(!Filter { user: Some("carol".into()), ..Filter::default() }.matches(&e), "names alice and cert");

        let by_channel = Filter { channel: Some("cowrie.sessions".into()), ..Filter::default() };
        assert!(by_channel.matches(&e));
        assert!(!Filter { channel: Some("dionaea".into()), ..Filter::default() }.matches(&e));
        assert!(Filter { since: Some(1_000), until: Some(1_001), ..Filter::default() }.matches(&e));
        assert!(!Filter { until: Some(1_000), ..Filter::default() }.matches(&e));
    }

    #[test]
    fn given_a_name_taken_again_then_its_new_holder_sees_nothing_of_the_old_one() {
        let mut g = graph();
        let alice = Actor::User("alice".into());
        let from_alice = |to: Target| Command::AddShare {
            from: "alice".into(),
            to,
            channel: "cowrie.sessions".into(),
            kind: ShareKind::Shares,
            with_history: false,
        };
        let share = recorded(&mut g, alice.clone(), &from_alice(Target::User("bob".into())));
        let bobs_own = recorded(
            &mut g,
            Actor::User("bob".into()),
            &Command::AddGroup { name: "bobs".into(), creator: "bob".into() },
        );
        let group_share = recorded(&mut g, alice.clone(), &from_alice(Target::Group("cert".into())));
        let removed = recorded(&mut g, Actor::Operator, &Command::RemoveUser { name: "bob".into() });
        let gone = recorded(&mut g, Actor::Operator, &Command::RemoveGroup { name: "cert".into() });
        assert!([&share, &bobs_own].iter().all(|e| e.ids.users["bob"] == removed.ids.users["bob"]));
        assert_eq!(group_share.ids.groups["cert"], gone.ids.groups["cert"]);

        // A new bob and a new cert, in one entry.
        let again = Command::Batch {
            commands: vec![
                Command::AddUser { name: "bob".into() },
                Command::AddGroup { name: "cert".into(), creator: "bob".into() },
            ],
        };
        let applied = g.clone().apply(&again).unwrap();
        g.apply(&again).unwrap();
        assert_ne!(applied.ids[0].users["bob"], removed.ids.users["bob"]);
        assert_ne!(applied.ids[1].groups["cert"], gone.ids.groups["cert"]);
        for e in [&share, &bobs_own, &group_share, &removed, &gone] {
            assert!(!seen_by(&g, "bob", e), "the new bob sees {e:?}");
        }
        assert!(seen_by(&g, "alice", &share) && seen_by(&g, "alice", &group_share), "alice is still alice");
        assert!(!seen_by(&g, "carol", &group_share), "the old cert's admin is not in the new one");
        // The operator sees both bobs, told apart.
        assert!([&share, &removed].iter().all(|e| Filter::default().matches(e)));
        assert!(Filter { user: Some("bob".into()), ..Filter::default() }.matches(&share));
        let new = recorded(&mut g, Actor::User("bob".into()), &Command::AddUser { name: "dave".into() });
        assert!(seen_by(&g, "bob", &new), "the new bob sees what he does");
        assert_ne!(new.actor_id, share.ids.users.get("bob").copied());
    }

    #[test]
    fn given_groups_of_a_v0_1_0_snapshot_then_restore_numbers_them_after_the_last() {
        let mut g = graph();
        g.apply(&Command::AddGroup { name: "abuse".into(), creator: "alice".into() }).unwrap();
        let mut json = serde_json::to_value(&g).unwrap();
        json.as_object_mut().unwrap().remove("last_group_id");
        for group in json["groups"].as_object_mut().unwrap().values_mut() {
            group.as_object_mut().unwrap().remove("id");
        }
        let old: Graph = serde_json::from_value::<Graph>(json).unwrap().restore();
        let ids: Vec<_> = old.groups().map(|(n, g)| (n.to_string(), g.id)).collect();
        assert_eq!(ids, [("abuse".to_string(), 1), ("cert".to_string(), 2)]);
        let mut next = old.clone();
        next.apply(&Command::AddGroup { name: "new".into(), creator: "bob".into() }).unwrap();
        assert_eq!(next.group("new").unwrap().id, 3);
    }

    #[test]
    fn retention_is_bounded() {
        assert!(Retention::default().check().is_ok());
        assert!(Retention { max_age_days: 0, max_events: 5 }.check().is_err());
        assert!(Retention { max_age_days: 5, max_events: 0 }.check().is_err());
        assert!(Retention { max_age_days: 5, max_events: Retention::MAX_EVENTS + 1 }.check().is_err());
    }
}
