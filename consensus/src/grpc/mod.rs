//! The inbound Raft service on the cluster port.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use openraft::error::{ClientWriteError, ForwardToLeader};
use openraft::raft::AppendEntriesRequest;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status};

use crate::cluster_tls::RequirePeer;
use crate::membership::JoinError;
use crate::network::{decode, encode};
use crate::pre_vote::{self, PreVoteOutcome, PreVoteRequest};
use crate::proto::raft_server::{Raft as RaftRpc, RaftServer};
use crate::proto::RaftPayload;
use crate::{
    ConsensusNode, NodeId, NodeInfo, Request as WriteRequest, Response as WriteResponse, TypeConfig, WriteError,
};

pub struct RaftService {
    node: Arc<ConsensusNode>,
}

/// What the RPC handlers and the node tell each other.
#[derive(Default)]
pub struct Signals {
    /// Set while this (draining) leader hands off: forwarded writes are told
    /// to retry with the next leader.
    pub handing_off: AtomicBool,
    /// The highest commit index a leader has told this node about.
    pub known_commit: AtomicU64,
}

pub type AuthenticatedRaftService = InterceptedService<RaftServer<RaftService>, RequirePeer>;

/// The service to mount on the cluster port; refuses unauthenticated peers.
pub fn service(node: Arc<ConsensusNode>) -> AuthenticatedRaftService {
    let tls = node.cluster_tls().clone();
    let server = RaftServer::new(RaftService { node })
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);
    InterceptedService::new(server, RequirePeer(tls))
}

fn bad_request(e: serde_json::Error) -> Status {
    Status::invalid_argument(format!("cannot decode the request: {e}"))
}

type Reply = Result<Response<RaftPayload>, Status>;

/// A forwarded write's outcome, as the leader reports it.
pub type WriteOutcome = Result<WriteResponse, ClientWriteError<NodeId, NodeInfo>>;
/// A join's outcome: the cluster's id once the node is a voter.
pub type JoinOutcome = Result<String, JoinError>;
/// The log index a linearizable read waits for, or why there is none.
pub type ReadIndexOutcome = Result<Option<u64>, String>;

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Reply {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_request)?;
        if let Some(commit) = rpc.leader_commit {
            self.node.signals.known_commit.fetch_max(commit.index, Ordering::AcqRel);
        }
        Ok(Response::new(encode(&self.node.raft().append_entries(rpc).await)))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Reply {
        let rpc = decode(req.get_ref()).map_err(bad_request)?;
        Ok(Response::new(encode(&self.node.raft().vote(rpc).await)))
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Reply {
        let rpc = decode(req.get_ref()).map_err(bad_request)?;
        Ok(Response::new(encode(&self.node.raft().install_snapshot(rpc).await)))
    }

    async fn client_write(&self, req: Request<RaftPayload>) -> Reply {
        let write: WriteRequest = decode(req.get_ref()).map_err(bad_request)?;
        if self.node.signals.handing_off.load(Ordering::Acquire) {
            let retry: WriteOutcome =
                Err(ClientWriteError::ForwardToLeader(ForwardToLeader { leader_id: None, leader_node: None }));
            return Ok(Response::new(encode(&retry)));
        }
        let outcome: WriteOutcome = match self.node.raft().client_write(write).await {
            Ok(resp) => Ok(resp.data),
            Err(openraft::error::RaftError::APIError(e)) => Err(e),
            Err(openraft::error::RaftError::Fatal(f)) => return Err(Status::unavailable(f.to_string())),
        };
        Ok(Response::new(encode(&outcome)))
    }

    async fn read_index(&self, _req: Request<RaftPayload>) -> Reply {
        let outcome: ReadIndexOutcome = match self.node.raft().ensure_linearizable().await {
            Ok(id) => Ok(id.map(|l| l.index)),
            Err(e) => Err(format!("not the leader: {e}")),
        };
        Ok(Response::new(encode(&outcome)))
    }

    async fn command_version(&self, _req: Request<RaftPayload>) -> Reply {
        Ok(Response::new(encode(&self.node.command_version())))
    }

    async fn campaign(&self, _req: Request<RaftPayload>) -> Reply {
        tracing::info!("the draining leader asked this node to start an election");
        let outcome: Result<(), String> = self.node.raft().trigger().elect().await.map_err(|e| e.to_string());
        Ok(Response::new(encode(&outcome)))
    }

    async fn pre_vote(&self, req: Request<RaftPayload>) -> Reply {
        let ask: PreVoteRequest = decode(req.get_ref()).map_err(bad_request)?;
        let seen = pre_vote::seen(self.node.raft()).await.ok_or_else(|| Status::unavailable("Raft has stopped"))?;
        let own = self.node.log_store().last_log_id().map_err(|e| Status::internal(e.to_string()))?;
        let outcome: PreVoteOutcome = pre_vote::answer(seen, own, &ask, crate::node::TIMERS);
        tracing::debug!(candidate = ask.candidate, ?outcome, "pre-vote asked");
        Ok(Response::new(encode(&outcome)))
    }

    async fn join(&self, req: Request<RaftPayload>) -> Reply {
        let (id, info): (NodeId, NodeInfo) = decode(req.get_ref()).map_err(bad_request)?;
        // Through the leader, wherever it is: a joining node may ask any member.
        let joined = self.node.join(id, info).await.map_err(|e| match e {
            WriteError::Unavailable(why) => JoinError::Unavailable(why),
            WriteError::Membership(why) => JoinError::Refused(why),
            other => JoinError::Refused(other.to_string()),
        });
        let outcome: JoinOutcome = joined.and_then(|()| {
            self.node
                .cluster_id()
                .ok_or_else(|| JoinError::Unavailable("this member does not know its cluster id".into()))
        });
        Ok(Response::new(encode(&outcome)))
    }
}
