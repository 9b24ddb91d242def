//! The sharing graph and its deterministic `apply`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::accounts::{Account, Session};
use crate::names::{check_name, check_secret, check_wire_name};
use crate::{Command, GraphError, Named};

/// The recipient of a share: a user, or a group (written `group:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    User(String),
    Group(String),
}

impl Target {
    pub fn parse(s: &str) -> Target {
        match s.strip_prefix("group:") {
            Some(g) => Target::Group(g.to_string()),
            None => Target::User(s.to_string()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(u) => f.write_str(u),
            Target::Group(g) => write!(f, "group:{g}"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Target::parse(&String::deserialize(d)?))
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// The sender's own messages.
    Shares,
    /// Own messages and those the sender receives on the channel (relaying).
    SharesAll,
}

impl ShareKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareKind::Shares => "shares",
            ShareKind::SharesAll => "shares_all",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub kind: ShareKind,
    pub accepted: bool,
    /// The log position that accepted it (0: before positions were kept).
    /// An archived message passes this share only if published at or after it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub since: Position,
    /// Opens the archive from before it was accepted.
    #[serde(default, skip_serializing_if = "is_default")]
    pub with_history: bool,
    /// What it lets through, and in which form (docs/sharing.md, "Filters").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::ShareFilter>,
}

/// A place in the Raft log: the index of the entry a change was applied at.
/// Archived messages carry the position their node had applied when they
/// were published, so "did this path exist then" is a comparison.
pub type Position = u64;

/// An hpfeeds credential. Keys are the only thing the wire protocol sees.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthKey {
    pub ident: String,
    pub secret: String,
    pub owner: String,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// A connection that ends leaves its place in each channel: the key's
    /// next subscriber first gets what it missed (docs/protocol.md, "Resume").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
}

/// A user's number: assigned in order of creation, never reused, the same on
/// every node. The sharing index and the publish path work with these.
pub type UserId = u32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Hex SHA-256 of the user's API token, if one was issued.
    pub token_hash: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub account: Account,
    /// Hex of the HMAC key that pseudonymizes what this user's filters hide:
    /// set with their first such filter, gone with the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym_key: Option<String>,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// A group's number: assigned in order of creation from 1, never reused,
/// the same on every node. A group that takes a removed group's name is
/// another group: the history tells them apart by this.
pub type GroupId = u32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// 0 only in a snapshot of v0.1.0, until `Graph::restore` numbers it.
    #[serde(default)]
    pub id: GroupId,
    pub admins: BTreeSet<String>,
    /// user → accepted the invitation?
    pub members: BTreeMap<String, bool>,
    /// The position at which each accepted member joined (none: before
    /// positions were kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub joined: BTreeMap<String, Position>,
}

impl Group {
    pub fn accepted_members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().filter(|(_, a)| **a).map(|(u, _)| u.as_str())
    }
}

/// A share as listed to people.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub from: String,
    /// A user, or `group:NAME`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to: Target,
    pub channel: String,
    pub kind: ShareKind,
    pub accepted: bool,
    /// Once accepted, the reader gets the archive from before it was too.
    #[serde(default, skip_serializing_if = "is_default")]
    pub with_history: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::Filter>,
}

/// Out-edges of one user on one channel.
pub type OutShares = BTreeMap<Target, Share>;

/// The whole graph. Shares are stored by channel, then sender, so the index
/// can walk one channel's subgraph without scanning the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    users: HashMap<String, User>,
    next_user_id: UserId,
    groups: BTreeMap<String, Group>,
    /// The largest group id assigned.
    #[serde(default)]
    last_group_id: GroupId,
    shares: BTreeMap<String, BTreeMap<String, OutShares>>,
    keys: BTreeMap<String, AuthKey>,
    /// Signed-in browsers by the SHA-256 of their cookie.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) sessions: BTreeMap<String, Session>,
    #[serde(default, skip_serializing_if = "is_default")]
    history_retention: crate::history::Retention,
    /// Reverse edges: recipient → (channel, sender). Derived; kept for removals.
    #[serde(skip)]
    inbound: BTreeMap<Target, BTreeSet<(String, String)>>,
    /// Names by id. Derived; `None` for removed users.
    #[serde(skip)]
    names: Vec<Option<String>>,
    /// Names in order, for listings and completion without a sort. Derived.
    #[serde(skip)]
    sorted_names: BTreeSet<String>,
    /// Shares with a filter, by channel: the index walks filters only there. Derived.
    #[serde(skip)]
    filtered: BTreeMap<String, usize>,
    /// The log position of the change being applied (set by the state
    /// machine before each entry): what accepted shares and joins record.
    #[serde(default, skip_serializing_if = "is_default")]
    position: Position,
    /// How long owners' messages are kept, by owner and channel (`keep.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) keeps: BTreeMap<String, BTreeMap<String, crate::Keep>>,
    /// Resume keys' places, by ident (`resume.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) resume: BTreeMap<String, crate::resume::KeyPositions>,
}

/// A place in the graph whose accepted out-edges on a channel changed: the
/// sharing index must recompute every publisher whose readers include `at`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dirty {
    pub channel: String,
    pub at: UserId,
}

/// What an applied command changed, for those who keep derived state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub dirty: BTreeSet<Dirty>,
    pub keys_changed: bool,
    /// For each change the history records, in order: the ids of the users
    /// and groups it names, as they were when it was applied.
    pub ids: Vec<crate::history::Ids>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds derived fields after deserialization.
    pub fn restore(mut self) -> Self {
        self.inbound.clear();
        let mut inbound: BTreeMap<Target, BTreeSet<(String, String)>> = BTreeMap::new();
        for (channel, by_from) in &self.shares {
            for (from, outs) in by_from {
                for to in outs.keys() {
                    inbound.entry(to.clone()).or_default().insert((channel.clone(), from.clone()));
                }
            }
        }
        self.inbound = inbound;
        self.filtered.clear();
        for (channel, by_from) in &self.shares {
            let n = by_from.values().flat_map(|o| o.values()).filter(|s| s.filter.is_some()).count();
            if n > 0 {
                self.filtered.insert(channel.clone(), n);
            }
        }
        self.names = vec![None; self.next_user_id as usize];
        for (name, user) in &self.users {
            self.names[user.id as usize] = Some(name.clone());
        }
        self.sorted_names = self.users.keys().cloned().collect();
        // Groups of a v0.1.0 snapshot, numbered in name order.
        for group in self.groups.values_mut().filter(|g| g.id == 0) {
            self.last_group_id += 1;
            group.id = self.last_group_id;
        }
        self
    }

    /// A graph with none of this one's entries but its counters and settings:
    /// what `dry_run` fills with the entries a command names.
    pub(crate) fn empty_like(&self) -> Graph {
        Graph {
            next_user_id: self.next_user_id,
            last_group_id: self.last_group_id,
            history_retention: self.history_retention,
            position: self.position,
            ..Graph::default()
        }
    }
    pub(crate) fn put_user(&mut self, name: &str, user: User) {
        self.users.insert(name.to_string(), user);
    }
    pub(crate) fn put_group(&mut self, name: &str, group: Group) {
        self.groups.insert(name.to_string(), group);
    }
    pub(crate) fn put_key(&mut self, key: AuthKey) {
        self.keys.insert(key.ident.clone(), key);
    }
    pub(crate) fn put_share(&mut self, from: &str, to: &Target, channel: &str, share: Share) {
        self.insert_share(from, to, channel, share);
    }

    // ---- queries ----

    pub fn has_user(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }
    /// Every user, sorted by name.
    pub fn users(&self) -> impl Iterator<Item = (&str, &User)> {
        self.sorted_names.iter().map(|n| (n.as_str(), &self.users[n]))
    }
    /// User names from `from` on, in order: a prefix search costs what it returns.
    pub fn user_names_from<'a>(&'a self, from: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        use std::ops::Bound;
        self.sorted_names.range::<str, _>((Bound::Included(from), Bound::Unbounded)).map(String::as_str)
    }
    /// Group names from `from` on, in order.
    pub fn group_names_from<'a>(&'a self, from: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        use std::ops::Bound;
        self.groups.range::<str, _>((Bound::Included(from), Bound::Unbounded)).map(|(n, _)| n.as_str())
    }
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }
    pub fn user_id(&self, name: &str) -> Option<UserId> {
        self.users.get(name).map(|u| u.id)
    }
    pub fn user_name(&self, id: UserId) -> Option<&str> {
        self.names.get(id as usize)?.as_deref()
    }
    /// One more than the largest id ever assigned.
    pub fn id_bound(&self) -> usize {
        self.next_user_id as usize
    }
    pub fn groups(&self) -> impl Iterator<Item = (&str, &Group)> {
        self.groups.iter().map(|(n, g)| (n.as_str(), g))
    }
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }
    pub fn is_group_admin(&self, group: &str, user: &str) -> bool {
        self.groups.get(group).is_some_and(|g| g.admins.contains(user))
    }
    pub fn history_retention(&self) -> crate::history::Retention {
        self.history_retention
    }

    /// The log position the next change is applied at: accepted shares and
    /// joined members record it (`past.rs`).
    pub fn set_position(&mut self, position: Position) {
        self.position = position;
    }

    pub fn key(&self, ident: &str) -> Option<&AuthKey> {
        self.keys.get(ident)
    }
    pub fn keys(&self) -> impl Iterator<Item = &AuthKey> {
        self.keys.values()
    }
    pub fn share(&self, from: &str, to: &Target, channel: &str) -> Option<&Share> {
        self.shares.get(channel)?.get(from)?.get(to)
    }
    pub fn share_count(&self) -> usize {
        self.shares.values().flat_map(|m| m.values()).map(|o| o.len()).sum()
    }
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.shares.keys().map(String::as_str)
    }
    /// Senders with at least one share on `channel`, with their out-edges.
    pub fn senders_on(&self, channel: &str) -> impl Iterator<Item = (&str, &OutShares)> {
        self.shares.get(channel).into_iter().flatten().map(|(f, o)| (f.as_str(), o))
    }
    /// Senders of the shares to `to` on `channel`, whatever their state.
    pub(crate) fn senders_to<'a>(&'a self, to: &Target, channel: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        use std::ops::Bound;
        let start = (channel.to_string(), String::new());
        self.inbound
            .get(to)
            .into_iter()
            .flat_map(move |set| set.range((Bound::Included(start.clone()), Bound::Unbounded)))
            .take_while(move |(c, _)| c == channel)
            .map(|(_, from)| from.as_str())
    }
    /// Every share with a filter.
    pub fn filtered_shares(&self) -> impl Iterator<Item = (&str, &Target, &str, &crate::ShareFilter)> {
        let filtered = self.shares.iter().filter(|(c, _)| self.filtered.contains_key(*c));
        filtered.flat_map(|(channel, by_from)| {
            by_from.iter().flat_map(move |(from, outs)| {
                outs.iter().filter_map(move |(to, s)| Some((from.as_str(), to, channel.as_str(), s.filter.as_ref()?)))
            })
        })
    }
    /// Whether some share on `channel` has a filter.
    pub fn has_filters(&self, channel: &str) -> bool {
        self.filtered.contains_key(channel)
    }
    pub fn out_shares(&self, from: &str, channel: &str) -> Option<&OutShares> {
        self.shares.get(channel)?.get(from)
    }
    pub fn all_shares(&self) -> impl Iterator<Item = ShareRecord> + '_ {
        self.shares.iter().flat_map(|(channel, by_from)| {
            by_from.iter().flat_map(move |(from, outs)| {
                outs.iter().map(move |(to, s)| ShareRecord {
                    from: from.clone(),
                    to: to.clone(),
                    channel: channel.clone(),
                    kind: s.kind,
                    accepted: s.accepted,
                    with_history: s.with_history,
                    filter: s.filter.as_ref().map(|f| f.spec().clone()),
                })
            })
        })
    }

    /// The shares `user` sends, and those to them or to a group they joined
    /// or administer (not to one they were only invited to): found through
    /// the reverse edges, without a walk over every share.
    pub fn shares_of(&self, user: &str) -> Vec<ShareRecord> {
        let record = |from: &str, to: &Target, channel: &str, s: &Share| ShareRecord {
            from: from.to_string(),
            to: to.clone(),
            channel: channel.to_string(),
            kind: s.kind,
            accepted: s.accepted,
            with_history: s.with_history,
            filter: s.filter.as_ref().map(|f| f.spec().clone()),
        };
        let mut out: Vec<ShareRecord> = Vec::new();
        for channel in self.shares.keys() {
            for (to, s) in self.out_shares(user, channel).into_iter().flatten() {
                out.push(record(user, to, channel, s));
            }
        }
        let groups = self
            .groups
            .iter()
            .filter(|(_, g)| g.members.get(user) == Some(&true) || g.admins.contains(user))
            .map(|(n, _)| Target::Group(n.clone()));
        for to in std::iter::once(Target::User(user.to_string())).chain(groups) {
            for (channel, from) in self.shares_into(&to) {
                if let Some(s) = self.share(from, &to, channel).filter(|_| from != user) {
                    out.push(record(from, &to, channel, s));
                }
            }
        }
        // In the order of `all_shares`.
        out.sort_by(|a, b| (&a.channel, &a.from, &a.to).cmp(&(&b.channel, &b.from, &b.to)));
        out
    }

    /// (channel, sender) of every share to `to`, accepted or not.
    pub fn shares_into(&self, to: &Target) -> impl Iterator<Item = (&str, &str)> {
        self.inbound.get(to).into_iter().flatten().map(|(c, f)| (c.as_str(), f.as_str()))
    }

    /// Groups `user` is an accepted member of.
    pub fn groups_of<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.groups.iter().filter(move |(_, g)| g.members.get(user) == Some(&true)).map(|(n, _)| n.as_str())
    }

    /// Users who receive what is shared to `to` (a user, or a group's accepted members).
    pub fn recipients<'a>(&'a self, to: &'a Target) -> Box<dyn Iterator<Item = &'a str> + 'a> {
        match to {
            Target::User(u) => Box::new(std::iter::once(u.as_str())),
            Target::Group(g) => match self.groups.get(g) {
                Some(group) => Box::new(group.accepted_members()),
                None => Box::new(std::iter::empty()),
            },
        }
    }

    // ---- mutation ----

    /// Validates `cmd` against the current state and applies it, or returns
    /// the reason and leaves the graph exactly as it was.
    ///
    /// A batch is all or nothing without a copy of the graph: its dry run, on
    /// a slice of what it names, refuses exactly what applying it would
    /// (`dry_run.rs`), so once that passes its commands apply here in turn.
    /// The cost is the batch's, not the graph's.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, GraphError> {
        let mut applied = Applied::default();
        match cmd {
            Command::Batch { commands } => {
                self.dry_run(cmd)?;
                for c in commands {
                    // Cannot fail after the dry run; were it to, every node would stop
                    // at the same step, so they would still agree.
                    self.apply_recorded(c, &mut applied)?;
                }
            }
            single => self.apply_recorded(single, &mut applied)?,
        }
        // After the whole entry: a batch that replaces a key keeps its places.
        if applied.keys_changed && !self.resume.is_empty() {
            self.forget_stale_positions();
        }
        Ok(applied)
    }

    /// `apply` as it is defined: a batch works on a copy, kept only if every
    /// step succeeds. What a dry run does on its slice; the property tests
    /// hold `apply` to it.
    #[doc(hidden)]
    pub fn apply_on_copy(&mut self, cmd: &Command) -> Result<Applied, GraphError> {
        let mut applied = Applied::default();
        match cmd {
            Command::Batch { commands } => {
                if commands.iter().any(|c| matches!(c, Command::Batch { .. })) {
                    return Err(GraphError::NestedBatch);
                }
                let mut scratch = self.clone();
                for c in commands {
                    scratch.apply_recorded(c, &mut applied)?;
                }
                *self = scratch;
            }
            single => self.apply_recorded(single, &mut applied)?,
        }
        Ok(applied)
    }

    /// Applies one command and notes the ids of what it names: a removed
    /// name's as it was, a created one's as it is now.
    fn apply_recorded(&mut self, cmd: &Command, out: &mut Applied) -> Result<(), GraphError> {
        let recorded = crate::history::count(cmd) > 0;
        let before = recorded.then(|| crate::history::Ids::of(cmd, self));
        self.apply_one(cmd, out)?;
        if let Some(before) = before {
            out.ids.push(before.or(crate::history::Ids::of(cmd, self)));
        }
        Ok(())
    }

    fn apply_one(&mut self, cmd: &Command, out: &mut Applied) -> Result<(), GraphError> {
        match cmd {
            Command::AddUser { name } => self.add_user(name)?,
            Command::RemoveUser { name } => {
                self.need_user(name)?;
                self.remove_user(name, out);
            }
            Command::SetUserToken { name, token_hash } => {
                self.need_user(name)?;
                self.users.get_mut(name).expect("checked").token_hash = Some(token_hash.clone());
            }
            Command::AddGroup { name, creator } => {
                check_name(Named::Group, name)?;
                self.need_user(creator)?;
                if self.groups.contains_key(name) {
                    return Err(GraphError::GroupExists(name.clone()));
                }
                if self.users.contains_key(name) {
                    return Err(GraphError::NameTaken(name.clone()));
                }
                self.last_group_id += 1;
                let mut group = Group { id: self.last_group_id, ..Group::default() };
                group.admins.insert(creator.clone());
                group.members.insert(creator.clone(), true);
                group.joined.insert(creator.clone(), self.position);
                self.groups.insert(name.clone(), group);
            }
            Command::RemoveGroup { name } => {
                self.need_group(name)?;
                self.mark_group_edges(name, out);
                self.remove_inbound(&Target::Group(name.clone()), out);
                self.groups.remove(name);
            }
            Command::AddGroupAdmin { group, user } => {
                self.need_user(user)?;
                let g = self.need_group(group)?;
                if g.admins.contains(user) {
                    return Err(GraphError::AlreadyAdmin { group: group.clone(), user: user.clone() });
                }
                self.groups.get_mut(group).expect("checked").admins.insert(user.clone());
            }
            Command::InviteMember { group, user } => {
                self.need_user(user)?;
                let g = self.need_group(group)?;
                if g.members.contains_key(user) {
                    return Err(GraphError::AlreadyMember { group: group.clone(), user: user.clone() });
                }
                self.groups.get_mut(group).expect("checked").members.insert(user.clone(), false);
            }
            Command::AcceptMembership { group, user } => {
                self.need_user(user)?;
                let g = self.need_group(group)?;
                match g.members.get(user) {
                    None => return Err(GraphError::NotInvited { group: group.clone(), user: user.clone() }),
                    Some(true) => {} // accepting twice is harmless
                    Some(false) => {
                        let g = self.groups.get_mut(group).expect("checked");
                        g.members.insert(user.clone(), true);
                        g.joined.insert(user.clone(), self.position);
                        self.mark_group_edges(group, out);
                    }
                }
            }
            Command::RemoveMember { group, user } => {
                let g = self.need_group(group)?;
                let Some(&accepted) = g.members.get(user) else {
                    return Err(GraphError::NotInvited { group: group.clone(), user: user.clone() });
                };
                if g.admins.contains(user) && g.admins.len() == 1 {
                    return Err(GraphError::LastAdmin { group: group.clone(), user: user.clone() });
                }
                let g = self.groups.get_mut(group).expect("checked");
                g.members.remove(user);
                g.joined.remove(user);
                g.admins.remove(user);
                if accepted {
                    self.mark_group_edges(group, out);
                }
            }
            Command::AddShare { from, to, channel, kind, with_history } => {
                self.need_user(from)?;
                check_wire_name(Named::Channel, channel)?;
                self.need_target(to)?;
                if *to == Target::User(from.clone()) {
                    return Err(GraphError::SelfShare);
                }
                if self.share(from, to, channel).is_some() {
                    return Err(GraphError::ShareExists {
                        from: from.clone(),
                        to: to.to_string(),
                        channel: channel.clone(),
                    });
                }
                let share = Share { kind: *kind, accepted: false, since: 0, with_history: *with_history, filter: None };
                self.insert_share(from, to, channel, share);
            }
            Command::AcceptShare { from, to, channel } => {
                let share = self.need_share(from, to, channel)?;
                if !share.accepted {
                    let position = self.position;
                    let share = self.share_mut(from, to, channel);
                    share.accepted = true;
                    share.since = position;
                    let at = self.users[from].id;
                    out.dirty.insert(Dirty { channel: channel.clone(), at });
                }
            }
            Command::RemoveShare { from, to, channel } => {
                self.need_share(from, to, channel)?;
                self.delete_share(from, to, channel, out);
            }
            Command::SetShareFilter { from, to, channel, filter, key } => {
                let accepted = self.need_share(from, to, channel)?.accepted;
                let filter = filter.as_ref().filter(|f| !f.is_empty()).map(crate::ShareFilter::new).transpose()?;
                let sender = &self.users[from];
                let new_key = match (&filter, &sender.pseudonym_key, key) {
                    (Some(f), None, Some(k)) if !f.spec().pseudonymize.is_empty() => {
                        crate::filter::check_key(k)?;
                        Some(k.clone())
                    }
                    (Some(f), None, None) if !f.spec().pseudonymize.is_empty() => {
                        return Err(GraphError::InvalidFilter {
                            part: "pseudonymize".into(),
                            reason: format!("{from} has no pseudonym key and none was given"),
                        });
                    }
                    _ => None,
                };
                let at = sender.id;
                if new_key.is_some() {
                    self.users.get_mut(from).expect("checked").pseudonym_key = new_key;
                }
                let share = self.share_mut(from, to, channel);
                let had = std::mem::replace(&mut share.filter, filter).is_some();
                let has = share.filter.is_some();
                if had != has {
                    self.count_filter(channel, has);
                }
                if accepted {
                    out.dirty.insert(Dirty { channel: channel.clone(), at });
                }
            }
            Command::AddKey(key) => {
                check_wire_name(Named::Ident, &key.ident)?;
                check_secret(&key.secret)?;
                self.need_user(&key.owner)?;
                for c in key.publish.iter().chain(&key.subscribe) {
                    check_wire_name(Named::Channel, c)?;
                }
                if self.keys.contains_key(&key.ident) {
                    return Err(GraphError::IdentExists(key.ident.clone()));
                }
                self.keys.insert(key.ident.clone(), key.clone());
                out.keys_changed = true;
            }
            Command::RemoveKey { ident } => {
                if self.keys.remove(ident).is_none() {
                    return Err(GraphError::UnknownKey(ident.clone()));
                }
                out.keys_changed = true;
            }
            // Named one by one so that a new command kind must be placed here.
            Command::InviteUser { .. }
            | Command::SetPassword { .. }
            | Command::SetUserDisabled { .. }
            | Command::StartSession { .. }
            | Command::EndSession { .. }
            | Command::EndSessionsOf { .. }
            | Command::AddApiToken { .. }
            | Command::RemoveApiToken { .. } => self.apply_account(cmd, &mut out.keys_changed)?,
            Command::SetHistoryRetention(retention) => {
                retention.check()?;
                self.history_retention = *retention;
            }
            Command::SetResumePositions { positions } => self.set_resume_positions(positions),
            Command::SetChannelKeep { owner, channel, keep } => {
                self.need_user(owner)?;
                check_wire_name(Named::Channel, channel)?;
                if let Some(crate::Keep::Secs(secs)) = keep {
                    if !(1..=crate::keep::MAX_KEEP_SECS).contains(secs) {
                        return Err(GraphError::InvalidSetting(format!(
                            "keep must be 1 s to 10 years (or off), not {secs} s"
                        )));
                    }
                }
                self.set_keep(owner, channel, *keep)?;
            }
            Command::Batch { .. } => return Err(GraphError::NestedBatch),
        }
        Ok(())
    }

    pub(crate) fn add_user(&mut self, name: &str) -> Result<(), GraphError> {
        check_name(Named::User, name)?;
        if self.users.contains_key(name) {
            return Err(GraphError::UserExists(name.to_string()));
        }
        if self.groups.contains_key(name) {
            return Err(GraphError::NameTaken(name.to_string()));
        }
        let id = self.next_user_id;
        self.next_user_id += 1;
        self.users.insert(name.to_string(), User { id, ..User::default() });
        self.names.push(Some(name.to_string()));
        self.sorted_names.insert(name.to_string());
        Ok(())
    }

    pub(crate) fn account_mut(&mut self, name: &str) -> Result<&mut Account, GraphError> {
        self.users.get_mut(name).map(|u| &mut u.account).ok_or_else(|| GraphError::UnknownUser(name.to_string()))
    }

    fn need_user(&self, name: &str) -> Result<&User, GraphError> {
        self.users.get(name).ok_or_else(|| GraphError::UnknownUser(name.to_string()))
    }
    fn need_group(&self, name: &str) -> Result<&Group, GraphError> {
        self.groups.get(name).ok_or_else(|| GraphError::UnknownGroup(name.to_string()))
    }
    fn need_target(&self, to: &Target) -> Result<(), GraphError> {
        match to {
            Target::User(u) => self.need_user(u).map(drop),
            Target::Group(g) => self.need_group(g).map(drop),
        }
    }
    fn need_share(&self, from: &str, to: &Target, channel: &str) -> Result<&Share, GraphError> {
        self.share(from, to, channel).ok_or_else(|| GraphError::UnknownShare {
            from: from.to_string(),
            to: to.to_string(),
            channel: channel.to_string(),
        })
    }

    /// A share `need_share` found.
    fn share_mut(&mut self, from: &str, to: &Target, channel: &str) -> &mut Share {
        let by_from = self.shares.get_mut(channel).and_then(|m| m.get_mut(from));
        by_from.and_then(|o| o.get_mut(to)).expect("checked")
    }

    fn count_filter(&mut self, channel: &str, added: bool) {
        let n = self.filtered.entry(channel.to_string()).or_default();
        *n = if added { *n + 1 } else { n.saturating_sub(1) };
        if *n == 0 {
            self.filtered.remove(channel);
        }
    }

    fn insert_share(&mut self, from: &str, to: &Target, channel: &str, share: Share) {
        self.shares
            .entry(channel.to_string())
            .or_default()
            .entry(from.to_string())
            .or_default()
            .insert(to.clone(), share);
        self.inbound.entry(to.clone()).or_default().insert((channel.to_string(), from.to_string()));
    }

    fn delete_share(&mut self, from: &str, to: &Target, channel: &str, out: &mut Applied) {
        let Some(by_from) = self.shares.get_mut(channel) else {
            return;
        };
        let Some(outs) = by_from.get_mut(from) else {
            return;
        };
        let removed = outs.remove(to);
        if outs.is_empty() {
            by_from.remove(from);
        }
        if by_from.is_empty() {
            self.shares.remove(channel);
        }
        if let Some(share) = removed {
            if share.filter.is_some() {
                self.count_filter(channel, false);
            }
            if share.accepted {
                let at = self.users.get(from).expect("shares are removed before their sender").id;
                out.dirty.insert(Dirty { channel: channel.to_string(), at });
            }
        }
        if let Some(set) = self.inbound.get_mut(to) {
            set.remove(&(channel.to_string(), from.to_string()));
            if set.is_empty() {
                self.inbound.remove(to);
            }
        }
    }

    /// Every accepted share into `group` starts at a place whose reach changes
    /// when the group's accepted membership changes.
    fn mark_group_edges(&self, group: &str, out: &mut Applied) {
        let target = Target::Group(group.to_string());
        for (channel, from) in self.inbound.get(&target).into_iter().flatten() {
            if self.share(from, &target, channel).is_some_and(|s| s.accepted) {
                out.dirty.insert(Dirty { channel: channel.clone(), at: self.users[from].id });
            }
        }
    }

    fn remove_inbound(&mut self, to: &Target, out: &mut Applied) {
        let edges: Vec<(String, String)> = self.inbound.get(to).into_iter().flatten().cloned().collect();
        for (channel, from) in edges {
            self.delete_share(&from, to, &channel, out);
        }
    }

    fn remove_user(&mut self, name: &str, out: &mut Applied) {
        // Shares sent by the user.
        let sent: Vec<(String, Target)> = self
            .shares
            .iter()
            .filter_map(|(c, by_from)| by_from.get(name).map(|o| (c, o)))
            .flat_map(|(c, o)| o.keys().map(move |t| (c.clone(), t.clone())))
            .collect();
        for (channel, to) in sent {
            self.delete_share(name, &to, &channel, out);
        }
        // Shares received by the user.
        self.remove_inbound(&Target::User(name.to_string()), out);
        // Memberships and admin roles. A group left without admins goes with it.
        let groups: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.members.contains_key(name) || g.admins.contains(name))
            .map(|(n, _)| n.clone())
            .collect();
        for group in groups {
            let g = self.groups.get_mut(&group).expect("listed");
            let was_accepted = g.members.remove(name).unwrap_or(false);
            g.joined.remove(name);
            g.admins.remove(name);
            if g.admins.is_empty() {
                self.mark_group_edges(&group, out);
                self.remove_inbound(&Target::Group(group.clone()), out);
                self.groups.remove(&group);
            } else if was_accepted {
                self.mark_group_edges(&group, out);
            }
        }
        let before = self.keys.len();
        self.keys.retain(|_, k| k.owner != name);
        self.keeps.remove(name);
        out.keys_changed |= self.keys.len() != before;
        self.end_sessions_of(name);
        if let Some(user) = self.users.remove(name) {
            self.names[user.id as usize] = None;
            self.sorted_names.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_users_added_removed_and_restored_then_names_from_a_prefix_come_in_order() {
        let mut g = Graph::new();
        for name in ["bob", "alice", "alfred", "carol", "al"] {
            g.apply(&Command::AddUser { name: name.into() }).unwrap();
        }
        g.apply(&Command::RemoveUser { name: "alfred".into() }).unwrap();
        let starting = |g: &Graph, p: &str| -> Vec<String> {
            g.user_names_from(p).take_while(|n| n.starts_with(p)).map(str::to_string).collect()
        };
        assert_eq!(starting(&g, "al"), ["al", "alice"]);
        assert_eq!(starting(&g, "b"), ["bob"]);
        assert!(starting(&g, "d").is_empty());
        let restored: Graph = serde_json::from_str::<Graph>(&serde_json::to_string(&g).unwrap()).unwrap().restore();
        assert_eq!(restored, g, "the order is derived, and derived alike");
        assert_eq!(g.users().map(|(n, _)| n).collect::<Vec<_>>(), ["al", "alice", "bob", "carol"]);
    }
}
