//! Delivery where some readers get a filtered version (docs/sharing.md,
//! "Filters"): each version is computed once per message and chain of
//! filters, and the frame it makes is shared by every subscriber that gets it.

use bytes::Bytes;
use hpfriends_graph::{Message, Outcome, Parsed, Readers, Routes};

use super::{Delivery, Subscriber};
use crate::protocol::frame::{encode_publish, split_raw};
use crate::protocol::{Limits, PublishFrame};

/// One message's versions so far: the frame each chain made of it (`None`:
/// the chain let nothing through).
struct Versions<'a> {
    publish: &'a PublishFrame,
    /// The payload's JSON, parsed once for every chain.
    parsed: Parsed<'a>,
    by_chain: Vec<(usize, Option<Bytes>)>,
}

impl<'a> Versions<'a> {
    fn new(publish: &'a PublishFrame) -> Self {
        Versions { publish, parsed: Parsed::default(), by_chain: Vec::new() }
    }

    /// The frame a reader with these routes gets: the first chain's that lets it through.
    fn frame_for(&mut self, routes: &Routes) -> Option<Bytes> {
        routes.chains().iter().find_map(|chain| {
            if let Some((_, frame)) = self.by_chain.iter().find(|(id, _)| *id == chain.id()) {
                return frame.clone();
            }
            let p = self.publish;
            let msg = Message {
                channel: std::str::from_utf8(p.channel()).unwrap_or_default(),
                ident: std::str::from_utf8(p.ident()).unwrap_or_default(),
                payload: p.payload(),
            };
            let frame = match chain.apply(msg, &self.parsed) {
                Outcome::Pass(None) => Some(p.raw().clone()),
                Outcome::Pass(Some(payload)) => Some(encode_publish(p.ident(), p.channel(), &payload)),
                Outcome::Dropped | Outcome::Error => None,
            };
            self.by_chain.push((chain.id(), frame.clone()));
            frame
        })
    }
}

/// Delivers `frames` (one PUBLISH, or a peer's run of them) on a channel where
/// some readers are filtered: the others get the frames as they are, at once;
/// each filtered one gets its version of each message.
pub(super) fn deliver(
    owner: hpfriends_graph::UserId,
    subscribers: &[Subscriber],
    frames: &Bytes,
    messages: u64,
    readers: &Readers,
) -> Delivery {
    let mut result = Delivery::default();
    let mut count = |ok: bool| if ok { result.delivered += 1 } else { result.dropped += 1 };
    let mut filtered = Vec::new();
    for s in subscribers.iter().filter(|s| hpfriends_graph::may_read(owner, s.owner, Some(readers))) {
        match readers.routes(s.owner).filter(|_| s.owner != owner) {
            None => count(s.out.deliver(frames.clone(), messages)),
            Some(routes) => filtered.push((s, routes)),
        }
    }
    if filtered.is_empty() {
        return result;
    }
    let mut rest: &[u8] = frames;
    // Checked when they arrived, against the limit of the node that took them.
    let limits = Limits { max_publish_body: u32::MAX as usize };
    while !rest.is_empty() {
        let Ok((_, raw)) = split_raw(&mut rest, &limits) else { break };
        let Ok(publish) = PublishFrame::from_raw(frames.slice_ref(raw)) else { break };
        let mut versions = Versions::new(&publish);
        for (s, routes) in &filtered {
            if let Some(frame) = versions.frame_for(routes) {
                count(s.out.deliver(frame, 1));
            }
        }
    }
    result
}
