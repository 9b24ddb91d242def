//! Node-to-node fan-out over gRPC: one outbound `Link` stream per peer
//! (interest replay, interest changes, publishes), and the inbound service
//! that applies a peer's interest and delivers its publishes locally.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hpfriends_consensus::peer_auth::{PeerAuth, RequirePeer, HEADER_NODE};
use hpfriends_consensus::proto::fanout_client::FanoutClient;
use hpfriends_consensus::proto::fanout_server::{Fanout as FanoutRpc, FanoutServer};
use hpfriends_consensus::proto::{
    peer_frame, Interest, InterestSet, LinkClosed, PackedPublishes, PeerFrame, Publish, PublishBatch,
};
use hpfriends_consensus::{ConsensusNode, NodeId};
use hpfriends_graph::UserId;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::protocol::frame::{self, Frame, Limits};
use crate::routing::fanout::{LinkQueue, LinkReceivers, LinkState};
use crate::routing::Router;

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub struct FanoutService {
    router: Arc<Router>,
    // Registered once: the receive path does no registry lookups.
    delivered: metrics::Counter,
    delivered_bytes: metrics::Counter,
    /// Ends inbound links, so the graceful gRPC shutdown need not wait for
    /// peers to hang up.
    shutdown: CancellationToken,
}

pub fn service(
    router: Arc<Router>,
    auth: PeerAuth,
    shutdown: CancellationToken,
) -> InterceptedService<FanoutServer<FanoutService>, RequirePeer> {
    let server = FanoutServer::new(FanoutService {
        router,
        shutdown,
        delivered: metrics::counter!("hpfriends_messages_delivered_total"),
        delivered_bytes: metrics::counter!("hpfriends_bytes_delivered_total"),
    })
    .max_decoding_message_size(MAX_PEER_MESSAGE);
    InterceptedService::new(server, RequirePeer(auth))
}

impl FanoutService {
    /// Delivers a peer's publishes locally: `feed` hands each (owner,
    /// channel, frame) to its argument. Counted once per message from the peer.
    fn deliver<T>(&self, feed: impl FnOnce(&mut dyn FnMut(UserId, &[u8], &Bytes)) -> T) -> T {
        let (mut messages, mut bytes) = (0, 0);
        let result = feed(&mut |owner, channel, frame| {
            let d = self.router.publish_from_peer(owner, channel, frame);
            messages += d.delivered;
            bytes += d.delivered * frame.len();
        });
        self.delivered.increment(messages as u64);
        self.delivered_bytes.increment(bytes as u64);
        result
    }
}

#[tonic::async_trait]
impl FanoutRpc for FanoutService {
    async fn link(&self, req: Request<Streaming<PeerFrame>>) -> Result<Response<LinkClosed>, Status> {
        // The interceptor verified the MAC over this header.
        let peer: NodeId = req
            .metadata()
            .get(HEADER_NODE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Status::unauthenticated("no peer id"))?;
        let mut stream = req.into_inner();
        let fanout = &self.router.fanout;
        tracing::info!(peer, "fan-out link from peer opened");
        let result = loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = self.shutdown.cancelled() => break Ok(Response::new(LinkClosed {})),
            };
            match message {
                Ok(Some(PeerFrame { kind: Some(kind) })) => match kind {
                    peer_frame::Kind::Replay(set) => fanout.set_peer_interest(peer, set.entries, set.accepts_packed),
                    peer_frame::Kind::Interest(change) => fanout.apply_peer_interest(peer, change),
                    peer_frame::Kind::Publish(p) => self.deliver(|each| each(p.owner, &p.channel, &p.frame)),
                    peer_frame::Kind::Batch(batch) => {
                        self.deliver(|each| batch.publishes.iter().for_each(|p| each(p.owner, &p.channel, &p.frame)))
                    }
                    peer_frame::Kind::Packed(packed) => {
                        // A broken record ends the link; the peer reconnects and replays.
                        if let Err(e) = self.deliver(|each| unpack(packed.records, each)) {
                            let e = format!("malformed packed publishes: {e}");
                            tracing::warn!(peer, "closing fan-out link from peer: {e}");
                            break Err(Status::invalid_argument(e));
                        }
                    }
                    peer_frame::Kind::Dropped(set) => {
                        let lost: Vec<_> = set.entries.into_iter().map(|i| (i.channel, i.owner)).collect();
                        let closed = self.router.close_lossy(&lost);
                        tracing::warn!(
                            peer,
                            pairs = lost.len(),
                            closed,
                            "peer dropped publishes for local subscribers; closing them"
                        );
                    }
                },
                Ok(Some(PeerFrame { kind: None })) => {} // a kind this version does not know
                Ok(None) => break Ok(Response::new(LinkClosed {})),
                Err(status) => break Err(status),
            }
        };
        fanout.forget_peer(peer);
        tracing::info!(peer, "fan-out link from peer closed");
        result
    }
}

/// Keeps one outbound link per other member of the Raft membership.
pub async fn maintain_links(node: Arc<ConsensusNode>, router: Arc<Router>, shutdown: CancellationToken) {
    let mut metrics = node.metrics();
    let mut running: HashMap<NodeId, (String, CancellationToken)> = HashMap::new();
    loop {
        let members: HashMap<NodeId, String> = metrics
            .borrow_and_update()
            .membership_config
            .nodes()
            .filter(|(id, _)| **id != node.id())
            .map(|(id, info)| (*id, info.cluster_addr.clone()))
            .collect();
        running.retain(|id, (addr, stop)| {
            let keep = members.get(id) == Some(addr);
            if !keep {
                stop.cancel();
                router.fanout.remove_link(*id);
            }
            keep
        });
        for (id, addr) in members {
            if running.contains_key(&id) {
                continue;
            }
            let stop = shutdown.child_token();
            let (queue, receivers) = router.fanout.add_link(id);
            tokio::spawn(run_link(
                addr.clone(),
                queue,
                receivers,
                router.clone(),
                node.peer_auth().clone(),
                stop.clone(),
            ));
            running.insert(id, (addr, stop));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// Messages handed to gRPC and not yet encoded, per link.
const LINK_FRAMES_IN_FLIGHT: usize = 8;
/// Most publishes sent to a peer in one message.
const MAX_BATCH: usize = 256;
/// A batch stops growing at this many frame bytes.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Largest message a peer may send on a link: one publish of any size the
/// hpfeeds limits allow (a batch stays near `MAX_BATCH_BYTES`).
const MAX_PEER_MESSAGE: usize = 256 << 20;

/// `first` with whatever else is already queued, up to `MAX_BATCH`
/// publishes or `MAX_BATCH_BYTES`: one message when the link is behind.
fn take_batch(first: Publish, queue: &mut mpsc::Receiver<Publish>) -> Vec<Publish> {
    let mut bytes = first.frame.len();
    let mut publishes = vec![first];
    while publishes.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match queue.try_recv() {
            Ok(p) => {
                bytes += p.frame.len();
                publishes.push(p);
            }
            Err(_) => break,
        }
    }
    publishes
}

/// The message for a batch: packed for a peer that takes it, else the
/// `publish` / `batch` kinds every version understands.
fn batch_frame(mut publishes: Vec<Publish>, packed: bool) -> PeerFrame {
    let kind = if packed {
        peer_frame::Kind::Packed(PackedPublishes { records: pack(&publishes) })
    } else if publishes.len() == 1 {
        peer_frame::Kind::Publish(publishes.pop().expect("one publish"))
    } else {
        peer_frame::Kind::Batch(PublishBatch { publishes })
    };
    PeerFrame { kind: Some(kind) }
}

/// Owner (u32, big-endian) and frame per publish, back to back.
fn pack(publishes: &[Publish]) -> Bytes {
    let mut records = BytesMut::with_capacity(publishes.iter().map(|p| 4 + p.frame.len()).sum());
    for p in publishes {
        records.put_u32(p.owner);
        records.put_slice(&p.frame);
    }
    records.freeze()
}

/// Calls `each(owner, channel, frame)` for every record `pack` wrote, in order;
/// stops at the first malformed record and says what is wrong with it.
fn unpack(mut records: Bytes, mut each: impl FnMut(UserId, &[u8], &Bytes)) -> Result<(), String> {
    let limits = Limits { max_publish_body: MAX_PEER_MESSAGE };
    while records.has_remaining() {
        if records.len() < 4 {
            return Err(format!("a record of {} bytes has no room for its owner", records.len()));
        }
        let owner = records.get_u32();
        match frame::split_frame(&mut records, &limits) {
            Ok(Frame::Publish(p)) => each(owner, p.channel(), p.raw()),
            Ok(other) => return Err(format!("{} frame instead of PUBLISH", other.opcode().name())),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// The streaming call itself; ends when the peer or the network ends it.
async fn stream_to_peer(
    mut client: FanoutClient<InterceptedService<tonic::transport::Channel, PeerAuth>>,
    rx: mpsc::Receiver<PeerFrame>,
) -> Result<(), Status> {
    client.link(ReceiverStream::new(rx)).await.map(drop)
}

/// One outbound link: connect, replay interest, then stream changes and
/// publishes; reconnect with backoff whenever the stream breaks.
async fn run_link(
    addr: String,
    queue: Arc<LinkQueue>,
    mut receivers: LinkReceivers,
    router: Arc<Router>,
    auth: PeerAuth,
    stop: CancellationToken,
) {
    let peer = queue.peer;
    let mut backoff = BACKOFF_MIN;
    while !stop.is_cancelled() {
        let endpoint = match auth.endpoint(&addr) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(peer, %addr, "bad peer address: {e}");
                return;
            }
        };
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = endpoint.connect() => c,
        };
        let channel = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer, "fan-out connect failed: {e}");
                queue.set_state(LinkState::Unreachable);
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let client = FanoutClient::with_interceptor(channel, auth.clone());
        // Small: the link queue (`peer_queue_messages`) is the buffer. Frames
        // waiting here (up to 256 publishes each) would hold a `dropped`
        // notice back until after later subscribers joined.
        let (tx, rx) = mpsc::channel::<PeerFrame>(LINK_FRAMES_IN_FLIGHT);
        // The replay goes first; changes queued before it are already in it.
        let replay = router.with_local_interest(|pairs| {
            while receivers.control.try_recv().is_ok() {}
            let entries =
                pairs.into_iter().map(|(channel, owner)| Interest { channel, owner, subscribed: true }).collect();
            PeerFrame { kind: Some(peer_frame::Kind::Replay(InterestSet { entries, accepts_packed: true })) }
        });
        if tx.send(replay).await.is_err() {
            continue;
        }
        let mut call = tokio::spawn(stream_to_peer(client, rx));
        queue.set_state(LinkState::Replayed);
        tracing::info!(peer, %addr, "fan-out link to peer ready");
        backoff = BACKOFF_MIN;
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => return,
                ended = &mut call => {
                    tracing::info!(peer, "fan-out link to peer ended: {ended:?}");
                    break;
                }
                Some(change) = receivers.control.recv() => PeerFrame { kind: Some(peer_frame::Kind::Interest(change)) },
                Some(first) = receivers.data.recv() => {
                    let batch = take_batch(first, &mut receivers.data);
                    queue.sent(batch.len(), batch.iter().map(|p| p.frame.len()).sum());
                    batch_frame(batch, router.fanout.accepts_packed(peer))
                }
            };
            if tx.send(frame).await.is_err() {
                break;
            }
            let dropped = queue.take_dropped();
            if !dropped.is_empty() {
                let entries = dropped
                    .into_iter()
                    .map(|(channel, owner)| Interest { channel, owner, subscribed: false })
                    .collect();
                let notice = InterestSet { entries, accepts_packed: false };
                if tx.send(PeerFrame { kind: Some(peer_frame::Kind::Dropped(notice)) }).await.is_err() {
                    break;
                }
            }
        }
        call.abort();
        queue.set_state(LinkState::Unreachable);
        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{encode_publish, encode_subscribe};

    fn publish(owner: UserId, channel: &str, payload: &str) -> Publish {
        let frame = encode_publish(b"ident", channel.as_bytes(), payload.as_bytes());
        Publish { owner, frame, channel: Bytes::copy_from_slice(channel.as_bytes()) }
    }

    fn unpacked(records: Bytes) -> Result<Vec<(UserId, Bytes, Bytes)>, String> {
        let mut out = Vec::new();
        unpack(records, |owner, channel, frame| out.push((owner, Bytes::copy_from_slice(channel), frame.clone())))?;
        Ok(out)
    }

    #[test]
    fn given_packed_publishes_then_unpack_gives_each_owner_channel_and_frame_in_order() {
        let publishes = vec![publish(7, "a", "one"), publish(u32::MAX, "bb", ""), publish(0, "a", "three")];
        let got = unpacked(pack(&publishes)).unwrap();
        let want: Vec<_> = publishes.iter().map(|p| (p.owner, p.channel.clone(), p.frame.clone())).collect();
        assert_eq!(got, want);
        assert_eq!(unpacked(Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn given_malformed_records_then_unpack_says_what_is_wrong() {
        let good = pack(&[publish(1, "c", "payload")]);
        let cut = good.slice(..good.len() - 1);
        assert_eq!(unpacked(cut).unwrap_err(), "malformed PUBLISH frame: frame longer than the data");
        let mut short_owner = BytesMut::from(&good[..]);
        short_owner.put_slice(&[0, 0]);
        assert_eq!(unpacked(short_owner.freeze()).unwrap_err(), "a record of 2 bytes has no room for its owner");
        let mut subscribe = BytesMut::new();
        subscribe.put_u32(1);
        subscribe.put_slice(&encode_subscribe(b"ident", b"c"));
        assert_eq!(unpacked(subscribe.freeze()).unwrap_err(), "SUBSCRIBE frame instead of PUBLISH");
        let mut bad_opcode = BytesMut::new();
        bad_opcode.put_u32(1);
        bad_opcode.put_slice(&[0, 0, 0, 5, 99]);
        assert_eq!(unpacked(bad_opcode.freeze()).unwrap_err(), "unknown opcode 99");
    }

    #[test]
    fn given_peer_without_packed_support_then_batches_use_the_kinds_every_version_knows() {
        let one = batch_frame(vec![publish(1, "c", "x")], false);
        assert!(matches!(one.kind, Some(peer_frame::Kind::Publish(p)) if p.owner == 1));
        let two = batch_frame(vec![publish(1, "c", "x"), publish(2, "c", "y")], false);
        assert!(matches!(two.kind, Some(peer_frame::Kind::Batch(b)) if b.publishes.len() == 2));
        let packed = batch_frame(vec![publish(1, "c", "x"), publish(2, "c", "y")], true);
        let Some(peer_frame::Kind::Packed(p)) = packed.kind else { panic!("expected a packed message") };
        assert_eq!(unpacked(p.records).unwrap().len(), 2);
    }

    #[test]
    fn given_queued_publishes_then_a_batch_stops_at_its_count_limit_in_order() {
        let (tx, mut rx) = mpsc::channel(MAX_BATCH + 10);
        for i in 0..MAX_BATCH as u32 + 5 {
            tx.try_send(publish(i, "c", "x")).unwrap();
        }
        let first = rx.try_recv().unwrap();
        let batch = take_batch(first, &mut rx);
        assert_eq!(batch.len(), MAX_BATCH);
        assert!(batch.iter().enumerate().all(|(i, p)| p.owner == i as u32));
        assert_eq!(take_batch(rx.try_recv().unwrap(), &mut rx).len(), 5);
    }
}
