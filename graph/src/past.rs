//! Who may read the past: the archive's rule (docs/sharing.md, "The past").
//!
//! An archived message of P on channel C, published when P's node had applied
//! the log up to position t, reaches V exactly when V is P, or when a path
//! that lets V read P's messages now (the delivery rule) was already in place
//! at t: every share on it accepted, and every group membership it passes
//! through joined, at a position ≤ t. A share accepted today does not open
//! last week, unless it was offered `with_history`; a share removed and
//! offered again opens from its new acceptance.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::model::{Graph, Position, ShareKind, Target, UserId};

/// For one reader and channel: from which position on each publisher's
/// archived messages may be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastReaders {
    reader: UserId,
    from: HashMap<UserId, Position>,
}

impl PastReaders {
    /// Whether a message `publisher` sent at `position` may be read.
    pub fn may_read(&self, publisher: UserId, position: Position) -> bool {
        publisher == self.reader || self.from.get(&publisher).is_some_and(|p| *p <= position)
    }

    /// The earliest readable position of each publisher (the reader's own
    /// messages are always readable and not listed).
    pub fn publishers(&self) -> &HashMap<UserId, Position> {
        &self.from
    }
}

impl Graph {
    /// The archive's rule for `reader` on `channel`, or `None` for no such user.
    ///
    /// A path's position is the latest position of its steps; each publisher's
    /// is the earliest over the paths that reach the reader now. Found by one
    /// search backwards from the reader (Dijkstra with `max` for `+`): relayers
    /// along `shares_all` steps, publishers along a first step of any kind.
    pub fn past_readers(&self, reader: &str, channel: &str) -> Option<PastReaders> {
        self.past_readers_through(reader, channel, true)
    }

    /// As `past_readers`, along shares without a filter only: what the
    /// reader may read of the past unchanged (docs/sharing.md, "Filters").
    pub fn past_readers_unfiltered(&self, reader: &str, channel: &str) -> Option<PastReaders> {
        self.past_readers_through(reader, channel, false)
    }

    fn past_readers_through(&self, reader: &str, channel: &str, filtered: bool) -> Option<PastReaders> {
        let reader_id = self.user_id(reader)?;
        // Each user's accepted memberships, with when they joined.
        let mut memberships: HashMap<&str, Vec<(&str, Position)>> = HashMap::new();
        for (name, group) in self.groups() {
            for member in group.accepted_members() {
                let joined = group.joined.get(member).copied().unwrap_or(0);
                memberships.entry(member).or_default().push((name, joined));
            }
        }
        let mut relay: HashMap<&str, Position> = HashMap::from([(reader, 0)]);
        let mut from: HashMap<UserId, Position> = HashMap::new();
        let mut queue = BinaryHeap::from([Reverse((0, reader))]);
        while let Some(Reverse((cost, user))) = queue.pop() {
            if relay.get(user).is_some_and(|c| *c < cost) {
                continue;
            }
            let direct = std::iter::once((Target::User(user.to_string()), 0));
            let groups = memberships.get(user).into_iter().flatten().map(|(g, j)| (Target::Group(g.to_string()), *j));
            for (to, joined) in direct.chain(groups) {
                for sender in self.senders_to(&to, channel) {
                    let taken = |s: &&crate::Share| s.accepted && (filtered || s.filter.is_none());
                    let Some(share) = self.share(sender, &to, channel).filter(taken) else { continue };
                    let since = if share.with_history { 0 } else { share.since };
                    let via = cost.max(since).max(joined);
                    let Some(id) = self.user_id(sender) else { continue };
                    from.entry(id).and_modify(|c| *c = (*c).min(via)).or_insert(via);
                    if share.kind == ShareKind::SharesAll && relay.get(sender).is_none_or(|c| via < *c) {
                        relay.insert(sender, via);
                        queue.push(Reverse((via, sender)));
                    }
                }
            }
        }
        from.remove(&reader_id);
        Some(PastReaders { reader: reader_id, from })
    }
}
