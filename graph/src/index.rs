//! The flattened sharing index: `readers(P, C)` for every publisher and channel,
//! computed when the graph changes and never per message.
//!
//! Cloning is cheap (one `Arc` per channel), so the node can publish a new
//! immutable snapshot after every apply while readers keep the old one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::model::{Applied, Graph, ShareKind};

pub type ReaderSet = HashSet<String>;

/// Readers of one channel, by publisher. Publishers whose data reaches nobody are absent.
pub type ChannelReaders = HashMap<String, Arc<ReaderSet>>;

#[derive(Debug, Clone, Default)]
pub struct SharingIndex {
    generation: u64,
    channels: HashMap<String, Arc<ChannelReaders>>,
}

impl SharingIndex {
    /// Computes the whole index from scratch.
    pub fn build(graph: &Graph) -> Self {
        let mut channels = HashMap::new();
        for channel in graph.channels() {
            let readers = build_channel(graph, channel);
            if !readers.is_empty() {
                channels.insert(channel.to_string(), Arc::new(readers));
            }
        }
        SharingIndex { generation: 1, channels }
    }

    /// Increases with every change of the graph that was applied.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Users who may read `publisher`'s messages on `channel`, besides the publisher.
    pub fn readers(&self, publisher: &str, channel: &str) -> Option<&Arc<ReaderSet>> {
        self.channels.get(channel)?.get(publisher)
    }

    /// The delivery rule of DESIGN.md §2.
    pub fn may_read(&self, publisher: &str, reader: &str, channel: &str) -> bool {
        publisher == reader || self.readers(publisher, channel).is_some_and(|r| r.contains(reader))
    }

    /// Number of (publisher, channel) pairs with at least one reader.
    pub fn entries(&self) -> usize {
        self.channels.values().map(|c| c.len()).sum()
    }

    /// Brings the index up to date after `applied` was applied to `graph`.
    /// Only publishers whose reach can pass through a changed place are recomputed.
    pub fn update(&mut self, graph: &Graph, applied: &Applied) {
        self.generation += 1;
        let mut by_channel: HashMap<&str, Vec<&str>> = HashMap::new();
        for d in &applied.dirty {
            by_channel.entry(d.channel.as_str()).or_default().push(d.at.as_str());
        }
        for (channel, places) in by_channel {
            let affected: HashSet<String> = match self.channels.get(channel) {
                Some(current) => current
                    .iter()
                    .filter(|(p, readers)| places.iter().any(|at| *at == p.as_str() || readers.contains(*at)))
                    .map(|(p, _)| p.clone())
                    .chain(places.iter().map(|s| s.to_string()))
                    .collect(),
                None => places.iter().map(|s| s.to_string()).collect(),
            };
            let entry = self.channels.entry(channel.to_string()).or_default();
            let readers_of_channel = Arc::make_mut(entry);
            for publisher in affected {
                let readers = reach(graph, &publisher, channel);
                if readers.is_empty() {
                    readers_of_channel.remove(&publisher);
                } else {
                    readers_of_channel.insert(publisher, Arc::new(readers));
                }
            }
            if readers_of_channel.is_empty() {
                self.channels.remove(channel);
            }
        }
    }
}

fn build_channel(graph: &Graph, channel: &str) -> ChannelReaders {
    graph
        .senders_on(channel)
        .filter_map(|(publisher, _)| {
            let readers = reach(graph, publisher, channel);
            (!readers.is_empty()).then(|| (publisher.to_string(), Arc::new(readers)))
        })
        .collect()
}

/// Everyone reachable from `publisher` on `channel`: the first step along any
/// accepted share, every later step along accepted `shares_all` shares only.
pub fn reach(graph: &Graph, publisher: &str, channel: &str) -> ReaderSet {
    let mut readers = ReaderSet::new();
    let mut queue: VecDeque<(&str, bool)> = VecDeque::from([(publisher, true)]);
    while let Some((user, first)) = queue.pop_front() {
        let Some(outs) = graph.out_shares(user, channel) else {
            continue;
        };
        for (to, share) in outs {
            if !share.accepted || (!first && share.kind != ShareKind::SharesAll) {
                continue;
            }
            for v in graph.recipients(to) {
                if readers.insert(v.to_string()) && v != publisher {
                    queue.push_back((v, false));
                }
            }
        }
    }
    readers
}
