//! Copies of the archive on every node (`broker/proto/archive.proto`). Each
//! node follows every peer with one `Follow` stream: it says how far it holds
//! each publishing node's messages (`Mark`s), and the peer sends what it holds
//! past them, of every publishing node, then what it archives next. So a
//! message reaches the other archives as soon as its node has written it, a
//! node that was down catches up from whichever peer is up when it returns,
//! and one that joins gets everything still kept. The receiving archive keeps
//! a node's messages in order of their numbers and each once
//! (`archive::keep_copy`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hpfriends_consensus::cluster_tls::{peer_id, ClusterTls, RequirePeer};
use hpfriends_consensus::{ConsensusNode, NodeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status};

use super::proto::archive::archive_client::ArchiveClient;
use super::proto::archive::archive_server::{Archive as ArchiveRpc, ArchiveServer};
use super::proto::archive::{FollowRequest, Mark, MarksReply, MarksRequest, Stored, StoredBatch};
use crate::archive::{Archive, Id, Message};
use crate::telemetry;

/// One batch of a stream: at most this many messages or payload bytes.
const BATCH_MESSAGES: usize = 1024;
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches sent ahead of the follower's reading.
const IN_FLIGHT: usize = 4;
/// A stream with nothing new looks again at least this often.
const IDLE_LOOK: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_secs(1);

pub struct CopyService {
    archive: Arc<Archive>,
    shutdown: CancellationToken,
}

pub fn service(
    archive: Arc<Archive>,
    tls: ClusterTls,
    shutdown: CancellationToken,
) -> InterceptedService<ArchiveServer<CopyService>, RequirePeer> {
    InterceptedService::new(
        ArchiveServer::new(CopyService { archive, shutdown }).max_encoding_message_size(2 * BATCH_BYTES + 65_536),
        RequirePeer(tls),
    )
}

#[tonic::async_trait]
impl ArchiveRpc for CopyService {
    type FollowStream = ReceiverStream<Result<StoredBatch, Status>>;

    async fn follow(&self, req: Request<FollowRequest>) -> Result<Response<Self::FollowStream>, Status> {
        let peer: NodeId = peer_id(req.metadata()).ok_or_else(|| Status::unauthenticated("no peer id"))?;
        let mut from: HashMap<u64, u64> = req.into_inner().have.into_iter().map(|m| (m.node, m.next_seq)).collect();
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let (archive, shutdown) = (self.archive.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let mut written = archive.watch_written();
            loop {
                // Every publishing node this archive holds messages of, from where the follower is.
                let origins: Vec<(u64, u64)> = archive
                    .marks()
                    .into_iter()
                    .filter(|(node, mark)| *node != peer && from.get(node).copied().unwrap_or(0) < *mark)
                    .map(|(node, _)| (node, from.get(&node).copied().unwrap_or(0)))
                    .collect();
                let mut sent = false;
                for (node, seq) in origins {
                    let a = archive.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        a.scan_origin(node, seq, None, BATCH_MESSAGES, BATCH_BYTES)
                    });
                    let scanned = match read.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(Status::internal(format!("reading the archive: {e}")))).await;
                            return;
                        }
                        Err(_) => return,
                    };
                    from.insert(node, scanned.next);
                    if scanned.messages.is_empty() {
                        continue;
                    }
                    let batch = StoredBatch { messages: scanned.messages.into_iter().map(to_proto).collect() };
                    if tx.send(Ok(batch)).await.is_err() {
                        return; // the follower went
                    }
                    sent = true;
                }
                if !sent {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tx.closed() => return,
                        _ = written.changed() => {}
                        _ = tokio::time::sleep(IDLE_LOOK) => {}
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn marks(&self, _: Request<MarksRequest>) -> Result<Response<MarksReply>, Status> {
        let have = self.archive.marks().into_iter().map(|(node, next_seq)| Mark { node, next_seq }).collect();
        Ok(Response::new(MarksReply { have }))
    }
}

fn to_proto(m: Message) -> Stored {
    Stored {
        node: m.id.node,
        seq: m.id.seq,
        time_us: m.id.time_us,
        owner: m.owner,
        position: m.position,
        ident: m.ident,
        channel: m.channel,
        payload: m.payload,
    }
}

fn from_proto(s: Stored) -> Message {
    Message {
        id: Id { time_us: s.time_us, node: s.node, seq: s.seq },
        owner: s.owner,
        position: s.position,
        ident: s.ident,
        channel: s.channel,
        payload: s.payload,
    }
}

/// How long a reader's node waits for a peer to say how far its archive goes.
const ASK_MARKS: Duration = Duration::from_secs(1);
/// How long it waits for the copies of what a peer holds and it lacks.
const CATCH_UP: Duration = Duration::from_secs(5);

/// What a read of this node's archive may lack, after `catch_up`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Members that did not say how far their archives go: what only they
    /// hold (their own messages not copied yet) may be missing.
    pub unreachable: Vec<NodeId>,
    /// Publishing nodes of which a peer holds messages this archive has not
    /// copied yet (after waiting CATCH_UP for them).
    pub not_copied: Vec<u64>,
}

/// Before a reader's first page: asks every other member how far its archive
/// goes and, where one holds more than this archive (a node back from being
/// down, or new, still copying), waits for those copies to arrive from it.
pub async fn catch_up(node: &ConsensusNode, archive: &Archive) -> Coverage {
    let members = super::other_members(&node.metrics().borrow(), node.id());
    let asks = members.into_iter().map(|(id, addr)| {
        let tls = node.cluster_tls().clone();
        async move {
            let ask = async {
                let channel = tls.connect_channel(&addr).await.ok()?;
                let mut client = ArchiveClient::with_interceptor(channel, tls.clone());
                client.marks(MarksRequest {}).await.ok().map(|r| r.into_inner().have)
            };
            (id, tokio::time::timeout(ASK_MARKS, ask).await.ok().flatten())
        }
    });
    let mut coverage = Coverage::default();
    // Per publishing node, the furthest a peer holds its messages.
    let mut wanted: HashMap<u64, u64> = HashMap::new();
    for (id, have) in futures::future::join_all(asks).await {
        match have {
            None => coverage.unreachable.push(id),
            Some(have) => {
                for m in have.into_iter().filter(|m| m.node != node.id()) {
                    let w = wanted.entry(m.node).or_default();
                    *w = (*w).max(m.next_seq);
                }
            }
        }
    }
    let lacking = |marks: &HashMap<u64, u64>| -> Vec<u64> {
        let mut l: Vec<u64> = wanted
            .iter()
            .filter(|(origin, want)| marks.get(origin).copied().unwrap_or(0) < **want)
            .map(|(origin, _)| *origin)
            .collect();
        l.sort_unstable();
        l
    };
    let mut written = archive.watch_written();
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let lacks = lacking(&archive.marks());
        if lacks.is_empty() {
            break;
        }
        if !matches!(tokio::time::timeout_at(deadline, written.changed()).await, Ok(Ok(()))) {
            coverage.not_copied = lacks;
            break;
        }
    }
    coverage.unreachable.sort_unstable();
    coverage
}

/// Follows every other member's archive while this node runs.
pub async fn follow_peers(node: Arc<ConsensusNode>, archive: Arc<Archive>, shutdown: CancellationToken) {
    let mut metrics = node.metrics();
    let mut running: HashMap<NodeId, (String, CancellationToken)> = HashMap::new();
    loop {
        let members = super::other_members(&metrics.borrow_and_update(), node.id());
        running.retain(|id, (addr, stop)| {
            let keep = members.get(id) == Some(addr);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (id, addr) in members {
            if running.contains_key(&id) {
                continue;
            }
            let stop = shutdown.child_token();
            tokio::spawn(follow(id, addr.clone(), archive.clone(), node.cluster_tls().clone(), stop.clone()));
            running.insert(id, (addr, stop));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// One peer's stream, followed until `stop`; after a break, again from this
/// archive's marks.
async fn follow(peer: NodeId, addr: String, archive: Arc<Archive>, tls: ClusterTls, stop: CancellationToken) {
    let lag = metrics::gauge!(telemetry::ARCHIVE_COPY_LAG.name, "from" => peer.to_string());
    while !stop.is_cancelled() {
        let stream = async {
            let channel = tls.connect_channel(&addr).await.map_err(|e| e.to_string())?;
            let mut client = ArchiveClient::with_interceptor(channel, tls.clone())
                .max_decoding_message_size(2 * BATCH_BYTES + 65_536);
            let have = archive.marks().into_iter().map(|(node, next_seq)| Mark { node, next_seq }).collect();
            client.follow(FollowRequest { have }).await.map(Response::into_inner).map_err(|s| s.message().to_string())
        };
        let mut stream = match tokio::select! { _ = stop.cancelled() => return, s = stream => s } {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer, "cannot follow the peer's archive: {e}");
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(RETRY) => continue }
            }
        };
        loop {
            let batch = tokio::select! {
                _ = stop.cancelled() => return,
                b = stream.message() => b,
            };
            match batch {
                Ok(Some(batch)) => {
                    let newest = batch.messages.iter().map(|m| m.time_us).max().unwrap_or(0);
                    archive.copy(peer, batch.messages.into_iter().map(from_proto).collect()).await;
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
                    lag.set(now.saturating_sub(newest) as f64 / 1e6);
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(peer, "the peer's archive stream ended: {}", status.message());
                    break;
                }
            }
        }
        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(RETRY) => {} }
    }
}
