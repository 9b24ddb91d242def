//! Outbound Raft RPCs to other members over tonic gRPC on mutually
//! authenticated TLS ([`ClusterTls`]). One lazily connected channel per peer,
//! reused for every RPC.

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
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    tls: ClusterTls,
    rpc: Result<PeerRpc, ConnectError>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        let (addr, tls) = (node.cluster_addr.clone(), self.tls.clone());
        PeerClient { target, rpc: connect(&addr, tls.clone()), addr, tls }
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
        let payload = encode(req);
        let sent = async {
            match call {
                Call::AppendEntries => rpc.append_entries(payload).await,
                Call::Vote => rpc.vote(payload).await,
                Call::InstallSnapshot => rpc.install_snapshot(payload).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, sent).await {
            Err(_) => {
                // A new connection for the next call: on a link that drops
                // packets each timed-out call would leave a stream and its
                // reset queued in the old one, and the peer's HTTP/2 would
                // take the burst arriving when the link heals for an attack
                // (a GOAWAY after 20 such resets).
                self.rpc = connect(&self.addr, self.tls.clone());
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {ttl:?}"));
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        match decode::<Result<Resp, E>>(&reply) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Call::AppendEntries, &rpc, option.hard_ttl()).await
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
