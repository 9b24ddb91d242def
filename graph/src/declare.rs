//! Declarative graph state (`ctl apply`): what should exist, turned into the
//! commands that create whatever is missing. Applying the same declaration
//! twice yields no commands the second time.

use serde::{Deserialize, Serialize};

use crate::model::{AuthKey, Graph, ShareKind, Target};
use crate::Command;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<GroupDecl>,
    #[serde(default)]
    pub shares: Vec<ShareDecl>,
    #[serde(default)]
    pub keys: Vec<AuthKey>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDecl {
    pub name: String,
    pub admins: Vec<String>,
    #[serde(default)]
    pub members: Vec<String>,
    /// Memberships are accepted unless this is false.
    #[serde(default = "yes")]
    pub accepted: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareDecl {
    pub from: String,
    /// A user, or `group:NAME`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to: Target,
    pub channel: String,
    pub kind: ShareKind,
    #[serde(default = "yes")]
    pub accepted: bool,
    /// Opens the archive from before it was accepted (docs/sharing.md, "The past").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_history: bool,
    /// What it lets through (docs/sharing.md, "Filters"); none: everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::Filter>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclarationError {
    #[error("group {0:?} needs at least one admin")]
    GroupWithoutAdmin(String),
}

/// The commands that make `graph` contain `decl`, in an order that applies.
/// Existing things are updated where they differ (a share's kind, a key's
/// secret or channels); nothing that is not declared is removed.
pub fn plan(decl: &Declaration, graph: &Graph) -> Result<Vec<Command>, DeclarationError> {
    let mut cmds = Vec::new();
    let mut users: Vec<&String> = decl.users.iter().collect();
    // Users named only in groups, shares or keys are created too.
    users.extend(decl.groups.iter().flat_map(|g| g.admins.iter().chain(&g.members)));
    users.extend(decl.shares.iter().flat_map(|s| {
        std::iter::once(&s.from).chain(match &s.to {
            Target::User(u) => Some(u),
            Target::Group(_) => None,
        })
    }));
    users.extend(decl.keys.iter().map(|k| &k.owner));
    let mut seen = std::collections::HashSet::new();
    for u in users {
        if seen.insert(u) && !graph.has_user(u) {
            cmds.push(Command::AddUser { name: u.clone() });
        }
    }

    for g in &decl.groups {
        let Some(first_admin) = g.admins.first() else {
            return Err(DeclarationError::GroupWithoutAdmin(g.name.clone()));
        };
        let existing = graph.group(&g.name);
        if existing.is_none() {
            cmds.push(Command::AddGroup { name: g.name.clone(), creator: first_admin.clone() });
        }
        let is_admin =
            |u: &str| existing.is_some_and(|e| e.admins.contains(u)) || (existing.is_none() && u == first_admin);
        for a in &g.admins {
            if !is_admin(a) {
                cmds.push(Command::AddGroupAdmin { group: g.name.clone(), user: a.clone() });
            }
        }
        for m in &g.members {
            let state = match existing {
                Some(e) => e.members.get(m).copied(),
                None if m == first_admin => Some(true),
                None => None,
            };
            if state.is_none() {
                cmds.push(Command::InviteMember { group: g.name.clone(), user: m.clone() });
            }
            if g.accepted && state != Some(true) {
                cmds.push(Command::AcceptMembership { group: g.name.clone(), user: m.clone() });
            }
        }
    }

    for s in &decl.shares {
        let (from, to, channel) = (s.from.clone(), s.to.clone(), s.channel.clone());
        let existing = graph.share(&s.from, &s.to, &s.channel);
        let add = Command::AddShare {
            from: from.clone(),
            to: to.clone(),
            channel: channel.clone(),
            kind: s.kind,
            with_history: s.with_history,
        };
        let accepted_now = match existing {
            None => {
                cmds.push(add);
                false
            }
            Some(e) if e.kind != s.kind || e.with_history != s.with_history => {
                cmds.push(Command::RemoveShare { from: from.clone(), to: to.clone(), channel: channel.clone() });
                cmds.push(add);
                false
            }
            Some(e) => e.accepted,
        };
        // A filter is set on a share that is new or differs; its pseudonym
        // key, if it needs one, is the caller's to add (this plan is pure).
        let filter = s.filter.clone().filter(|f| !f.is_empty());
        let current = existing.filter(|_| !matches!(cmds.last(), Some(Command::AddShare { .. })));
        if current.and_then(|e| e.filter.as_ref()).map(|f| f.spec()) != filter.as_ref() {
            let (from, to, channel) = (from.clone(), to.clone(), channel.clone());
            cmds.push(Command::SetShareFilter { from, to, channel, filter, key: None });
        }
        if s.accepted && !accepted_now {
            cmds.push(Command::AcceptShare { from, to, channel });
        }
    }

    for k in &decl.keys {
        match graph.key(&k.ident) {
            None => cmds.push(Command::AddKey(k.clone())),
            Some(existing) if existing != k => {
                cmds.push(Command::RemoveKey { ident: k.ident.clone() });
                cmds.push(Command::AddKey(k.clone()));
            }
            Some(_) => {}
        }
    }
    Ok(cmds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
      "users":  ["jojo", "mark", "alice", "eve"],
      "groups": [{"name": "honeynet", "admins": ["mark"], "members": ["mark", "alice"]}],
      "shares": [
        {"from": "jojo", "to": "mark",           "channel": "dionaea.captures", "kind": "shares"},
        {"from": "mark", "to": "alice",          "channel": "dionaea.captures", "kind": "shares_all"},
        {"from": "jojo", "to": "group:honeynet", "channel": "geoloc.events",    "kind": "shares"}
      ],
      "keys": [
        {"ident": "jojo-sensor", "secret": "s3cret", "owner": "jojo",
         "publish": ["dionaea.captures", "geoloc.events"], "subscribe": []}
      ]
    }"#;

    #[test]
    fn given_design_doc_when_planned_twice_then_second_plan_is_empty() {
        let decl: Declaration = serde_json::from_str(DOC).unwrap();
        let mut graph = Graph::new();
        let cmds = plan(&decl, &graph).unwrap();
        graph.apply(&Command::Batch { commands: cmds }).unwrap();
        let index = crate::SharingIndex::build(&graph);
        assert!(index.may_read_by_name(&graph, "jojo", "alice", "dionaea.captures"));
        assert!(index.may_read_by_name(&graph, "jojo", "alice", "geoloc.events"));
        assert!(!index.may_read_by_name(&graph, "jojo", "eve", "dionaea.captures"));
        assert_eq!(plan(&decl, &graph).unwrap(), vec![]);
    }

    #[test]
    fn given_changed_kind_then_share_is_replaced() {
        let mut decl: Declaration = serde_json::from_str(DOC).unwrap();
        let mut graph = Graph::new();
        graph.apply(&Command::Batch { commands: plan(&decl, &graph).unwrap() }).unwrap();
        decl.shares[1].kind = ShareKind::Shares;
        graph.apply(&Command::Batch { commands: plan(&decl, &graph).unwrap() }).unwrap();
        let index = crate::SharingIndex::build(&graph);
        assert!(!index.may_read_by_name(&graph, "jojo", "alice", "dionaea.captures"));
        assert!(index.may_read_by_name(&graph, "mark", "alice", "dionaea.captures"));
    }

    #[test]
    fn given_a_filter_declared_then_it_is_set_once_and_changed_or_cleared_in_place() {
        let mut decl: Declaration = serde_json::from_str(DOC).unwrap();
        decl.shares[0].filter = Some(serde_json::from_str(r#"{"where": "size < 100", "redact": ["/daddr"]}"#).unwrap());
        let mut graph = Graph::new();
        graph.apply(&Command::Batch { commands: plan(&decl, &graph).unwrap() }).unwrap();
        let share = |g: &Graph| g.share("jojo", &Target::User("mark".into()), "dionaea.captures").cloned().unwrap();
        assert_eq!(share(&graph).filter.map(|f| f.spec().clone()), decl.shares[0].filter);
        assert!(share(&graph).accepted);
        assert_eq!(plan(&decl, &graph).unwrap(), vec![]);
        decl.shares[0].filter = None;
        let cmds = plan(&decl, &graph).unwrap();
        assert!(matches!(cmds.as_slice(), [Command::SetShareFilter { filter: None, .. }]), "{cmds:?}");
        graph.apply(&Command::Batch { commands: cmds }).unwrap();
        assert_eq!(share(&graph).filter, None);
        assert!(share(&graph).accepted, "a filter change keeps the share accepted");
    }

    #[test]
    fn given_unknown_field_then_parse_error_names_it() {
        let err = serde_json::from_str::<Declaration>(r#"{"userz": []}"#).unwrap_err();
        assert!(err.to_string().contains("userz"), "{err}");
    }
}
