//! Node-to-node fan-out over gRPC: one outbound `Link` stream per peer
//! (interest replay, interest changes, publishes), and the inbound service
//! that applies a peer's interest and delivers its publishes locally.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hpfriends_consensus::peer_auth::{PeerAuth, RequirePeer, HEADER_NODE};
use hpfriends_consensus::proto::fanout_client::FanoutClient;
use hpfriends_consensus::proto::fanout_server::{Fanout as FanoutRpc, FanoutServer};
use hpfriends_consensus::proto::{peer_frame, Interest, InterestSet, LinkClosed, PeerFrame, Publish, PublishBatch};
use hpfriends_consensus::{ConsensusNode, NodeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

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
    }).max_decoding_message_size(MAX_PEER_MESSAGE);
    InterceptedService::new(server, RequirePeer(auth))
}

impl FanoutService {
    /// Delivers a peer's publishes locally; counters once per batch.
    fn deliver(&self, publishes: impl IntoIterator<Item = Publish>) {
        let (mut messages, mut bytes) = (0, 0);
        for p in publishes {
            let d = self.router.publish_from_peer(p.owner, &p.channel, &p.frame);
            messages += d.delivered;
            bytes += d.delivered * p.frame.len();
        }
        self.delivered.increment(messages as u64);
        self.delivered_bytes.increment(bytes as u64);
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
                    peer_frame::Kind::Replay(set) => fanout.set_peer_interest(peer, set.entries),
                    peer_frame::Kind::Interest(change) => fanout.apply_peer_interest(peer, change),
                    peer_frame::Kind::Publish(p) => self.deliver([p]),
                    peer_frame::Kind::Batch(batch) => self.deliver(batch.publishes),
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

/// Most publishes sent to a peer in one message.
const MAX_BATCH: usize = 256;
/// A batch stops growing at this many frame bytes.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Largest message a peer may send on a link: one publish of any size the
/// hpfeeds limits allow (a batch stays near `MAX_BATCH_BYTES`).
const MAX_PEER_MESSAGE: usize = 256 << 20;

/// `first` alone when the link keeps up; with whatever else is already queued
/// (up to `MAX_BATCH` publishes or `MAX_BATCH_BYTES`) as one message when it is behind.
fn batch_publishes(first: Publish, queue: &mut mpsc::Receiver<Publish>) -> PeerFrame {
    if first.frame.len() >= MAX_BATCH_BYTES {
        return PeerFrame { kind: Some(peer_frame::Kind::Publish(first)) };
    }
    let Ok(second) = queue.try_recv() else {
        return PeerFrame { kind: Some(peer_frame::Kind::Publish(first)) };
    };
    let mut bytes = first.frame.len() + second.frame.len();
    let mut publishes = vec![first, second];
    while publishes.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match queue.try_recv() {
            Ok(p) => {
                bytes += p.frame.len();
                publishes.push(p);
            }
            Err(_) => break,
        }
    }
    PeerFrame { kind: Some(peer_frame::Kind::Batch(PublishBatch { publishes })) }
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
        let (tx, rx) = mpsc::channel::<PeerFrame>(1024);
        // The replay goes first; changes queued before it are already in it.
        let replay = router.with_local_interest(|pairs| {
            while receivers.control.try_recv().is_ok() {}
            let entries =
                pairs.into_iter().map(|(channel, owner)| Interest { channel, owner, subscribed: true }).collect();
            PeerFrame { kind: Some(peer_frame::Kind::Replay(InterestSet { entries })) }
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
                Some(first) = receivers.data.recv() => batch_publishes(first, &mut receivers.data),
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
                if tx.send(PeerFrame { kind: Some(peer_frame::Kind::Dropped(InterestSet { entries })) }).await.is_err()
                {
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
