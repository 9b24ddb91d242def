//! Whether a command would apply, found before it is proposed and at the cost
//! of what it names: the command is applied to a slice of the graph that holds
//! only the users, groups, keys and share edges it names. What `apply` checks
//! reads nothing else, so the slice refuses exactly what the whole graph would
//! (a property test holds the two to each other).

use std::collections::BTreeSet;

use crate::model::{Graph, Target};
use crate::{Actor, Command, GraphError};

/// What a command reads when it is applied.
#[derive(Default)]
struct Named<'a> {
    users: BTreeSet<&'a str>,
    groups: BTreeSet<&'a str>,
    keys: BTreeSet<&'a str>,
    shares: BTreeSet<(&'a str, &'a Target, &'a str)>,
}

impl<'a> Named<'a> {
    fn target(&mut self, to: &'a Target) {
        match to {
            Target::User(u) => self.users.insert(u.as_str()),
            Target::Group(g) => self.groups.insert(g.as_str()),
        };
    }

    /// A new user or group name must be neither's yet.
    fn new_name(&mut self, name: &'a str) {
        self.users.insert(name);
        self.groups.insert(name);
    }

    fn add(&mut self, command: &'a Command) {
        match command {
            Command::AddUser { name } | Command::InviteUser { name, .. } => self.new_name(name),
            Command::AddGroup { name, creator } => {
                self.new_name(name);
                self.users.insert(creator);
            }
            Command::RemoveUser { name }
            | Command::SetUserToken { name, .. }
            | Command::SetPassword { name, .. }
            | Command::SetUserDisabled { name, .. }
            | Command::AddApiToken { name, .. }
            | Command::RemoveApiToken { name, .. } => {
                self.users.insert(name);
            }
            Command::RemoveGroup { name } => {
                self.groups.insert(name);
            }
            Command::AddGroupAdmin { group, user }
            | Command::InviteMember { group, user }
            | Command::AcceptMembership { group, user }
            | Command::RemoveMember { group, user } => {
                self.groups.insert(group);
                self.users.insert(user);
            }
            Command::AddShare { from, to, channel, .. }
            | Command::SetShareFilter { from, to, channel, .. }
            | Command::AcceptShare { from, to, channel }
            | Command::RemoveShare { from, to, channel } => {
                self.users.insert(from);
                self.target(to);
                self.shares.insert((from, to, channel));
            }
            Command::AddKey(key) => {
                self.keys.insert(&key.ident);
                self.users.insert(&key.owner);
            }
            Command::RemoveKey { ident } => {
                self.keys.insert(ident);
            }
            Command::StartSession { actor: Actor::User(name), .. } | Command::SetChannelKeep { owner: name, .. } => {
                self.users.insert(name);
            }
            Command::StartSession { .. }
            | Command::EndSession { .. }
            | Command::EndSessionsOf { .. }
            | Command::SetHistoryRetention(_)
            | Command::SetResumePositions { .. } => {}
            Command::Batch { commands } => commands.iter().for_each(|c| self.add(c)),
        }
    }
}

impl Graph {
    /// Applies `command` to a slice of this graph holding what it names:
    /// `Ok` exactly when applying it to the whole graph would be.
    pub fn dry_run(&self, command: &Command) -> Result<(), GraphError> {
        let mut named = Named::default();
        named.add(command);
        self.slice(&named).apply_on_copy(command).map(drop)
    }

    fn slice(&self, named: &Named) -> Graph {
        let mut slice = self.empty_like();
        for name in &named.users {
            if let Some(user) = self.user(name) {
                slice.put_user(name, user.clone());
            }
            // An owner's keeps: how many there are is checked.
            if let Some(keeps) = self.keeps.get(*name) {
                slice.keeps.insert(name.to_string(), keeps.clone());
            }
        }
        for name in &named.groups {
            if let Some(group) = self.group(name) {
                slice.put_group(name, group.clone());
            }
        }
        for ident in &named.keys {
            if let Some(key) = self.key(ident) {
                slice.put_key(key.clone());
            }
        }
        for &(from, to, channel) in &named.shares {
            if let Some(share) = self.share(from, to, channel) {
                slice.put_share(from, to, channel, share.clone());
            }
        }
        slice.restore()
    }
}
