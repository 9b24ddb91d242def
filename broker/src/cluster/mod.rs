//! Node-to-node fan-out over gRPC: one outbound `Link` stream per peer
//! (interest replay, interest changes, publishes), and the inbound service
//! that applies a peer's interest and delivers its publishes locally.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hpfriends_consensus::cluster_tls::{peer_id, ClusterTls, RequirePeer};
use hpfriends_consensus::proto::fanout_client::FanoutClient;
use hpfriends_consensus::proto::fanout_server::{Fanout as FanoutRpc, FanoutServer};
use hpfriends_consensus::proto::{peer_frame, Interest, InterestSet, LinkClosed, PeerFrame, PublishBatch, PublishRuns};
use hpfriends_consensus::{ConsensusNode, NodeId};
use hpfriends_graph::UserId;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::protocol::frame::{self, Limits, Opcode};
use crate::routing::fanout::{Chunk, LinkQueue, LinkState};
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
    tls: ClusterTls,
    shutdown: CancellationToken,
) -> InterceptedService<FanoutServer<FanoutService>, RequirePeer> {
    let server = FanoutServer::new(FanoutService {
        router,
        shutdown,
        delivered: metrics::counter!("hpfriends_messages_delivered_total"),
        delivered_bytes: metrics::counter!("hpfriends_bytes_delivered_total"),
    })
    .max_decoding_message_size(MAX_PEER_MESSAGE);
    InterceptedService::new(server, RequirePeer(tls))
}

impl FanoutService {
    /// Delivers a peer's publishes locally: `feed` hands each (owner,
    /// channel, frames, how many frames) to its argument. Counted once per
    /// message from the peer.
    fn deliver<T>(&self, feed: impl FnOnce(&mut dyn FnMut(UserId, &[u8], &Bytes, usize)) -> T) -> T {
        let (mut messages, mut bytes) = (0, 0);
        let result = feed(&mut |owner, channel, frames, count| {
            let d = self.router.publish_from_peer(owner, channel, frames);
            messages += d.delivered * count;
            bytes += d.delivered * frames.len();
        });
        self.delivered.increment(messages as u64);
        self.delivered_bytes.increment(bytes as u64);
        result
    }
}

#[tonic::async_trait]
impl FanoutRpc for FanoutService {
    async fn link(&self, req: Request<Streaming<PeerFrame>>) -> Result<Response<LinkClosed>, Status> {
        // The interceptor checked that the connection is a member's.
        let peer: NodeId = peer_id(req.metadata()).ok_or_else(|| Status::unauthenticated("no peer id"))?;
        let mut stream = req.into_inner();
        let fanout = &self.router.fanout;
        // This stream's interest is its own: a second stream for the same peer
        // (a reconnect, or a duplicate) replaces it, and closing the older one
        // leaves the newer one's interest in place.
        let link = fanout.open_inbound(peer);
        fanout.peer_connected(peer);
        tracing::info!(peer, "fan-out link from peer opened");
        let result = loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = self.shutdown.cancelled() => break Ok(Response::new(LinkClosed {})),
            };
            match message {
                Ok(Some(PeerFrame { kind: Some(kind) })) => match kind {
                    peer_frame::Kind::Replay(set) => fanout.set_peer_interest(link, set.entries, set.accepts_runs),
                    peer_frame::Kind::Interest(change) => fanout.apply_peer_interest(link, change),
                    peer_frame::Kind::Publish(p) => self.deliver(|each| each(p.owner, &p.channel, &p.frame, 1)),
                    peer_frame::Kind::Batch(batch) => {
                        self.deliver(|each| batch.publishes.iter().for_each(|p| each(p.owner, &p.channel, &p.frame, 1)))
                    }
                    peer_frame::Kind::Runs(runs) => {
                        // A broken run ends the link; the peer reconnects and replays.
                        if let Err(e) = self.deliver(|each| for_each_run(runs, each)) {
                            let e = format!("malformed publish runs: {e}");
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
        fanout.forget_peer(link);
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
            let (queue, control) = router.fanout.add_link(id);
            tokio::spawn(run_link(
                addr.clone(),
                queue,
                control,
                router.clone(),
                node.cluster_tls().clone(),
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
/// Largest message a peer may send on a link: one publish of any size the
/// hpfeeds limits allow (a chunk of publishes stays near 256 KiB).
const MAX_PEER_MESSAGE: usize = 256 << 20;

/// The message for a chunk of publishes: runs for a peer that takes them,
/// else the `publish` / `batch` kinds every version understands.
fn chunk_frame(chunk: Chunk, runs: bool) -> PeerFrame {
    let kind = if runs {
        peer_frame::Kind::Runs(chunk.into_runs())
    } else {
        let mut publishes = chunk.into_publishes();
        if publishes.len() == 1 {
            peer_frame::Kind::Publish(publishes.pop().expect("one publish"))
        } else {
            peer_frame::Kind::Batch(PublishBatch { publishes })
        }
    };
    PeerFrame { kind: Some(kind) }
}

/// Calls `each(owner, channel, frames, count)` for every run, in order; stops
/// at the first malformed one and says what is wrong with it.
pub fn for_each_run(runs: PublishRuns, mut each: impl FnMut(UserId, &[u8], &Bytes, usize)) -> Result<(), String> {
    let mut frames = runs.frames;
    for run in runs.runs {
        let len = run.len as usize;
        if len > frames.len() {
            return Err(format!("a run of {len} bytes where {} are left", frames.len()));
        }
        let run_frames = frames.split_to(len);
        let (channel, count) = run_channel(&run_frames)?;
        each(run.owner, channel, &run_frames, count);
    }
    if !frames.is_empty() {
        return Err(format!("{} bytes of frames after the last run", frames.len()));
    }
    Ok(())
}

/// The channel of a run's frames and how many there are, once each is
/// checked to be a whole PUBLISH frame on that one channel.
fn run_channel(frames: &[u8]) -> Result<(&[u8], usize), String> {
    let limits = Limits { max_publish_body: MAX_PEER_MESSAGE };
    let mut rest = frames;
    let mut run: Option<(&[u8], usize)> = None;
    while !rest.is_empty() {
        let (op, raw) = frame::split_raw(&mut rest, &limits).map_err(|e| e.to_string())?;
        if op != Opcode::Publish {
            return Err(format!("{} frame instead of PUBLISH", op.name()));
        }
        let channel = frame::publish_channel(raw).map_err(|e| e.to_string())?;
        match &mut run {
            None => run = Some((channel, 1)),
            Some((first, count)) if *first == channel => *count += 1,
            Some(_) => return Err("a run with frames on more than one channel".into()),
        }
    }
    run.ok_or_else(|| "an empty run".into())
}

/// The streaming call itself; ends when the peer or the network ends it.
async fn stream_to_peer(
    mut client: FanoutClient<InterceptedService<tonic::transport::Channel, ClusterTls>>,
    rx: mpsc::Receiver<PeerFrame>,
) -> Result<(), Status> {
    client.link(ReceiverStream::new(rx)).await.map(drop)
}

/// The backoff before the next connect, cut short when the peer connects to
/// this node (it is back: a restarted node must learn this node's interest at
/// once, not after up to `BACKOFF_MAX`).
async fn wait_to_reconnect(queue: &LinkQueue, stop: &CancellationToken, backoff: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(backoff) => {}
        _ = queue.peer_is_back.notified() => {}
    }
}

/// One outbound link: connect, replay interest, then stream changes and
/// publishes; reconnect with backoff whenever the stream breaks.
async fn run_link(
    addr: String,
    queue: Arc<LinkQueue>,
    mut control: mpsc::UnboundedReceiver<Interest>,
    router: Arc<Router>,
    tls: ClusterTls,
    stop: CancellationToken,
) {
    let peer = queue.peer;
    let mut backoff = BACKOFF_MIN;
    while !stop.is_cancelled() {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = tls.connect_channel(&addr) => c,
        };
        let channel = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer, "fan-out connect failed: {e}");
                queue.set_state(LinkState::Unreachable);
                wait_to_reconnect(&queue, &stop, backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let client = FanoutClient::with_interceptor(channel, tls.clone());
        // Small: the link queue (`peer_queue_messages`) is the buffer. Frames
        // waiting here (up to 256 publishes each) would hold a `dropped`
        // notice back until after later subscribers joined.
        let (tx, rx) = mpsc::channel::<PeerFrame>(LINK_FRAMES_IN_FLIGHT);
        // The replay goes first; changes queued before it are already in it.
        let replay = router.with_local_interest(|pairs| {
            while control.try_recv().is_ok() {}
            let entries =
                pairs.into_iter().map(|(channel, owner)| Interest { channel, owner, subscribed: true }).collect();
            let set = InterestSet { entries, accepts_packed: false, accepts_runs: true };
            PeerFrame { kind: Some(peer_frame::Kind::Replay(set)) }
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
                Some(change) = control.recv() => PeerFrame { kind: Some(peer_frame::Kind::Interest(change)) },
                chunk = queue.next_chunk() => {
                    queue.sent(chunk.messages(), chunk.bytes());
                    chunk_frame(chunk, router.fanout.accepts_runs(peer))
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
                let notice = InterestSet { entries, accepts_packed: false, accepts_runs: false };
                if tx.send(PeerFrame { kind: Some(peer_frame::Kind::Dropped(notice)) }).await.is_err() {
                    break;
                }
            }
        }
        call.abort();
        queue.set_state(LinkState::Unreachable);
        wait_to_reconnect(&queue, &stop, backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{encode_publish, encode_subscribe};
    use crate::protocol::PublishFrame;
    use hpfriends_consensus::proto::Run;

    fn runs_of(runs: &[(UserId, &[Bytes])]) -> PublishRuns {
        let mut frames = Vec::new();
        let mut out = Vec::new();
        for (owner, run) in runs {
            let bytes: Vec<u8> = run.concat();
            out.push(Run { owner: *owner, len: bytes.len() as u32 });
            frames.extend(bytes);
        }
        PublishRuns { frames: frames.into(), runs: out }
    }

    fn delivered(runs: PublishRuns) -> Result<Vec<(UserId, Bytes, Bytes, usize)>, String> {
        let mut out = Vec::new();
        for_each_run(runs, |owner, channel, frames, count| {
            out.push((owner, Bytes::copy_from_slice(channel), frames.clone(), count))
        })?;
        Ok(out)
    }

    #[test]
    fn given_runs_then_each_is_delivered_whole_with_its_owner_channel_and_count() {
        let (a1, a2, b) =
            (encode_publish(b"i", b"a", b"1"), encode_publish(b"i", b"a", b"22"), encode_publish(b"i", b"b", b""));
        let got = delivered(runs_of(&[(7, &[a1.clone(), a2.clone()]), (u32::MAX, &[b.clone()])])).unwrap();
        let want = vec![
            (7, Bytes::from_static(b"a"), Bytes::from([&a1[..], &a2[..]].concat()), 2),
            (u32::MAX, Bytes::from_static(b"b"), b, 1),
        ];
        assert_eq!(got, want);
        assert_eq!(delivered(runs_of(&[])).unwrap(), vec![]);
    }

    #[test]
    fn given_malformed_runs_then_nothing_after_the_fault_is_delivered_and_the_error_says_why() {
        let a = encode_publish(b"i", b"a", b"payload");
        let b = encode_publish(b"i", b"b", b"payload");
        let mut long = runs_of(&[(1, &[a.clone()])]);
        long.runs[0].len += 1;
        assert_eq!(delivered(long).unwrap_err(), format!("a run of {} bytes where {} are left", a.len() + 1, a.len()));
        let mut trailing = runs_of(&[(1, &[a.clone(), a.clone()])]);
        trailing.runs[0].len = a.len() as u32;
        assert_eq!(delivered(trailing).unwrap_err(), format!("{} bytes of frames after the last run", a.len()));
        let mut cut = runs_of(&[(1, &[a.clone()])]);
        cut.frames = cut.frames.slice(..a.len() - 1);
        cut.runs[0].len -= 1;
        assert_eq!(delivered(cut).unwrap_err(), "malformed PUBLISH frame: frame longer than the data");
        let mixed = runs_of(&[(1, &[a.clone(), b])]);
        assert_eq!(delivered(mixed).unwrap_err(), "a run with frames on more than one channel");
        let subscribe = runs_of(&[(1, &[encode_subscribe(b"i", b"a")])]);
        assert_eq!(delivered(subscribe).unwrap_err(), "SUBSCRIBE frame instead of PUBLISH");
        let empty = PublishRuns { frames: Bytes::new(), runs: vec![Run { owner: 1, len: 0 }] };
        assert_eq!(delivered(empty).unwrap_err(), "an empty run");
        let bad_opcode = runs_of(&[(1, &[Bytes::from_static(&[0, 0, 0, 5, 99])])]);
        assert_eq!(delivered(bad_opcode).unwrap_err(), "unknown opcode 99");
    }

    #[tokio::test]
    async fn given_a_peer_without_runs_support_then_chunks_use_the_kinds_every_version_knows() {
        let fanout = crate::routing::fanout::Fanout::new(100);
        let (queue, _control) = fanout.add_link(2);
        fanout.set_peer_interest(
            fanout.open_inbound(2),
            vec![Interest { channel: "c".into(), owner: 1, subscribed: true }],
            true,
        );
        let publish = |payload: &str| PublishFrame::new(b"ident", b"c", payload.as_bytes());

        fanout.forward(1, &publish("x"), None);
        let one = chunk_frame(queue.next_chunk().await, false);
        assert!(matches!(one.kind, Some(peer_frame::Kind::Publish(p)) if p.owner == 1 && p.channel == "c"));

        fanout.forward(1, &publish("x"), None);
        fanout.forward(1, &publish("y"), None);
        let two = chunk_frame(queue.next_chunk().await, false);
        assert!(matches!(two.kind, Some(peer_frame::Kind::Batch(b)) if b.publishes.len() == 2));

        fanout.forward(1, &publish("x"), None);
        fanout.forward(1, &publish("y"), None);
        let Some(peer_frame::Kind::Runs(runs)) = chunk_frame(queue.next_chunk().await, true).kind else {
            panic!("expected runs")
        };
        assert_eq!(delivered(runs).unwrap()[0].3, 2, "one run of two frames");
    }
}
