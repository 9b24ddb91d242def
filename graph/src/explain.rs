//! `explain(P, V, C)`: the path that lets V read P's data on C.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::{Graph, ShareKind, Target};

/// One share along the path.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub from: String,
    /// A user, or `group:NAME`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to: Target,
    /// The user reached (for a group, the accepted member).
    pub reader: String,
    pub kind: ShareKind,
    /// What the share lets through (docs/sharing.md, "Filters").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::Filter>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Explanation {
    /// The reader is the publisher: everyone reads their own data.
    Own,
    /// A shortest path of accepted shares.
    Path {
        hops: Vec<Hop>,
    },
    None,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Explanation::Own => f.write_str("own data: a user always reads their own messages"),
            Explanation::None => f.write_str("no path: nothing is shared along accepted shares"),
            Explanation::Path { hops } => {
                for (i, hop) in hops.iter().enumerate() {
                    if i == 0 {
                        f.write_str(&hop.from)?;
                    }
                    match &hop.filter {
                        None => write!(f, " -[{}]-> {}", hop.kind.as_str(), hop.to)?,
                        Some(filter) => write!(f, " -[{}, filter: {filter}]-> {}", hop.kind.as_str(), hop.to)?,
                    }
                    if let Target::Group(_) = hop.to {
                        write!(f, " (member {})", hop.reader)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Breadth-first search with the same rule as the index, keeping parents.
pub fn explain(graph: &Graph, publisher: &str, reader: &str, channel: &str) -> Explanation {
    if publisher == reader {
        return Explanation::Own;
    }
    let parent = search(graph, publisher, channel, Some(reader));
    if parent.contains_key(reader) {
        Explanation::Path { hops: path_to(&parent, reader) }
    } else {
        Explanation::None
    }
}

/// Every reader of `publisher`'s data on `channel` with the path `explain`
/// would give, from one search (the Audience page).
pub fn explain_all(graph: &Graph, publisher: &str, channel: &str) -> BTreeMap<String, Vec<Hop>> {
    let parent = search(graph, publisher, channel, None);
    parent.keys().map(|reader| (reader.clone(), path_to(&parent, reader))).collect()
}

/// The hop that first reached each reader, breadth-first from `publisher`:
/// the first share may be of either kind, later ones relay only with
/// `shares_all`. Stops once `target` is reached.
fn search(graph: &Graph, publisher: &str, channel: &str, target: Option<&str>) -> HashMap<String, Hop> {
    let mut parent: HashMap<String, Hop> = HashMap::new();
    let mut queue: VecDeque<(String, bool)> = VecDeque::from([(publisher.to_string(), true)]);
    while let Some((user, first)) = queue.pop_front() {
        let Some(outs) = graph.out_shares(&user, channel) else {
            continue;
        };
        for (to, share) in outs {
            if !share.accepted || (!first && share.kind != ShareKind::SharesAll) {
                continue;
            }
            for v in graph.recipients(to) {
                if v == publisher || parent.contains_key(v) {
                    continue;
                }
                let filter = share.filter.as_ref().map(|f| f.spec().clone());
                let hop = Hop { from: user.clone(), to: to.clone(), reader: v.to_string(), kind: share.kind, filter };
                parent.insert(v.to_string(), hop);
                if target == Some(v) {
                    return parent;
                }
                queue.push_back((v.to_string(), false));
            }
        }
    }
    parent
}

/// Every (channel, publisher) whose data reaches `reader`, by the same rule
/// walked backwards from the reader: a share into the reader (or a group it
/// joined) brings its sender's data; a `shares_all` one also brings whatever
/// reaches that sender. (The Shared with you page.)
pub fn publishers_reaching(graph: &Graph, reader: &str) -> BTreeSet<(String, String)> {
    let mut found: BTreeSet<(String, String)> = BTreeSet::new();
    // (channel, user): whoever reaches this user on this channel reaches the reader.
    let mut relays: BTreeSet<(String, String)> = BTreeSet::new();
    let mut queue: VecDeque<(Option<String>, String)> = VecDeque::from([(None, reader.to_string())]);
    while let Some((only, x)) = queue.pop_front() {
        let targets =
            std::iter::once(Target::User(x.clone())).chain(graph.groups_of(&x).map(|g| Target::Group(g.to_string())));
        for to in targets.collect::<Vec<_>>() {
            for (channel, from) in graph.shares_into(&to) {
                if only.as_deref().is_some_and(|c| c != channel) {
                    continue;
                }
                let Some(share) = graph.share(from, &to, channel).filter(|s| s.accepted) else { continue };
                if from != reader {
                    found.insert((channel.to_string(), from.to_string()));
                }
                let relay = (channel.to_string(), from.to_string());
                if share.kind == ShareKind::SharesAll && from != reader && relays.insert(relay) {
                    queue.push_back((Some(channel.to_string()), from.to_string()));
                }
            }
        }
    }
    found
}

/// Who would read `publisher`'s data on `channel` through one more accepted
/// share to `to`, by the same rule: its recipients, and whoever they relay to
/// along accepted `shares_all`. (The Audience page's preview.)
pub fn readers_through(graph: &Graph, publisher: &str, to: &Target, channel: &str) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::new();
    for v in graph.recipients(to) {
        if v != publisher && seen.insert(v.to_string()) {
            queue.push_back(v);
        }
    }
    while let Some(user) = queue.pop_front() {
        for (next, share) in graph.out_shares(user, channel).into_iter().flatten() {
            if !share.accepted || share.kind != ShareKind::SharesAll {
                continue;
            }
            for v in graph.recipients(next) {
                if v != publisher && seen.insert(v.to_string()) {
                    queue.push_back(v);
                }
            }
        }
    }
    seen
}

fn path_to(parent: &HashMap<String, Hop>, reader: &str) -> Vec<Hop> {
    let mut hops = Vec::new();
    let mut at = reader;
    while let Some(hop) = parent.get(at) {
        hops.push(hop.clone());
        at = &hop.from;
    }
    hops.reverse();
    hops
}
