//! Graphs for tests and benchmarks. `Fixture` writes out a small graph a
//! test names (users, groups, shares, keys); the seeded generator makes
//! large, realistic ones: share counts per user and per channel follow power
//! laws, groups have 2–500 members, a tenth of the shares relay
//! (`shares_all`). Same seed, same graph, on any machine.

use crate::model::{AuthKey, Graph, ShareKind, Target};
use crate::Command;

/// A small graph written out in a test:
/// `Fixture::new().users(&["jojo", "mark"]).share("jojo", "mark", "c").graph()`.
#[derive(Debug, Default, Clone)]
pub struct Fixture {
    commands: Vec<Command>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::default()
    }

    pub fn users(mut self, names: &[&str]) -> Fixture {
        self.commands.extend(names.iter().map(|n| Command::AddUser { name: n.to_string() }));
        self
    }

    /// `from` offers `channel` to `to` (a user, or `group:NAME`); not accepted yet.
    pub fn offer(mut self, from: &str, to: &str, channel: &str) -> Fixture {
        let (from, to, channel) = (from.to_string(), Target::parse(to), channel.to_string());
        self.commands.push(Command::AddShare { from, to, channel, kind: ShareKind::Shares, with_history: false });
        self
    }

    /// `from` shares `channel` with `to` (a user, or `group:NAME`), accepted.
    pub fn share(self, from: &str, to: &str, channel: &str) -> Fixture {
        self.offer(from, to, channel).command(Command::AcceptShare {
            from: from.into(),
            to: Target::parse(to),
            channel: channel.into(),
        })
    }

    /// A group made by `admin`, with `members` who accepted.
    pub fn group(mut self, name: &str, admin: &str, members: &[&str]) -> Fixture {
        self.commands.push(Command::AddGroup { name: name.into(), creator: admin.into() });
        for m in members {
            self = self.invite(name, m);
            self.commands.push(Command::AcceptMembership { group: name.into(), user: m.to_string() });
        }
        self
    }

    /// `user` is invited to `group` and has not answered.
    pub fn invite(mut self, group: &str, user: &str) -> Fixture {
        self.commands.push(Command::InviteMember { group: group.into(), user: user.into() });
        self
    }

    pub fn key(self, ident: &str, owner: &str, publish: &[&str], subscribe: &[&str]) -> Fixture {
        let names = |list: &[&str]| list.iter().map(|c| c.to_string()).collect();
        self.command(Command::AddKey(AuthKey {
            ident: ident.into(),
            secret: format!("{ident}-secret"),
            owner: owner.into(),
            publish: names(publish),
            subscribe: names(subscribe),
            resume: false,
        }))
    }

    pub fn command(mut self, command: Command) -> Fixture {
        self.commands.push(command);
        self
    }

    /// The graph with every command applied, in order.
    pub fn graph(self) -> Graph {
        let mut g = Graph::new();
        for c in &self.commands {
            if let Err(e) = g.apply(c) {
                panic!("the fixture's own command {c:?} was refused: {e}");
            }
        }
        g
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub users: usize,
    pub shares: usize,
    pub channels: usize,
    pub groups: usize,
    pub max_group_size: usize,
    /// Fraction of shares that are `shares_all`.
    pub relay_fraction: f64,
    /// Fraction of shares addressed to a group rather than a user.
    pub group_fraction: f64,
    pub seed: u64,
}

impl Shape {
    /// The figure named in the issue: 100k users, 1M shares over 1,000
    /// channels, 1,000 groups of 2–500 members, 10% `shares_all`.
    pub fn large() -> Shape {
        Shape {
            users: 100_000,
            shares: 1_000_000,
            channels: 1_000,
            groups: 1_000,
            max_group_size: 500,
            relay_fraction: 0.10,
            group_fraction: 0.05,
            seed: 0x4850_4652_4945_4e44,
        }
    }

    pub fn small() -> Shape {
        Shape { users: 1_000, shares: 10_000, channels: 50, groups: 20, max_group_size: 50, ..Shape::large() }
    }
}

/// splitmix64: tiny, fast, and good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Power-law index in [0, n): small indices are much more likely.
    pub fn skewed(&mut self, n: usize, exponent: f64) -> usize {
        ((self.unit().powf(exponent) * n as f64) as usize).min(n - 1)
    }
}

pub fn user_name(i: usize) -> String {
    format!("u{i}")
}
pub fn channel_name(i: usize) -> String {
    format!("ch{i}")
}
pub fn group_name(i: usize) -> String {
    format!("g{i}")
}

/// The commands that build the graph, in an order that applies.
pub fn commands(shape: &Shape) -> Vec<Command> {
    let mut rng = Rng::new(shape.seed);
    let mut cmds = Vec::with_capacity(shape.users + 2 * shape.shares);
    for u in 0..shape.users {
        cmds.push(Command::AddUser { name: user_name(u) });
        cmds.push(Command::AddKey(AuthKey {
            ident: format!("k{u}"),
            secret: format!("secret{u}"),
            owner: user_name(u),
            publish: vec![],
            subscribe: vec![],
            resume: false,
        }));
    }
    for g in 0..shape.groups {
        let admin = user_name(rng.below(shape.users));
        cmds.push(Command::AddGroup { name: group_name(g), creator: admin.clone() });
        let size = 2 + rng.skewed(shape.max_group_size - 1, 2.0);
        for _ in 1..size {
            let m = user_name(rng.below(shape.users));
            if m == admin {
                continue;
            }
            cmds.push(Command::InviteMember { group: group_name(g), user: m.clone() });
            cmds.push(Command::AcceptMembership { group: group_name(g), user: m });
        }
    }
    for _ in 0..shape.shares {
        let from = user_name(rng.skewed(shape.users, 2.0));
        let channel = channel_name(rng.skewed(shape.channels, 2.0));
        let to = if rng.unit() < shape.group_fraction {
            Target::Group(group_name(rng.skewed(shape.groups, 1.5)))
        } else {
            Target::User(user_name(rng.below(shape.users)))
        };
        let kind = if rng.unit() < shape.relay_fraction { ShareKind::SharesAll } else { ShareKind::Shares };
        cmds.push(Command::AddShare {
            from: from.clone(),
            to: to.clone(),
            channel: channel.clone(),
            kind,
            with_history: false,
        });
        cmds.push(Command::AcceptShare { from, to, channel });
    }
    cmds
}

/// Builds the graph, skipping generated duplicates (and self-shares).
pub fn graph(shape: &Shape) -> Graph {
    applied(shape).0
}

/// The graph and the commands that built it, without the generated
/// duplicates (and self-shares) it refused: a log a node can replay.
pub fn applied(shape: &Shape) -> (Graph, Vec<Command>) {
    let mut g = Graph::new();
    let mut kept = Vec::new();
    for c in commands(shape) {
        if g.apply(&c).is_ok() {
            kept.push(c);
        }
    }
    (g, kept)
}
