//! After random command sequences, the incrementally maintained index must
//! agree with a brute-force reference for every (publisher, reader, channel),
//! and a rejected command must leave the graph exactly as it was.

use std::collections::BTreeSet;

use hpfriends_graph::{
    explain, explain_all, publishers_reaching, readers_through, AuthKey, Command, Explanation, Graph, ShareKind,
    SharingIndex, Target,
};
use proptest::prelude::*;

const USERS: &[&str] = &["u0", "u1", "u2", "u3", "u4", "u5"];
const GROUPS: &[&str] = &["g0", "g1"];
const CHANNELS: &[&str] = &["c0", "c1"];

fn user() -> impl Strategy<Value = String> {
    prop::sample::select(USERS).prop_map(str::to_string)
}
fn group() -> impl Strategy<Value = String> {
    prop::sample::select(GROUPS).prop_map(str::to_string)
}
fn channel() -> impl Strategy<Value = String> {
    prop::sample::select(CHANNELS).prop_map(str::to_string)
}
fn target() -> impl Strategy<Value = Target> {
    prop_oneof![3 => user().prop_map(Target::User), 1 => group().prop_map(Target::Group)]
}
fn kind() -> impl Strategy<Value = ShareKind> {
    prop_oneof![Just(ShareKind::Shares), Just(ShareKind::SharesAll)]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => user().prop_map(|name| Command::AddUser { name }),
        1 => user().prop_map(|name| Command::RemoveUser { name }),
        1 => (group(), user()).prop_map(|(name, creator)| Command::AddGroup { name, creator }),
        1 => group().prop_map(|name| Command::RemoveGroup { name }),
        2 => (group(), user()).prop_map(|(group, user)| Command::InviteMember { group, user }),
        2 => (group(), user()).prop_map(|(group, user)| Command::AcceptMembership { group, user }),
        1 => (group(), user()).prop_map(|(group, user)| Command::RemoveMember { group, user }),
        5 => (user(), target(), channel(), kind())
            .prop_map(|(from, to, channel, kind)| Command::AddShare { from, to, channel, kind, with_history: false }),
        5 => (user(), target(), channel()).prop_map(|(from, to, channel)| Command::AcceptShare { from, to, channel }),
        2 => (user(), target(), channel()).prop_map(|(from, to, channel)| Command::RemoveShare { from, to, channel }),
        1 => (user(), user()).prop_map(|(ident, owner)| Command::AddKey(AuthKey {
            ident, secret: "s".into(), owner, publish: vec![], subscribe: vec![], resume: false })),
    ]
}

fn commands() -> impl Strategy<Value = Vec<Command>> {
    // Most sequences start by creating everyone, so that the rest has something to act on.
    let setup: Vec<Command> = USERS.iter().map(|u| Command::AddUser { name: u.to_string() }).collect();
    (any::<bool>(), prop::collection::vec(command(), 0..60)).prop_map(move |(with_setup, rest)| {
        let mut all = if with_setup { setup.clone() } else { vec![] };
        all.extend(rest);
        all
    })
}

/// Reference readers: a fixpoint over the plain list of accepted shares,
/// written without the index's data structures.
fn reference_readers(graph: &Graph, publisher: &str, channel: &str) -> BTreeSet<String> {
    let edges: Vec<_> = graph.all_shares().filter(|s| s.accepted && s.channel == channel).collect();
    let members = |to: &Target| -> Vec<String> {
        match to {
            Target::User(u) => vec![u.clone()],
            Target::Group(g) => graph
                .group(g)
                .map(|g| g.members.iter().filter(|(_, a)| **a).map(|(u, _)| u.clone()).collect())
                .unwrap_or_default(),
        }
    };
    let mut readers: BTreeSet<String> = BTreeSet::new();
    for e in edges.iter().filter(|e| e.from == publisher) {
        readers.extend(members(&e.to));
    }
    loop {
        let before = readers.len();
        let relayed: Vec<String> = edges
            .iter()
            .filter(|e| e.kind == ShareKind::SharesAll && readers.contains(&e.from))
            .flat_map(|e| members(&e.to))
            .collect();
        readers.extend(relayed);
        if readers.len() == before {
            return readers;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn given_random_commands_then_index_matches_reference(cmds in commands()) {
        let mut graph = Graph::new();
        let mut index = SharingIndex::build(&graph);
        for cmd in &cmds {
            let before = graph.clone();
            match graph.apply(cmd) {
                Ok(applied) => index.update(&graph, &applied),
                Err(_) => prop_assert_eq!(&graph, &before, "a rejected command changed the graph"),
            }
        }
        for c in CHANNELS {
            for p in USERS {
                let want = reference_readers(&graph, p, c);
                let got: BTreeSet<String> = index.reader_names(&graph, p, c).into_iter().collect();
                prop_assert_eq!(&got, &want, "readers({}, {})", p, c);
                for v in USERS {
                    let allowed = p == v || want.contains(*v);
                    let both_exist = graph.has_user(p) && graph.has_user(v);
                    prop_assert_eq!(index.may_read_by_name(&graph, p, v, c), allowed && both_exist);
                    prop_assert_eq!(!matches!(explain(&graph, p, v, c), Explanation::None), allowed,
                        "explain({}, {}, {})", p, v, c);
                }
            }
        }
        // The page queries: every reader's path from one search, and walked
        // backwards from each reader, the same pairs as the reference.
        for c in CHANNELS {
            for p in USERS {
                let all: BTreeSet<String> = explain_all(&graph, p, c).into_keys().collect();
                let want: BTreeSet<String> = reference_readers(&graph, p, c).into_iter().filter(|r| r != p).collect();
                prop_assert_eq!(all, want, "explain_all({}, {})", p, c);
            }
        }
        for v in USERS {
            // A user's shares: those they send, and those to them or to a
            // group they joined or administer.
            let mine: Vec<_> = graph.all_shares().filter(|s| s.from == *v || match &s.to {
                Target::User(t) => t == v,
                Target::Group(g) => graph.group(g).is_some_and(|g| g.members.get(*v) == Some(&true) || g.admins.contains(*v)),
            }).collect();
            prop_assert_eq!(graph.shares_of(v), mine, "shares_of({})", v);
            let got = publishers_reaching(&graph, v);
            let mut want = BTreeSet::new();
            for c in CHANNELS {
                for p in USERS.iter().filter(|p| *p != v) {
                    if reference_readers(&graph, p, c).contains(*v) {
                        want.insert((c.to_string(), p.to_string()));
                    }
                }
            }
            prop_assert_eq!(got, want, "publishers_reaching({})", v);
        }
        // A fresh build agrees with the incrementally kept index.
        let fresh = SharingIndex::build(&graph);
        prop_assert_eq!(fresh.entries(), index.entries());
    }

    #[test]
    fn given_a_share_previewed_then_accepting_it_adds_exactly_the_preview(
        cmds in commands(), from in user(), to in target(), c in channel(), kind in kind(),
    ) {
        let mut graph = Graph::new();
        for cmd in &cmds { let _ = graph.apply(cmd); }
        // Make the share possible: its ends exist, it does not yet.
        let to = if to == Target::User(from.clone()) { Target::User(format!("{from}-friend")) } else { to };
        for name in [Some(&from), match &to { Target::User(u) => Some(u), Target::Group(_) => None }].into_iter().flatten() {
            if !graph.has_user(name) { graph.apply(&Command::AddUser { name: name.clone() }).unwrap(); }
        }
        if let Target::Group(g) = &to {
            if graph.group(g).is_none() { graph.apply(&Command::AddGroup { name: g.clone(), creator: from.clone() }).unwrap(); }
        }
        if graph.share(&from, &to, &c).is_some() {
            graph.apply(&Command::RemoveShare { from: from.clone(), to: to.clone(), channel: c.clone() }).unwrap();
        }
        let preview = readers_through(&graph, &from, &to, &c);
        let before = reference_readers(&graph, &from, &c);
        let offer = Command::AddShare { from: from.clone(), to: to.clone(), channel: c.clone(), kind, with_history: false };
        let accept = Command::AcceptShare { from: from.clone(), to: to.clone(), channel: c.clone() };
        graph.apply(&Command::Batch { commands: vec![offer, accept] }).unwrap();
        let after = reference_readers(&graph, &from, &c);
        let added: BTreeSet<String> = after.difference(&before).filter(|u| **u != from).cloned().collect();
        let new_in_preview: BTreeSet<String> = preview.difference(&before).filter(|u| **u != from).cloned().collect();
        prop_assert_eq!(added, new_in_preview);
    }

    #[test]
    fn given_batch_with_a_bad_step_then_nothing_changes(cmds in commands()) {
        let mut graph = Graph::new();
        for cmd in &cmds { let _ = graph.apply(cmd); }
        let before = graph.clone();
        let batch = Command::Batch { commands: vec![
            Command::AddUser { name: "fresh".into() },
            Command::AddShare { from: "fresh".into(), to: Target::User("nobody".into()),
                channel: "c0".into(), kind: ShareKind::Shares, with_history: false },
        ]};
        prop_assert!(graph.apply(&batch).is_err());
        prop_assert_eq!(graph, before);
    }
}

#[test]
fn given_graph_serialized_when_restored_then_equal_and_usable() {
    let mut g = Graph::new();
    for c in [
        Command::AddUser { name: "a".into() },
        Command::AddUser { name: "b".into() },
        Command::AddShare {
            from: "a".into(),
            to: Target::User("b".into()),
            channel: "c".into(),
            kind: ShareKind::Shares,
            with_history: false,
        },
        Command::AcceptShare { from: "a".into(), to: Target::User("b".into()), channel: "c".into() },
    ] {
        g.apply(&c).unwrap();
    }
    let json = serde_json::to_string(&g).unwrap();
    let mut back: Graph = serde_json::from_str::<Graph>(&json).unwrap().restore();
    assert_eq!(back, g);
    // Derived reverse edges were rebuilt: removing b removes the share into b.
    back.apply(&Command::RemoveUser { name: "b".into() }).unwrap();
    assert_eq!(back.share_count(), 0);
}

const HASH: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// Every kind of command, batches of a few included.
fn any_command() -> impl Strategy<Value = Command> {
    let more = prop_oneof![
        1 => (group(), user()).prop_map(|(group, user)| Command::AddGroupAdmin { group, user }),
        1 => user().prop_map(|ident| Command::RemoveKey { ident }),
        1 => user().prop_map(|name| Command::SetUserToken { name, token_hash: HASH.into() }),
        1 => prop_oneof![user(), group()].prop_map(|name| Command::InviteUser { name, token_hash: HASH.into(), expires_at: 9 }),
        1 => user().prop_map(|name| Command::SetUserDisabled { name, disabled: true }),
        1 => user().prop_map(|name| Command::StartSession {
            actor: hpfriends_graph::Actor::User(name), session_hash: HASH.into(), expires_at: 9, at: 1 }),
        1 => user().prop_map(|name| Command::EndSessionsOf { actor: hpfriends_graph::Actor::User(name) }),
        1 => user().prop_map(|name| Command::RemoveApiToken { name, label: "l".into() }),
        1 => (group(), user()).prop_map(|(name, creator)| Command::AddGroup { name: format!("{name}x"), creator }),
        1 => (user(), user()).prop_map(|(name, creator)| Command::AddGroup { name, creator }),
    ];
    let single = prop_oneof![3 => command(), 1 => more];
    prop_oneof![4 => single.clone(), 1 => prop::collection::vec(single, 1..4).prop_map(|commands| Command::Batch { commands })]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// A dry run on the slice of what a command names refuses exactly what
    /// applying it to the whole graph refuses, with the same error; and a
    /// batch applied in place (after its dry run) leaves the graph as
    /// applying it on a copy does, refused or not.
    #[test]
    fn given_random_commands_then_a_dry_run_answers_as_apply_does(
        with_setup in any::<bool>(),
        cmds in prop::collection::vec(any_command(), 0..50),
    ) {
        let mut graph = Graph::new();
        let setup = USERS.iter().map(|u| Command::AddUser { name: u.to_string() });
        for cmd in setup.filter(|_| with_setup).chain(cmds) {
            let mut on_copy = graph.clone();
            let defined = on_copy.apply_on_copy(&cmd);
            prop_assert_eq!(graph.dry_run(&cmd), defined.clone().map(drop), "{:?}", cmd);
            let in_place = graph.apply(&cmd);
            prop_assert_eq!(in_place, defined, "{:?}", cmd);
            prop_assert_eq!(&graph, &on_copy, "{:?}", cmd);
        }
    }
}
