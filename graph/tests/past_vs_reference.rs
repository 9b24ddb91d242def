//! The archive's rule (docs/sharing.md, "The past") against a brute-force
//! reference: random timelines of graph changes and publishes, then for every
//! archived message and every user, whether they may read it.
//!
//! The reference keeps its own record of when each accepted share and each
//! joined membership appeared, by comparing the graph before and after each
//! change (not the `since` fields the graph keeps), and walks every simple
//! path.

use std::collections::{BTreeMap, BTreeSet};

use hpfriends_graph::{AuthKey, Command, Graph, Position, ShareKind, SharingIndex, Target, UserId};
use proptest::prelude::*;

const USERS: &[&str] = &["u0", "u1", "u2", "u3"];
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

#[derive(Debug, Clone)]
enum Step {
    Change(Command),
    Publish { publisher: String, channel: String },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => user().prop_map(|name| Step::Change(Command::AddUser { name })),
        1 => user().prop_map(|name| Step::Change(Command::RemoveUser { name })),
        1 => (group(), user()).prop_map(|(name, creator)| Step::Change(Command::AddGroup { name, creator })),
        1 => group().prop_map(|name| Step::Change(Command::RemoveGroup { name })),
        3 => (group(), user()).prop_map(|(group, user)| Step::Change(Command::InviteMember { group, user })),
        3 => (group(), user()).prop_map(|(group, user)| Step::Change(Command::AcceptMembership { group, user })),
        1 => (group(), user()).prop_map(|(group, user)| Step::Change(Command::RemoveMember { group, user })),
        5 => (user(), target(), channel(), kind(), prop::bool::weighted(0.3)).prop_map(|(from, to, channel, kind, with_history)| {
            Step::Change(Command::AddShare { from, to, channel, kind, with_history })
        }),
        5 => (user(), target(), channel())
            .prop_map(|(from, to, channel)| Step::Change(Command::AcceptShare { from, to, channel })),
        2 => (user(), target(), channel())
            .prop_map(|(from, to, channel)| Step::Change(Command::RemoveShare { from, to, channel })),
        1 => (user(), user()).prop_map(|(ident, owner)| Step::Change(Command::AddKey(AuthKey {
            ident, secret: "s".into(), owner, publish: vec![], subscribe: vec![], resume: false }))),
        6 => (user(), channel()).prop_map(|(publisher, channel)| Step::Publish { publisher, channel }),
    ]
}

fn timeline() -> impl Strategy<Value = Vec<Step>> {
    // Most timelines start with everyone and both groups, so that the rest has something to act on.
    let mut setup: Vec<Step> = USERS.iter().map(|u| Step::Change(Command::AddUser { name: u.to_string() })).collect();
    setup.extend(
        GROUPS
            .iter()
            .zip(USERS)
            .map(|(g, u)| Step::Change(Command::AddGroup { name: g.to_string(), creator: u.to_string() })),
    );
    (prop::bool::weighted(0.9), prop::collection::vec(step(), 0..100)).prop_map(move |(with_setup, rest)| {
        let mut all = if with_setup { setup.clone() } else { vec![] };
        all.extend(rest);
        all
    })
}

/// An edge as the reference sees it: an accepted share (from, to, channel,
/// relays?, with its history?) or a joined membership (group, user).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Edge {
    Share(String, Target, String, bool, bool),
    Member(String, String),
}

fn edges_of(graph: &Graph) -> BTreeSet<Edge> {
    let shares = graph
        .all_shares()
        .filter(|s| s.accepted)
        .map(|s| Edge::Share(s.from, s.to, s.channel, s.kind == ShareKind::SharesAll, s.with_history));
    let members = graph.groups().flat_map(|(name, g)| {
        g.members.iter().filter(|(_, accepted)| **accepted).map(move |(u, _)| Edge::Member(name.to_string(), u.clone()))
    });
    shares.chain(members).collect()
}

/// Every edge present now, with the position since which it has been present.
struct Reference {
    since: BTreeMap<Edge, Position>,
}

impl Reference {
    fn observe(&mut self, graph: &Graph, position: Position) {
        let now = edges_of(graph);
        self.since.retain(|e, _| now.contains(e));
        for e in now {
            // A share with its history counts as in place from the start.
            let since = if matches!(e, Edge::Share(.., true)) { 0 } else { position };
            self.since.entry(e).or_insert(since);
        }
    }

    /// Whether a simple path from `publisher` to `reader` on `channel` has
    /// every step in place at `at`: first step of any kind, later ones
    /// `shares_all`.
    fn path_at(&self, publisher: &str, reader: &str, channel: &str, at: Position) -> bool {
        let mut visited = vec![publisher.to_string()];
        self.walk(publisher, reader, channel, at, true, &mut visited)
    }

    fn steps_from(&self, from: &str, channel: &str, at: Position, first: bool) -> Vec<String> {
        let mut next = Vec::new();
        for (edge, since) in &self.since {
            let Edge::Share(f, to, c, relays, _) = edge else { continue };
            if f != from || c != channel || *since > at || (!first && !relays) {
                continue;
            }
            match to {
                Target::User(u) => next.push(u.clone()),
                Target::Group(g) => {
                    for (e, joined) in &self.since {
                        if let Edge::Member(group, u) = e {
                            if group == g && *joined <= at {
                                next.push(u.clone());
                            }
                        }
                    }
                }
            }
        }
        next
    }

    fn walk(
        &self,
        at_user: &str,
        reader: &str,
        channel: &str,
        at: Position,
        first: bool,
        visited: &mut Vec<String>,
    ) -> bool {
        for next in self.steps_from(at_user, channel, at, first) {
            if next == reader {
                return true;
            }
            if visited.contains(&next) {
                continue;
            }
            visited.push(next.clone());
            let found = self.walk(&next, reader, channel, at, false, visited);
            visited.pop();
            if found {
                return true;
            }
        }
        false
    }
}

struct Archived {
    publisher: String,
    owner: UserId,
    channel: String,
    position: Position,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn given_changes_and_publishes_then_the_past_is_read_as_the_reference_says(steps in timeline()) {
        let mut graph = Graph::new();
        let mut index = SharingIndex::build(&graph);
        let mut reference = Reference { since: BTreeMap::new() };
        let mut archive = Vec::new();
        let mut position: Position = 0;
        for step in &steps {
            match step {
                Step::Change(cmd) => {
                    position += 1;
                    graph.set_position(position);
                    if let Ok(applied) = graph.apply(cmd) {
                        index.update(&graph, &applied);
                    }
                    reference.observe(&graph, position);
                }
                Step::Publish { publisher, channel } => {
                    if let Some(owner) = graph.user_id(publisher) {
                        archive.push(Archived { publisher: publisher.clone(), owner, channel: channel.clone(), position });
                    }
                }
            }
        }
        for reader in USERS {
            for channel in CHANNELS {
                let past = graph.past_readers(reader, channel);
                prop_assert_eq!(past.is_some(), graph.has_user(reader));
                let Some(past) = past else { continue };
                // The publishers listed are exactly those the reader may read now.
                let listed: BTreeSet<UserId> = past.publishers().keys().copied().collect();
                let reader_id = graph.user_id(reader).unwrap();
                let now: BTreeSet<UserId> = USERS.iter().filter_map(|p| graph.user_id(p))
                    .filter(|p| *p != reader_id && index.may_read(*p, reader_id, channel)).collect();
                prop_assert_eq!(listed, now, "publishers of {} on {}", reader, channel);
                for m in archive.iter().filter(|m| m.channel == *channel) {
                    // The publisher is still the same person (a removed user's
                    // messages are nobody's to read, a new holder of the name's included).
                    let same_person = graph.user_id(&m.publisher) == Some(m.owner);
                    let want = same_person
                        && (m.publisher == *reader || reference.path_at(&m.publisher, reader, channel, m.position));
                    prop_assert_eq!(past.may_read(m.owner, m.position), want,
                        "{}'s message at {} on {} read by {}", m.publisher, m.position, channel, reader);
                }
            }
        }
    }
}

/// A graph whose changes apply at positions 1, 2, 3, …, as the log's entries do.
#[derive(Default)]
struct Timeline {
    graph: Graph,
    at: Position,
}

impl Timeline {
    /// Applies `c` at the next position; returns it.
    fn apply(&mut self, c: Command) -> Position {
        self.at += 1;
        self.graph.set_position(self.at);
        self.graph.apply(&c).unwrap();
        self.at
    }
}

impl std::ops::Deref for Timeline {
    type Target = Graph;
    fn deref(&self) -> &Graph {
        &self.graph
    }
}

#[test]
fn given_a_share_accepted_after_a_message_then_only_later_messages_are_read() {
    let mut g = Timeline::default();
    for name in ["jojo", "mark", "alice"] {
        g.apply(Command::AddUser { name: name.into() });
    }
    let share = |from: &str, to: &str, kind| Command::AddShare {
        from: from.into(),
        to: Target::User(to.into()),
        channel: "c".into(),
        kind,
        with_history: false,
    };
    let accept = |from: &str, to: &str| Command::AcceptShare {
        from: from.into(),
        to: Target::User(to.into()),
        channel: "c".into(),
    };
    g.apply(share("jojo", "mark", ShareKind::Shares));
    let before = g.apply(share("mark", "alice", ShareKind::SharesAll));
    let accepted = g.apply(accept("jojo", "mark"));
    let relayed = g.apply(accept("mark", "alice"));
    let jojo = g.user_id("jojo").unwrap();
    let mark = g.past_readers("mark", "c").unwrap();
    assert!(!mark.may_read(jojo, before), "published before the share was accepted");
    assert!(mark.may_read(jojo, accepted));
    let alice = g.past_readers("alice", "c").unwrap();
    assert!(!alice.may_read(jojo, accepted), "the relay was accepted later");
    assert!(alice.may_read(jojo, relayed));
    assert!(alice.may_read(g.user_id("alice").unwrap(), 0), "one's own messages, always");
    let removed =
        g.apply(Command::RemoveShare { from: "jojo".into(), to: Target::User("mark".into()), channel: "c".into() });
    assert!(!g.past_readers("mark", "c").unwrap().may_read(jojo, removed - 1), "a removed share closes the past too");
}

#[test]
fn given_a_member_who_joined_after_a_message_then_the_group_share_does_not_open_it() {
    let mut g = Timeline::default();
    for name in ["jojo", "mark", "bob"] {
        g.apply(Command::AddUser { name: name.into() });
    }
    g.apply(Command::AddGroup { name: "cert".into(), creator: "mark".into() });
    let to = Target::Group("cert".into());
    g.apply(Command::AddShare {
        from: "jojo".into(),
        to: to.clone(),
        channel: "c".into(),
        kind: ShareKind::Shares,
        with_history: false,
    });
    let shared = g.apply(Command::AcceptShare { from: "jojo".into(), to, channel: "c".into() });
    g.apply(Command::InviteMember { group: "cert".into(), user: "bob".into() });
    let joined = g.apply(Command::AcceptMembership { group: "cert".into(), user: "bob".into() });
    let jojo = g.user_id("jojo").unwrap();
    assert!(g.past_readers("mark", "c").unwrap().may_read(jojo, shared), "a member since before");
    let bob = g.past_readers("bob", "c").unwrap();
    assert!(!bob.may_read(jojo, joined - 1), "published before bob joined");
    assert!(bob.may_read(jojo, joined));
}
