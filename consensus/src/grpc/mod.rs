//! The inbound Raft service on the cluster port.

use openraft::error::ClientWriteError;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status};

use crate::network::{decode, encode};
use crate::peer_auth::{PeerAuth, RequirePeer};
use crate::proto::raft_server::{Raft as RaftRpc, RaftServer};
use crate::proto::RaftPayload;
use crate::{membership, NodeId, NodeInfo, Raft, Request as WriteRequest, Response as WriteResponse};

pub struct RaftService {
    raft: Raft,
}

pub type AuthenticatedRaftService = InterceptedService<RaftServer<RaftService>, RequirePeer>;

/// The service to mount on the cluster port; refuses unauthenticated peers.
pub fn service(raft: Raft, auth: PeerAuth) -> AuthenticatedRaftService {
    let server = RaftServer::new(RaftService { raft })
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);
    InterceptedService::new(server, RequirePeer(auth))
}

fn bad_request(e: serde_json::Error) -> Status {
    Status::invalid_argument(format!("cannot decode the request: {e}"))
}

type Reply = Result<Response<RaftPayload>, Status>;

/// A forwarded write's outcome, as the leader reports it.
pub type WriteOutcome = Result<WriteResponse, ClientWriteError<NodeId, NodeInfo>>;
/// A forwarded join's outcome.
pub type JoinOutcome = Result<(), String>;
/// The log index a linearizable read waits for, or why there is none.
pub type ReadIndexOutcome = Result<Option<u64>, String>;

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Reply {
        let rpc = decode(req.get_ref()).map_err(bad_request)?;
        Ok(Response::new(encode(&self.raft.append_entries(rpc).await)))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Reply {
        let rpc = decode(req.get_ref()).map_err(bad_request)?;
        Ok(Response::new(encode(&self.raft.vote(rpc).await)))
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Reply {
        let rpc = decode(req.get_ref()).map_err(bad_request)?;
        Ok(Response::new(encode(&self.raft.install_snapshot(rpc).await)))
    }

    async fn client_write(&self, req: Request<RaftPayload>) -> Reply {
        let write: WriteRequest = decode(req.get_ref()).map_err(bad_request)?;
        let outcome: WriteOutcome = match self.raft.client_write(write).await {
            Ok(resp) => Ok(resp.data),
            Err(openraft::error::RaftError::APIError(e)) => Err(e),
            Err(openraft::error::RaftError::Fatal(f)) => return Err(Status::unavailable(f.to_string())),
        };
        Ok(Response::new(encode(&outcome)))
    }

    async fn read_index(&self, _req: Request<RaftPayload>) -> Reply {
        let outcome: ReadIndexOutcome = match self.raft.ensure_linearizable().await {
            Ok(id) => Ok(id.map(|l| l.index)),
            Err(e) => Err(format!("not the leader: {e}")),
        };
        Ok(Response::new(encode(&outcome)))
    }

    async fn join(&self, req: Request<RaftPayload>) -> Reply {
        let (id, info): (NodeId, NodeInfo) = decode(req.get_ref()).map_err(bad_request)?;
        let outcome: JoinOutcome = membership::join_here(&self.raft, id, info).await;
        Ok(Response::new(encode(&outcome)))
    }
}
