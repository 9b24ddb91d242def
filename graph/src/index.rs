//! The flattened sharing index: `readers(P, C)` for every publisher and channel,
//! computed when the graph changes and never per message.
//!
//! Readers are user ids in a sorted slice: compact (4 bytes a reader) and
//! checked by binary search. Cloning the index is cheap (one `Arc` per
//! channel), so the node publishes a new immutable snapshot after every apply
//! while the publish path keeps reading the old one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::filter::Routes;
use crate::model::{Applied, Graph, OutShares, ShareKind, Target, UserId};

/// Who may read one publisher's messages on one channel (besides the publisher).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readers {
    ids: Arc<[UserId]>,
    /// Readers every path to whom passes a filter, by id: the versions they
    /// may get (docs/sharing.md, "Filters"). Absent on channels without filters.
    filtered: Option<Arc<[(UserId, Routes)]>>,
}

impl Readers {
    pub fn contains(&self, user: UserId) -> bool {
        self.ids.binary_search(&user).is_ok()
    }
    pub fn ids(&self) -> &[UserId] {
        &self.ids
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// For a reader: `None` when some path carries the messages unfiltered.
    pub fn routes(&self, reader: UserId) -> Option<&Routes> {
        let filtered = self.filtered.as_deref()?;
        filtered.binary_search_by_key(&reader, |(r, _)| *r).ok().map(|i| &filtered[i].1)
    }
    /// Whether any reader gets a filtered version.
    pub fn any_filtered(&self) -> bool {
        self.filtered.is_some()
    }
}

/// A map the publish path looks up in for every message: foldhash instead of
/// SipHash (SipHash was ~9 % of a node's CPU under load, `perf`). Its keys are names and ids that
/// operators define, not attacker-chosen strings, so hash flooding is no concern.
pub type LookupMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

type ChannelReaders = LookupMap<UserId, Readers>;

#[derive(Debug, Clone, Default)]
pub struct SharingIndex {
    generation: u64,
    channels: LookupMap<String, Arc<ChannelReaders>>,
}

impl SharingIndex {
    /// Computes the whole index from scratch.
    pub fn build(graph: &Graph) -> Self {
        let mut walker = Walker::new(graph);
        let mut channels = LookupMap::default();
        for channel in graph.channels() {
            let mut adjacency = Adjacency::new(graph, channel);
            let readers: ChannelReaders = adjacency
                .load_all(&mut walker.groups)
                .into_iter()
                .filter_map(|p| walker.reach(&mut adjacency, p).map(|r| (p, with_routes(graph, channel, p, r))))
                .collect();
            if !readers.is_empty() {
                channels.insert(channel.to_string(), Arc::new(readers));
            }
        }
        SharingIndex { generation: 1, channels }
    }

    /// Increases with every applied change of the graph.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn readers(&self, publisher: UserId, channel: &str) -> Option<&Readers> {
        self.channels.get(channel)?.get(&publisher)
    }

    /// The delivery rule (docs/sharing.md) for one publisher, reader and channel.
    pub fn may_read(&self, publisher: UserId, reader: UserId, channel: &str) -> bool {
        may_read(publisher, reader, self.readers(publisher, channel))
    }

    /// `may_read` by user name, for tests and people.
    pub fn may_read_by_name(&self, graph: &Graph, publisher: &str, reader: &str, channel: &str) -> bool {
        match (graph.user_id(publisher), graph.user_id(reader)) {
            (Some(p), Some(r)) => self.may_read(p, r, channel),
            _ => false,
        }
    }

    /// Reader names of `publisher` on `channel`, sorted (for tests and people).
    pub fn reader_names(&self, graph: &Graph, publisher: &str, channel: &str) -> Vec<String> {
        let Some(readers) = graph.user_id(publisher).and_then(|p| self.readers(p, channel)) else { return vec![] };
        // A reader that no longer exists shows up, so a stale index is visible.
        let mut names: Vec<String> = readers
            .ids()
            .iter()
            .map(|id| graph.user_name(*id).map_or_else(|| format!("<removed #{id}>"), str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Number of (publisher, channel) pairs with at least one reader.
    pub fn entries(&self) -> usize {
        self.channels.values().map(|c| c.len()).sum()
    }

    /// Brings the index up to date after `applied` was applied to `graph`.
    /// Only publishers whose reach can pass through a changed place are recomputed.
    pub fn update(&mut self, graph: &Graph, applied: &Applied) {
        self.generation += 1;
        let mut by_channel: HashMap<&str, Vec<UserId>> = HashMap::new();
        for d in &applied.dirty {
            by_channel.entry(d.channel.as_str()).or_default().push(d.at);
        }
        if by_channel.is_empty() {
            return;
        }
        let mut walker = Walker::new(graph);
        for (channel, places) in by_channel {
            let mut adjacency = Adjacency::new(graph, channel);
            let entry = self.channels.entry(channel.to_string()).or_default();
            let mut affected: Vec<UserId> = entry
                .iter()
                .filter(|(p, readers)| places.iter().any(|at| *at == **p || readers.contains(*at)))
                .map(|(p, _)| *p)
                .chain(places.iter().copied())
                .collect();
            affected.sort_unstable();
            affected.dedup();
            let readers_of_channel = Arc::make_mut(entry);
            for publisher in affected {
                match walker.reach(&mut adjacency, publisher) {
                    Some(r) => readers_of_channel.insert(publisher, with_routes(graph, channel, publisher, r)),
                    None => readers_of_channel.remove(&publisher),
                };
            }
            if readers_of_channel.is_empty() {
                self.channels.remove(channel);
            }
        }
    }
}

/// Adds the filtered readers' routes where the channel has filters.
fn with_routes(graph: &Graph, channel: &str, publisher: UserId, readers: Readers) -> Readers {
    if !graph.has_filters(channel) {
        return readers;
    }
    let filtered: Vec<(UserId, Routes)> = crate::filter::routes(graph, channel, publisher);
    Readers { filtered: (!filtered.is_empty()).then(|| filtered.into()), ..readers }
}

/// A sender's accepted shares on one channel: (everyone the first step
/// reaches, those reached along `shares_all`).
type Edges = (Vec<UserId>, Vec<UserId>);

/// One channel's accepted shares as ids, loaded per sender on first use: for
/// each sender, whom the first step reaches (any kind) and whom relaying
/// reaches (`shares_all` only). An update touches only the senders it walks.
struct Adjacency<'g> {
    graph: &'g Graph,
    channel: &'g str,
    out: HashMap<UserId, Option<Edges>>,
    /// Every sender is loaded: a missing entry means no shares.
    complete: bool,
}

impl<'g> Adjacency<'g> {
    fn new(graph: &'g Graph, channel: &'g str) -> Self {
        Adjacency { graph, channel, out: HashMap::new(), complete: false }
    }

    /// Loads every sender at once (a full build walks them all anyway).
    fn load_all(&mut self, groups: &mut HashMap<String, Vec<UserId>>) -> Vec<UserId> {
        let mut publishers = Vec::new();
        for (from, shares) in self.graph.senders_on(self.channel) {
            let Some(id) = self.graph.user_id(from) else { continue };
            publishers.push(id);
            self.out.insert(id, to_ids(self.graph, shares, groups));
        }
        self.complete = true;
        publishers
    }

    fn edges(
        &mut self,
        from: UserId,
        groups: &mut HashMap<String, Vec<UserId>>,
    ) -> Option<&(Vec<UserId>, Vec<UserId>)> {
        if self.complete {
            return self.out.get(&from)?.as_ref();
        }
        let (graph, channel) = (self.graph, self.channel);
        self.out
            .entry(from)
            .or_insert_with(|| to_ids(graph, graph.out_shares(graph.user_name(from)?, channel)?, groups))
            .as_ref()
    }
}

/// A sender's accepted shares as ids.
fn to_ids(graph: &Graph, shares: &OutShares, groups: &mut HashMap<String, Vec<UserId>>) -> Option<Edges> {
    let (mut all, mut relay) = (Vec::new(), Vec::new());
    for (to, share) in shares.iter().filter(|(_, s)| s.accepted) {
        let single;
        let recipients: &[UserId] = match to {
            Target::User(u) => match graph.user_id(u) {
                Some(id) => {
                    single = [id];
                    &single
                }
                None => &[],
            },
            Target::Group(g) => groups.entry(g.clone()).or_insert_with(|| {
                graph
                    .group(g)
                    .map(|grp| grp.accepted_members().filter_map(|m| graph.user_id(m)).collect())
                    .unwrap_or_default()
            }),
        };
        all.extend_from_slice(recipients);
        if share.kind == ShareKind::SharesAll {
            relay.extend_from_slice(recipients);
        }
    }
    (!all.is_empty()).then_some((all, relay))
}

/// Breadth-first search state reused across publishers: a visit stamp per user
/// id instead of a fresh set per search.
struct Walker {
    stamp: Vec<u32>,
    epoch: u32,
    queue: Vec<UserId>,
    groups: HashMap<String, Vec<UserId>>,
}

impl Walker {
    fn new(graph: &Graph) -> Walker {
        Walker { stamp: vec![0; graph.id_bound()], epoch: 0, queue: Vec::new(), groups: HashMap::new() }
    }

    /// Everyone reachable from `publisher`: the first step along any accepted
    /// share, every later step along accepted `shares_all` shares only.
    fn reach(&mut self, adjacency: &mut Adjacency, publisher: UserId) -> Option<Readers> {
        let (first, _) = adjacency.edges(publisher, &mut self.groups)?;
        self.epoch += 1;
        let epoch = self.epoch;
        self.queue.clear();
        for &v in first {
            if self.stamp[v as usize] != epoch {
                self.stamp[v as usize] = epoch;
                self.queue.push(v);
            }
        }
        let mut i = 0;
        while i < self.queue.len() {
            let u = self.queue[i];
            i += 1;
            if u == publisher {
                continue; // the publisher's own shares were the first step
            }
            if let Some((_, relay)) = adjacency.edges(u, &mut self.groups) {
                for &v in relay {
                    if self.stamp[v as usize] != epoch {
                        self.stamp[v as usize] = epoch;
                        self.queue.push(v);
                    }
                }
            }
        }
        let mut readers = self.queue.clone();
        readers.sort_unstable();
        (!readers.is_empty()).then(|| Readers { ids: readers.into(), filtered: None })
    }
}

/// The delivery rule (docs/sharing.md): `reader` may read what `publisher`
/// sends on a channel whose reader set is `readers` (looked up once per
/// message). The publish path, the links between nodes and the index all ask
/// this one function.
pub fn may_read(publisher: UserId, reader: UserId, readers: Option<&Readers>) -> bool {
    publisher == reader || readers.is_some_and(|r| r.contains(reader))
}
