//! What a node tells the others about itself (`proto/nodes.proto`): ready or
//! not, its hpfeeds connections, and which of the asked idents are logged in
//! there. The web app gathers every member's report for the Operator page and
//! for each key's "connected on"; a node that does not answer is named, not
//! left out.

use std::time::Duration;

use hpfriends_consensus::cluster_tls::{ClusterTls, RequirePeer};
use hpfriends_consensus::NodeId;
use proto::nodes_client::NodesClient;
use proto::nodes_server::{Nodes, NodesServer};
use proto::{IdentConnections, NodeReport, ReportRequest};
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status};

use crate::http::AppState;

/// Generated from `broker/proto/nodes.proto`.
pub mod proto {
    tonic::include_proto!("hpfriends.nodes.v1");
}

/// Idents one request may ask about.
const MAX_IDENTS: usize = 1_000;
/// How long a report may take before its node is named as not answering.
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct ReportService {
    state: AppState,
}

pub fn service(state: AppState, tls: ClusterTls) -> InterceptedService<NodesServer<ReportService>, RequirePeer> {
    InterceptedService::new(NodesServer::new(ReportService { state }), RequirePeer(tls))
}

#[tonic::async_trait]
impl Nodes for ReportService {
    async fn report(&self, req: Request<ReportRequest>) -> Result<Response<NodeReport>, Status> {
        let idents = req.into_inner().idents;
        if idents.len() > MAX_IDENTS {
            return Err(Status::invalid_argument(format!("at most {MAX_IDENTS} idents, not {}", idents.len())));
        }
        Ok(Response::new(local_report(&self.state, &idents)))
    }
}

/// This node's report.
pub fn local_report(state: &AppState, idents: &[String]) -> NodeReport {
    let readiness = crate::http::api::health::readiness(state);
    let live = idents
        .iter()
        .filter_map(|ident| {
            let connections = state.sessions.live_connections(ident);
            (connections > 0).then(|| IdentConnections { ident: ident.clone(), connections })
        })
        .collect();
    NodeReport {
        node_id: state.node.id(),
        ready: readiness.ready,
        hpfeeds_connections: state.sessions.open_connections() as u64,
        unreachable_peers: readiness.unreachable_peers,
        live,
    }
}

/// Every member's report, this node's own included, by node id; a member
/// that does not answer within a second has the reason instead.
pub async fn gather(state: &AppState, idents: &[String]) -> Vec<(NodeId, Result<NodeReport, String>)> {
    let members: Vec<(NodeId, String)> = {
        let m = state.node.metrics().borrow().clone();
        m.membership_config.nodes().map(|(id, info)| (*id, info.cluster_addr.clone())).collect()
    };
    let own = state.node.id();
    let tls = state.node.cluster_tls().clone();
    let asks = members.into_iter().map(|(id, addr)| {
        let tls = tls.clone();
        let request = ReportRequest { idents: idents.to_vec() };
        async move {
            if id == own {
                return (id, Ok(local_report(state, idents)));
            }
            let ask = async {
                let channel = tls.connect_channel(&addr).await.map_err(|e| e.to_string())?;
                let mut client = NodesClient::with_interceptor(channel, tls.clone());
                client.report(request).await.map(Response::into_inner).map_err(|s| s.message().to_string())
            };
            let answer = tokio::time::timeout(REPORT_TIMEOUT, ask)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {REPORT_TIMEOUT:?}")));
            (id, answer)
        }
    });
    futures::future::join_all(asks).await
}
