//! Who may issue which command (docs/sharing.md, "Who may change what").
//!
//! The operator may do anything. A user may change only their own keys and
//! shares, accept what is offered to them, and manage groups they administer.

use crate::model::{Graph, Target};
use crate::Command;

/// Who issued a command. Travels with the command in the Raft log, so every
/// node authorizes it at apply time against the same state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    #[default]
    Operator,
    User(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forbidden: {0}")]
pub struct Forbidden(pub String);

impl From<Forbidden> for crate::GraphError {
    fn from(f: Forbidden) -> Self {
        crate::GraphError::Forbidden(f.0)
    }
}

/// Whether `me` answers for the recipient of a share to `to` (accepts or
/// declines it): the user themself, or for a group an admin of it.
pub fn may_accept(graph: &Graph, me: &str, to: &Target) -> bool {
    match to {
        Target::User(u) => u == me,
        Target::Group(g) => graph.is_group_admin(g, me),
    }
}

pub fn authorize(actor: &Actor, cmd: &Command, graph: &Graph) -> Result<(), Forbidden> {
    let Actor::User(me) = actor else {
        return Ok(());
    };
    let me = me.as_str();
    let deny = |why: String| Err(Forbidden(why));
    let admin_of = |group: &str| graph.is_group_admin(group, me);
    let receives = |to: &Target| may_accept(graph, me, to);
    match cmd {
        Command::SetHistoryRetention(_) => deny("only the operator sets how much history is kept".into()),
        Command::SetResumePositions { .. } => deny("only nodes record where resume keys had reached".into()),
        Command::SetChannelKeep { owner, .. } if owner == me => Ok(()),
        Command::SetChannelKeep { owner, .. } => deny(format!("{me} cannot set how long {owner}'s messages are kept")),
        Command::AddUser { .. }
        | Command::RemoveUser { .. }
        | Command::InviteUser { .. }
        | Command::SetUserDisabled { .. } => deny("only the operator manages users".into()),
        Command::StartSession { actor: Actor::User(name), .. }
        | Command::SetPassword { name, .. }
        | Command::AddApiToken { name, .. }
        | Command::RemoveApiToken { name, .. } => {
            if name == me {
                Ok(())
            } else {
                deny(format!("{me} cannot change {name}'s account"))
            }
        }
        Command::StartSession { actor: Actor::Operator, .. } => deny("only the operator signs in as operator".into()),
        Command::EndSessionsOf { actor: Actor::User(name) } if name == me => Ok(()),
        Command::EndSessionsOf { .. } => deny("a user may only end their own sessions".into()),
        Command::EndSession { session_hash } => match graph.session_owner(session_hash) {
            Some(Actor::User(owner)) if owner == me => Ok(()),
            None => Ok(()),
            Some(_) => deny("a user may only end their own sessions".into()),
        },
        Command::SetUserToken { name, .. } if name == me => Ok(()),
        Command::SetUserToken { .. } => deny("a user may only renew their own token".into()),
        Command::AddGroup { creator, .. } if creator == me => Ok(()),
        Command::AddGroup { .. } => deny("a group's creator must be the user who creates it".into()),
        Command::RemoveGroup { name: group, .. }
        | Command::AddGroupAdmin { group, .. }
        | Command::InviteMember { group, .. } => {
            if admin_of(group) {
                Ok(())
            } else {
                deny(format!("{me} is not an admin of group {group}"))
            }
        }
        Command::AcceptMembership { user, group } if user != me => {
            deny(format!("only {user} can accept an invitation to {group}"))
        }
        Command::AcceptMembership { .. } => Ok(()),
        Command::RemoveMember { group, user } => {
            if user == me || admin_of(group) {
                Ok(())
            } else {
                deny(format!("only {user} or an admin of {group} can remove that membership"))
            }
        }
        Command::AddShare { from, .. } if from != me => deny(format!("{me} cannot offer {from}'s data")),
        Command::AddShare { .. } => Ok(()),
        Command::SetShareFilter { from, .. } if from != me => deny(format!("{me} cannot filter {from}'s data")),
        Command::SetShareFilter { .. } => Ok(()),
        Command::AcceptShare { to, .. } => {
            if receives(to) {
                Ok(())
            } else {
                deny(format!("only the recipient {to} (for a group: an admin) can accept this share"))
            }
        }
        Command::RemoveShare { from, to, .. } => {
            if from == me || receives(to) {
                Ok(())
            } else {
                deny("only the sender or the recipient can remove a share".into())
            }
        }
        Command::AddKey(key) if key.owner != me => deny(format!("{me} cannot create keys for {}", key.owner)),
        Command::AddKey(_) => Ok(()),
        Command::RemoveKey { ident } => match graph.key(ident) {
            Some(k) if k.owner != me => deny(format!("key {ident} belongs to another user")),
            _ => Ok(()), // unknown keys get the ordinary "unknown" error
        },
        Command::Batch { commands } => commands.iter().try_for_each(|c| authorize(actor, c, graph)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Retention;
    use crate::synthetic::Fixture;
    use crate::{AuthKey, ShareKind};

    const JOJO_SESSION: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const HASH: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const PASSWORD: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    /// jojo is "the user themself" of every command below; mark another user
    /// who offers jojo and group g a share; ada the admin of g, mem a member,
    /// inv invited to it; dis a disabled user.
    fn graph() -> Graph {
        Fixture::new()
            .users(&["jojo", "mark", "ada", "mem", "inv", "dis"])
            .group("g", "ada", &["mem"])
            .invite("g", "inv")
            .offer("mark", "jojo", "c")
            .offer("mark", "group:g", "c")
            .key("jojo-key", "jojo", &["c"], &[])
            .command(Command::SetPassword {
                name: "jojo".into(),
                password_hash: PASSWORD.into(),
                invitation: None,
                at: 1,
            })
            .command(Command::StartSession {
                actor: Actor::User("jojo".into()),
                session_hash: JOJO_SESSION.into(),
                expires_at: u64::MAX,
                at: 1,
            })
            .command(Command::SetUserDisabled { name: "dis".into(), disabled: true })
            .graph()
    }

    fn key(owner: &str) -> AuthKey {
        AuthKey {
            ident: format!("{owner}-new"),
            secret: "s".repeat(20),
            owner: owner.into(),
            publish: vec![],
            subscribe: vec![],
            resume: false,
        }
    }

    fn share(from: &str, to: &str) -> (String, Target, String) {
        (from.into(), Target::parse(to), "c".into())
    }

    /// Every actor of the table; `Operator` is `None`.
    const ACTORS: [Option<&str>; 7] =
        [None, Some("jojo"), Some("mark"), Some("ada"), Some("mem"), Some("inv"), Some("dis")];

    /// Every command kind, with the actors allowed to issue it and the
    /// refusal every other actor gets (`{me}` is the actor's name). The
    /// operator may do anything. A disabled user is authorized like any
    /// user: the account is refused earlier, when it authenticates (its
    /// tokens and sessions stop working), never here.
    fn table() -> Vec<(Command, &'static [&'static str], &'static str)> {
        let (f, t, c) = share("mark", "jojo");
        let (gf, gt, gc) = share("mark", "group:g");
        vec![
            (Command::AddUser { name: "new".into() }, &[], "only the operator manages users"),
            (Command::RemoveUser { name: "jojo".into() }, &[], "only the operator manages users"),
            (
                Command::InviteUser { name: "jojo".into(), token_hash: HASH.into(), expires_at: 9 },
                &[],
                "only the operator manages users",
            ),
            (Command::SetUserDisabled { name: "jojo".into(), disabled: true }, &[], "only the operator manages users"),
            (
                Command::SetHistoryRetention(Retention::default()),
                &[],
                "only the operator sets how much history is kept",
            ),
            (Command::SetResumePositions { positions: vec![] }, &[], "only nodes record where resume keys had reached"),
            (
                Command::SetChannelKeep { owner: "jojo".into(), channel: "c".into(), keep: Some(crate::Keep::Off) },
                &["jojo"],
                "{me} cannot set how long jojo's messages are kept",
            ),
            (
                Command::SetUserToken { name: "jojo".into(), token_hash: HASH.into() },
                &["jojo"],
                "a user may only renew their own token",
            ),
            (
                Command::SetPassword { name: "jojo".into(), password_hash: PASSWORD.into(), invitation: None, at: 2 },
                &["jojo"],
                "{me} cannot change jojo's account",
            ),
            (
                Command::StartSession {
                    actor: Actor::User("jojo".into()),
                    session_hash: HASH.into(),
                    expires_at: 9,
                    at: 2,
                },
                &["jojo"],
                "{me} cannot change jojo's account",
            ),
            (
                Command::StartSession { actor: Actor::Operator, session_hash: HASH.into(), expires_at: 9, at: 2 },
                &[],
                "only the operator signs in as operator",
            ),
            (
                Command::EndSession { session_hash: JOJO_SESSION.into() },
                &["jojo"],
                "a user may only end their own sessions",
            ),
            (
                Command::EndSessionsOf { actor: Actor::User("jojo".into()) },
                &["jojo"],
                "a user may only end their own sessions",
            ),
            (Command::EndSessionsOf { actor: Actor::Operator }, &[], "a user may only end their own sessions"),
            // Unknown sessions: ending one is not an error for anyone.
            (Command::EndSession { session_hash: HASH.into() }, &["jojo", "mark", "ada", "mem", "inv", "dis"], ""),
            (
                Command::AddApiToken { name: "jojo".into(), label: "l".into(), token_hash: HASH.into(), at: 2 },
                &["jojo"],
                "{me} cannot change jojo's account",
            ),
            (
                Command::RemoveApiToken { name: "jojo".into(), label: "l".into() },
                &["jojo"],
                "{me} cannot change jojo's account",
            ),
            (
                Command::AddGroup { name: "h".into(), creator: "jojo".into() },
                &["jojo"],
                "a group's creator must be the user who creates it",
            ),
            (Command::RemoveGroup { name: "g".into() }, &["ada"], "{me} is not an admin of group g"),
            (
                Command::AddGroupAdmin { group: "g".into(), user: "mem".into() },
                &["ada"],
                "{me} is not an admin of group g",
            ),
            (
                Command::InviteMember { group: "g".into(), user: "jojo".into() },
                &["ada"],
                "{me} is not an admin of group g",
            ),
            (
                Command::AcceptMembership { group: "g".into(), user: "inv".into() },
                &["inv"],
                "only inv can accept an invitation to g",
            ),
            (
                Command::RemoveMember { group: "g".into(), user: "mem".into() },
                &["mem", "ada"],
                "only mem or an admin of g can remove that membership",
            ),
            (
                Command::AddShare {
                    from: "jojo".into(),
                    to: Target::User("mark".into()),
                    channel: "c".into(),
                    kind: ShareKind::Shares,
                    with_history: false,
                },
                &["jojo"],
                "{me} cannot offer jojo's data",
            ),
            (
                Command::SetShareFilter {
                    from: "jojo".into(),
                    to: Target::User("mark".into()),
                    channel: "c".into(),
                    filter: None,
                    key: None,
                },
                &["jojo"],
                "{me} cannot filter jojo's data",
            ),
            (
                Command::AcceptShare { from: f.clone(), to: t.clone(), channel: c.clone() },
                &["jojo"],
                "only the recipient jojo (for a group: an admin) can accept this share",
            ),
            (
                Command::AcceptShare { from: gf.clone(), to: gt.clone(), channel: gc.clone() },
                &["ada"],
                "only the recipient group:g (for a group: an admin) can accept this share",
            ),
            (
                Command::RemoveShare { from: f, to: t, channel: c },
                &["mark", "jojo"],
                "only the sender or the recipient can remove a share",
            ),
            (
                Command::RemoveShare { from: gf, to: gt, channel: gc },
                &["mark", "ada"],
                "only the sender or the recipient can remove a share",
            ),
            (Command::AddKey(key("jojo")), &["jojo"], "{me} cannot create keys for jojo"),
            (Command::RemoveKey { ident: "jojo-key".into() }, &["jojo"], "key jojo-key belongs to another user"),
            // Unknown keys get the ordinary "unknown" error when applied.
            (Command::RemoveKey { ident: "nobody-key".into() }, &["jojo", "mark", "ada", "mem", "inv", "dis"], ""),
            (Command::AddKey(key("dis")), &["dis"], "{me} cannot create keys for dis"),
            (
                Command::Batch {
                    commands: vec![Command::AddKey(key("jojo")), Command::RemoveKey { ident: "jojo-key".into() }],
                },
                &["jojo"],
                "{me} cannot create keys for jojo",
            ),
            (
                Command::Batch {
                    commands: vec![Command::AddUser { name: "new".into() }, Command::AddKey(key("jojo"))],
                },
                &[],
                "only the operator manages users",
            ),
        ]
    }

    #[test]
    fn given_every_command_and_actor_then_only_the_rule_s_actors_are_allowed() {
        let g = graph();
        let mut wrong = Vec::new();
        for (command, allowed, refusal) in table() {
            for actor in ACTORS {
                let (who, expected) = match actor {
                    None => (Actor::Operator, Ok(())),
                    Some(me) if allowed.contains(&me) => (Actor::User(me.into()), Ok(())),
                    Some(me) => (Actor::User(me.into()), Err(Forbidden(refusal.replace("{me}", me)))),
                };
                let got = authorize(&who, &command, &g);
                if got != expected {
                    wrong.push(format!("{who:?} {command:?}: got {got:?}, expected {expected:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));
    }

    /// Each command kind's place; no wildcard, so a new kind does not
    /// compile until it is given one (and then a row in the table).
    fn kind(c: &Command) -> usize {
        match c {
            Command::AddUser { .. } => 0,
            Command::RemoveUser { .. } => 1,
            Command::SetUserToken { .. } => 2,
            Command::AddGroup { .. } => 3,
            Command::RemoveGroup { .. } => 4,
            Command::AddGroupAdmin { .. } => 5,
            Command::InviteMember { .. } => 6,
            Command::AcceptMembership { .. } => 7,
            Command::RemoveMember { .. } => 8,
            Command::AddShare { .. } => 9,
            Command::AcceptShare { .. } => 10,
            Command::RemoveShare { .. } => 11,
            Command::AddKey(_) => 12,
            Command::RemoveKey { .. } => 13,
            Command::InviteUser { .. } => 14,
            Command::SetPassword { .. } => 15,
            Command::SetUserDisabled { .. } => 16,
            Command::StartSession { .. } => 17,
            Command::EndSession { .. } => 18,
            Command::AddApiToken { .. } => 19,
            Command::RemoveApiToken { .. } => 20,
            Command::SetHistoryRetention(_) => 21,
            Command::Batch { .. } => 22,
            Command::EndSessionsOf { .. } => 23,
            Command::SetResumePositions { .. } => 24,
            Command::SetChannelKeep { .. } => 25,
            Command::SetShareFilter { .. } => 26,
        }
    }
    const KINDS: usize = 27;

    #[test]
    fn given_every_command_kind_then_the_table_has_a_row_for_it() {
        let covered: std::collections::BTreeSet<usize> = table().iter().map(|(c, ..)| kind(c)).collect();
        let missing: Vec<usize> = (0..KINDS).filter(|k| !covered.contains(k)).collect();
        assert!(missing.is_empty(), "command kinds with no row in the table: {missing:?}");
    }
}
