//! Filters on paths (docs/sharing.md, "Filters"): after random command
//! sequences, what each reader receives of each message must equal a
//! brute-force reference that lists every path, orders them by the stated
//! rule and delivers the first that lets the message through.

use std::collections::BTreeSet;

use hpfriends_graph::filter::{routes_within, CHAINS_PER_USER};
use hpfriends_graph::{Command, Filter, Graph, Message, Outcome, ShareKind, SharingIndex, Target};
use proptest::prelude::*;

const USERS: &[&str] = &["u0", "u1", "u2", "u3", "u4"];
const CHANNEL: &str = "c";
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Filters that pass, drop, fail and rewrite differently on `MESSAGES`.
fn filters() -> Vec<Filter> {
    let f = |w: Option<&str>, r: &[&str], p: &[&str]| Filter {
        condition: w.map(str::to_string),
        redact: r.iter().map(|s| s.to_string()).collect(),
        pseudonymize: p.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        f(Some("payload.a == 1"), &[], &[]),
        f(Some("!has(payload.b)"), &[], &[]),
        f(None, &["/a"], &[]),
        f(None, &["/b"], &["/c"]),
        f(Some("payload.c != 'x'"), &["/b"], &[]),
        f(None, &[], &["/a"]),
    ]
}

const MESSAGES: &[&str] = &[r#"{"a":1,"b":2,"c":"x"}"#, r#"{"a":2,"c":"y"}"#, r#"{"b":3}"#, "not json"];

fn user() -> impl Strategy<Value = String> {
    prop::sample::select(USERS).prop_map(str::to_string)
}
fn target() -> impl Strategy<Value = Target> {
    prop_oneof![4 => user().prop_map(Target::User), 1 => Just(Target::Group("g".into()))]
}

/// A share, accepted or not, with a filter or not (index 6 and up: none).
fn share() -> impl Strategy<Value = Vec<Command>> {
    let kind = prop_oneof![1 => Just(ShareKind::Shares), 2 => Just(ShareKind::SharesAll)];
    (user(), target(), kind, prop::bool::weighted(0.8), 0..9usize).prop_map(|(from, to, kind, accepted, f)| {
        let mut out = vec![Command::AddShare {
            from: from.clone(),
            to: to.clone(),
            channel: CHANNEL.into(),
            kind,
            with_history: false,
        }];
        if accepted {
            out.push(Command::AcceptShare { from: from.clone(), to: to.clone(), channel: CHANNEL.into() });
        }
        out.push(filter_command(from, to, f));
        out
    })
}

fn filter_command(from: String, to: Target, i: usize) -> Command {
    Command::SetShareFilter {
        from,
        to,
        channel: CHANNEL.into(),
        filter: filters().get(i).cloned(),
        key: Some(KEY.into()),
    }
}

/// A graph built from shares and memberships, then changed a few times
/// (so the incremental index is checked against a rebuild).
fn commands() -> impl Strategy<Value = Vec<Command>> {
    let join = user().prop_map(|user| {
        vec![
            Command::InviteMember { group: "g".into(), user: user.clone() },
            Command::AcceptMembership { group: "g".into(), user },
        ]
    });
    let change = prop_oneof![
        (user(), target(), 0..9usize).prop_map(|(from, to, i)| filter_command(from, to, i)),
        (user(), target()).prop_map(|(from, to)| Command::RemoveShare { from, to, channel: CHANNEL.into() }),
        user().prop_map(|user| Command::RemoveMember { group: "g".into(), user }),
    ];
    (prop::collection::vec(join, 0..3), prop::collection::vec(share(), 0..12), prop::collection::vec(change, 0..4))
        .prop_map(|(joins, shares, changes)| {
            joins.into_iter().flatten().chain(shares.into_iter().flatten()).chain(changes).collect()
        })
}

fn graph_from(commands: &[Command]) -> (Graph, SharingIndex) {
    let mut graph = Graph::new();
    let mut index = SharingIndex::default();
    let setup = USERS
        .iter()
        .map(|u| Command::AddUser { name: u.to_string() })
        .chain([Command::AddGroup { name: "g".into(), creator: "u4".into() }]);
    for c in setup.chain(commands.iter().cloned()) {
        if let Ok(applied) = graph.apply(&c) {
            index.update(&graph, &applied);
        }
    }
    (graph, index)
}

/// One filtered share of a path: its filter and sender.
type RefStep = (Filter, String, String);

/// Every path from `publisher` to `reader` (a first step along any accepted
/// share, later ones along `shares_all`, no user twice), as its filtered steps.
fn paths(graph: &Graph, publisher: &str, reader: &str) -> Vec<Vec<RefStep>> {
    fn walk(
        graph: &Graph,
        at: &str,
        visited: &mut Vec<String>,
        steps: &mut Vec<RefStep>,
        reader: &str,
        out: &mut Vec<Vec<RefStep>>,
    ) {
        let first = visited.len() == 1;
        for (to, share) in graph.out_shares(at, CHANNEL).into_iter().flatten() {
            if !share.accepted || (!first && share.kind != ShareKind::SharesAll) {
                continue;
            }
            let recipients: Vec<String> = graph.recipients(to).map(str::to_string).collect();
            for v in recipients {
                if visited.contains(&v) {
                    continue;
                }
                let pushed =
                    share.filter.as_ref().map(|f| steps.push((f.spec().clone(), at.to_string(), to.to_string())));
                if v == reader {
                    out.push(steps.clone());
                }
                visited.push(v.clone());
                walk(graph, &v, visited, steps, reader, out);
                visited.pop();
                if pushed.is_some() {
                    steps.pop();
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(graph, publisher, &mut vec![publisher.to_string()], &mut Vec::new(), reader, &mut out);
    out
}

/// The stated order: fields removed, then pseudonymized, then conditions,
/// then filtered steps, then the shares' (sender, recipient) names.
fn rank(steps: &[RefStep]) -> (usize, usize, usize, usize, Vec<(String, String)>) {
    let removed = steps.iter().map(|s| s.0.redact.len()).sum();
    let pseudonymized = steps.iter().map(|s| s.0.pseudonymize.len()).sum();
    let conditions = steps.iter().filter(|s| s.0.condition.is_some()).count();
    (removed, pseudonymized, conditions, steps.len(), steps.iter().map(|s| (s.1.clone(), s.2.clone())).collect())
}

/// What the reference delivers: `None` for nothing.
fn reference(graph: &Graph, publisher: &str, reader: &str, payload: &str) -> Option<Vec<u8>> {
    let mut all = paths(graph, publisher, reader);
    all.sort_by_key(|p| rank(p));
    let key = hex(KEY);
    all.iter().find_map(|steps| {
        let mut current = payload.as_bytes().to_vec();
        for (filter, ..) in steps {
            let msg = Message { channel: CHANNEL, ident: "i", payload: &current };
            match filter.compile().unwrap().apply(msg, &key) {
                Outcome::Pass(Some(v)) => current = v,
                Outcome::Pass(None) => {}
                _ => return None,
            }
        }
        Some(current)
    })
}

/// Distinct chains of filters reaching `reader`: the bound binds above `CHAINS_PER_USER`.
fn chains(graph: &Graph, publisher: &str, reader: &str) -> usize {
    let names: BTreeSet<_> = paths(graph, publisher, reader).iter().map(|p| rank(p).4).collect();
    names.len()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn delivered(
    readers: Option<&hpfriends_graph::Readers>,
    reader: u32,
    routes: Option<&hpfriends_graph::Routes>,
    payload: &str,
) -> Option<Vec<u8>> {
    if !readers.is_some_and(|r| r.contains(reader)) {
        return None;
    }
    let msg = Message { channel: CHANNEL, ident: "i", payload: payload.as_bytes() };
    match routes {
        None => Some(payload.as_bytes().to_vec()),
        Some(r) => r.version(msg).map(|v| v.unwrap_or_else(|| payload.as_bytes().to_vec())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn given_random_filtered_graphs_then_each_reader_gets_the_version_of_the_first_path_that_passes(
        commands in commands()
    ) {
        let (graph, index) = graph_from(&commands);
        let fresh = SharingIndex::build(&graph);
        for p in USERS {
            let pid = graph.user_id(p).unwrap();
            prop_assert_eq!(index.readers(pid, CHANNEL), fresh.readers(pid, CHANNEL), "incremental against a rebuild");
            let unbounded = routes_within(&graph, CHANNEL, pid, usize::MAX);
            let readers = index.readers(pid, CHANNEL);
            for v in USERS.iter().filter(|v| *v != p) {
                let vid = graph.user_id(v).unwrap();
                let routes = unbounded.iter().find(|(r, _)| *r == vid).map(|(_, r)| r);
                let bound_holds = USERS.iter().all(|u| chains(&graph, p, u) <= CHAINS_PER_USER);
                for m in MESSAGES {
                    let want = reference(&graph, p, v, m);
                    prop_assert_eq!(&delivered(readers, vid, routes, m), &want, "{} -> {} of {}", p, v, m);
                    if bound_holds {
                        let indexed = readers.and_then(|r| r.routes(vid));
                        prop_assert_eq!(&delivered(readers, vid, indexed, m), &want, "index: {} -> {} of {}", p, v, m);
                    }
                }
            }
        }
    }
}
