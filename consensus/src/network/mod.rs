//! Outbound Raft RPCs to other members over tonic gRPC on mutually
//! authenticated TLS ([`ClusterTls`]). One lazily connected channel per peer,
//! reused for every RPC.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::cluster_tls::{ClusterTls, ConnectError};
use crate::proto::raft_client::RaftClient;
use crate::proto::RaftPayload;
use crate::{NodeId, NodeInfo, TypeConfig};

pub type PeerRpc = RaftClient<InterceptedService<Channel, ClusterTls>>;

/// A client for the Raft service of the node at `cluster_addr`.
pub fn connect(cluster_addr: &str, tls: ClusterTls) -> Result<PeerRpc, ConnectError> {
    Ok(RaftClient::with_interceptor(tls.channel(cluster_addr)?, tls)
        // Snapshots of a large graph exceed tonic's 4 MiB default.
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024))
}

#[derive(Clone)]
pub struct Network {
    pub tls: ClusterTls,
    /// Bytes of log entries sent to peers, each send once.
    pub entries_sent: Arc<AtomicU64>,
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    tls: ClusterTls,
    rpc: Result<PeerRpc, ConnectError>,
    entries_sent: Arc<AtomicU64>,
    /// Entries still on their way to the peer. openraft gives every
    /// AppendEntries the heartbeat interval (100 ms) and drops the call
    /// after it; megabytes of entries (one large `apply`) take longer to
    /// encode, send and store, so each try started over and one never got
    /// through to a busy peer. The send runs as its own task with a deadline
    /// that grows with its size, and openraft's next try of the same request
    /// waits for it instead of starting over.
    sending: Option<Sending>,
}

type EntriesReply = Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>>;

struct Sending {
    /// The request: vote, the entry before the first, the last, how many.
    request: (openraft::Vote<NodeId>, Option<crate::LogId>, Option<crate::LogId>, usize),
    /// The reply, and whether the send ran out of time.
    reply: tokio::task::JoinHandle<(EntriesReply, bool)>,
}

/// The deadline of a send of `bytes` of entries: openraft's heartbeat
/// interval, plus a second per MiB.
fn entries_deadline(heartbeat: Duration, bytes: usize) -> Duration {
    heartbeat + Duration::from_secs_f64(bytes as f64 / (1 << 20) as f64)
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        let (addr, tls) = (node.cluster_addr.clone(), self.tls.clone());
        let entries_sent = self.entries_sent.clone();
        PeerClient { target, rpc: connect(&addr, tls.clone()), addr, tls, entries_sent, sending: None }
    }
}

pub fn encode<T: Serialize>(value: &T) -> RaftPayload {
    RaftPayload { payload: serde_json::to_vec(value).expect("raft messages serialize").into() }
}

pub fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&payload.payload)
}

/// Which RPC to send; one code path serves all of them.
enum Call {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        call: Call,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let rpc = match &mut self.rpc {
            Ok(rpc) => rpc,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.to_string())))),
        };
        let (reply, timed_out) = send(rpc, call, encode(req), ttl, self.target).await;
        if timed_out {
            self.reconnect();
        }
        reply
    }

    /// A new connection for the next call: on a link that drops packets
    /// each abandoned call would leave a stream and its reset queued in the
    /// old one, and the peer's HTTP/2 would take the burst arriving when the
    /// link heals for an attack (a GOAWAY after 20 such resets).
    fn reconnect(&mut self) {
        self.rpc = connect(&self.addr, self.tls.clone());
    }
}

/// Sends one encoded request and decodes the answer; true if it ran out of
/// `ttl`.
async fn send<Resp, E>(
    rpc: &mut PeerRpc,
    call: Call,
    payload: RaftPayload,
    ttl: Duration,
    target: NodeId,
) -> (Result<Resp, RPCError<NodeId, NodeInfo, E>>, bool)
where
    Resp: DeserializeOwned,
    E: std::error::Error + DeserializeOwned,
{
    let sent = async {
        match call {
            Call::AppendEntries => rpc.append_entries(payload).await,
            Call::Vote => rpc.vote(payload).await,
            Call::InstallSnapshot => rpc.install_snapshot(payload).await,
        }
    };
    let reply = match tokio::time::timeout(ttl, sent).await {
        Err(_) => {
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {ttl:?}"));
            return (Err(RPCError::Network(NetworkError::new(&e))), true);
        }
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
            return (Err(RPCError::Unreachable(Unreachable::new(&status))), false);
        }
        Ok(Err(status)) => return (Err(RPCError::Network(NetworkError::new(&status))), false),
        Ok(Ok(reply)) => reply.into_inner(),
    };
    let answer = match decode::<Result<Resp, E>>(&reply) {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
        Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
    };
    (answer, false)
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        if rpc.entries.is_empty() {
            return self.call(Call::AppendEntries, &rpc, option.hard_ttl()).await;
        }
        let request = (rpc.vote, rpc.prev_log_id, rpc.entries.last().map(|e| e.log_id), rpc.entries.len());
        if self.sending.as_ref().is_none_or(|s| s.request != request) {
            if let Some(abandoned) = self.sending.take() {
                abandoned.reply.abort();
                self.reconnect();
            }
            let mut client = match &self.rpc {
                Ok(rpc) => rpc.clone(),
                Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.to_string())))),
            };
            let (target, heartbeat, sent) = (self.target, option.hard_ttl(), self.entries_sent.clone());
            let reply = tokio::spawn(async move {
                // Off the runtime's workers: megabytes of JSON.
                let payload = match tokio::task::spawn_blocking(move || encode(&rpc)).await {
                    Ok(payload) => payload,
                    Err(e) => return (Err(RPCError::Network(NetworkError::new(&e))), false),
                };
                sent.fetch_add(payload.payload.len() as u64, Ordering::Relaxed);
                let ttl = entries_deadline(heartbeat, payload.payload.len());
                send(&mut client, Call::AppendEntries, payload, ttl, target).await
            });
            self.sending = Some(Sending { request, reply });
        }
        let sending = self.sending.as_mut().expect("set above");
        // openraft may drop this call at its deadline: the send goes on.
        let finished = (&mut sending.reply).await;
        self.sending = None;
        let (reply, timed_out) = finished.unwrap_or_else(|e| (Err(RPCError::Network(NetworkError::new(&e))), false));
        if timed_out {
            self.reconnect();
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Call::InstallSnapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Call::Vote, &rpc, option.hard_ttl()).await
    }
}
