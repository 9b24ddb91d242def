//! Everything between nodes on the fan-out side: one outbound `Link` stream
//! per peer (interest replay, interest changes, publishes as runs), the
//! inbound service that applies a peer's interest and delivers its publishes
//! locally, the per-peer queues (`links`) and the runs format (`runs`).
//! Raft's RPCs are in the consensus crate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hpfriends_consensus::cluster_tls::{peer_id, ClusterTls, RequirePeer};
use hpfriends_consensus::{ConsensusNode, NodeId};
use proto::fanout::fanout_client::FanoutClient;
use proto::fanout::fanout_server::{Fanout as FanoutRpc, FanoutServer};
use proto::fanout::{peer_frame, Interest, InterestSet, LinkClosed, PeerFrame, PublishRuns};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::routing::Switchboard;
use peers::{LinkQueue, LinkState, Peers};
use runs::{for_each_run, RunsError, MAX_PEER_MESSAGE};

pub(crate) mod copies;
pub mod peers;
pub mod proto;
pub(crate) mod report;
pub mod runs;

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub struct FanoutService {
    switchboard: Arc<Switchboard>,
    peers: Arc<Peers>,
    // Registered once: the receive path does no registry lookups.
    delivered: metrics::Counter,
    delivered_bytes: metrics::Counter,
    /// Ends inbound links, so the graceful gRPC shutdown need not wait for
    /// peers to hang up.
    shutdown: CancellationToken,
}

pub fn service(
    switchboard: Arc<Switchboard>,
    peers: Arc<Peers>,
    tls: ClusterTls,
    shutdown: CancellationToken,
) -> InterceptedService<FanoutServer<FanoutService>, RequirePeer> {
    let server = FanoutServer::new(FanoutService {
        switchboard,
        peers,
        shutdown,
        delivered: metrics::counter!(crate::telemetry::MESSAGES_DELIVERED.name),
        delivered_bytes: metrics::counter!(crate::telemetry::BYTES_DELIVERED.name),
    })
    .max_decoding_message_size(MAX_PEER_MESSAGE);
    InterceptedService::new(server, RequirePeer(tls))
}

impl FanoutService {
    /// Delivers a peer's publishes locally, run by run; counted once per
    /// message from the peer. Stops at a malformed run.
    fn deliver(&self, runs: PublishRuns) -> Result<(), RunsError> {
        let (mut messages, mut bytes) = (0, 0);
        let result = for_each_run(runs, |owner, channel, frames, count| {
            let d = self.switchboard.publish_from_peer(owner, channel, frames, count as u64);
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
        let peers = &self.peers;
        // This stream's interest is its own: a second stream for the same peer
        // (a reconnect, or a duplicate) replaces it, and closing the older one
        // leaves the newer one's interest in place.
        let link = peers.open_inbound(peer);
        peers.peer_connected(peer);
        tracing::info!(peer, "fan-out link from peer opened");
        let result = loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = self.shutdown.cancelled() => break Ok(Response::new(LinkClosed {})),
            };
            match message {
                Ok(Some(PeerFrame { kind: Some(kind) })) => match kind {
                    peer_frame::Kind::Replay(set) => peers.set_peer_interest(link, set.entries),
                    peer_frame::Kind::Interest(change) => peers.apply_peer_interest(link, change),
                    peer_frame::Kind::Runs(runs) => {
                        // A broken run ends the link; the peer reconnects and replays.
                        if let Err(e) = self.deliver(runs) {
                            let e = format!("malformed publish runs: {e}");
                            tracing::warn!(peer, "closing fan-out link from peer: {e}");
                            break Err(Status::invalid_argument(e));
                        }
                    }
                    peer_frame::Kind::Dropped(set) => {
                        let lost: Vec<_> = set.entries.into_iter().map(|i| (i.channel, i.owner)).collect();
                        let closed = self.switchboard.close_lossy(&lost);
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
        peers.forget_peer(link);
        tracing::info!(peer, "fan-out link from peer closed");
        result
    }
}

/// Keeps one outbound link per other member of the Raft membership.
pub async fn maintain_links(
    node: Arc<ConsensusNode>,
    switchboard: Arc<Switchboard>,
    peers: Arc<Peers>,
    shutdown: CancellationToken,
) {
    let mut metrics = node.metrics();
    let mut running: HashMap<NodeId, (String, CancellationToken)> = HashMap::new();
    loop {
        let members = other_members(&metrics.borrow_and_update(), node.id());
        running.retain(|id, (addr, stop)| {
            let keep = members.get(id) == Some(addr);
            if !keep {
                stop.cancel();
                peers.remove_link(*id);
            }
            keep
        });
        for (id, addr) in members {
            if running.contains_key(&id) {
                continue;
            }
            let stop = shutdown.child_token();
            let (queue, control) = peers.add_link(id);
            tokio::spawn(run_link(
                addr.clone(),
                queue,
                control,
                switchboard.clone(),
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

/// The other members of the Raft membership, with their cluster addresses.
fn other_members(m: &hpfriends_consensus::RaftMetrics, own: NodeId) -> HashMap<NodeId, String> {
    m.membership_config
        .nodes()
        .filter(|(id, _)| **id != own)
        .map(|(id, info)| (*id, info.cluster_addr.clone()))
        .collect()
}

/// Messages handed to gRPC and not yet encoded, per link.
const LINK_FRAMES_IN_FLIGHT: usize = 8;
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
    switchboard: Arc<Switchboard>,
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
        // waiting here (a chunk of up to 256 KiB each) would hold a `dropped`
        // notice back until after later subscribers joined.
        let (tx, rx) = mpsc::channel::<PeerFrame>(LINK_FRAMES_IN_FLIGHT);
        // The replay goes first; changes queued before it are already in it.
        let replay = switchboard.with_local_interest(|pairs| {
            while control.try_recv().is_ok() {}
            let entries =
                pairs.into_iter().map(|(channel, owner)| Interest { channel, owner, subscribed: true }).collect();
            let set = InterestSet { entries };
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
                    PeerFrame { kind: Some(peer_frame::Kind::Runs(chunk.into_runs())) }
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
                let notice = InterestSet { entries };
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
