//! What a node tells the others about itself (`proto/nodes.proto`): ready or
//! not, its hpfeeds connections, which of the asked idents are logged in
//! there, and the activity of the keys asked for (`hpfeeds/activity.rs`). The web app gathers every member's report for the Operator page and
//! for each key's "connected on"; a node that does not answer is named, not
//! left out.

use std::time::Duration;

use super::proto::nodes::nodes_client::NodesClient;
use super::proto::nodes::nodes_server::{Nodes, NodesServer};
use super::proto::nodes::{
    FailedLogin, IdentConnections, KeyActivity, KeyOf, LiveConnection, NodeReport, ReportRequest,
};
use hpfriends_consensus::cluster_tls::{ClusterTls, RequirePeer};
use hpfriends_consensus::NodeId;
use tonic::codegen::InterceptedService;
use tonic::{Request, Response, Status};

use crate::state::AppState;

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
        let ReportRequest { idents, activity_of } = req.into_inner();
        if idents.len() > MAX_IDENTS || activity_of.len() > MAX_IDENTS {
            return Err(Status::invalid_argument(format!("at most {MAX_IDENTS} idents")));
        }
        Ok(Response::new(local_report(&self.state, &idents, &activity_of)))
    }
}

/// This node's report.
pub fn local_report(state: &AppState, idents: &[String], activity_of: &[KeyOf]) -> NodeReport {
    let readiness = state.readiness();
    let live = idents
        .iter()
        .filter_map(|ident| {
            let connections = state.connections.live_connections(ident);
            (connections > 0).then(|| IdentConnections { ident: ident.clone(), connections })
        })
        .collect();
    NodeReport {
        node_id: state.node.id(),
        ready: readiness.ready,
        hpfeeds_connections: state.connections.open_connections() as u64,
        unreachable_peers: readiness.unreachable_peers,
        live,
        activity: activity_of.iter().map(|key| key_activity(state, key)).collect(),
    }
}

fn key_activity(state: &AppState, key: &KeyOf) -> KeyActivity {
    let a = state.connections.activity.of(&key.ident, key.owner);
    KeyActivity {
        ident: key.ident.clone(),
        published: a.counts.published,
        published_bytes: a.counts.published_bytes,
        delivered: a.counts.delivered,
        delivered_bytes: a.counts.delivered_bytes,
        last_publish: a.counts.last_publish.unwrap_or(0),
        last_subscribe: a.counts.last_subscribe.unwrap_or(0),
        live: a
            .live
            .into_iter()
            .map(|c| LiveConnection { remote: c.remote.to_string(), since: c.since, channels: c.channels })
            .collect(),
        failed_logins: a
            .failed_logins
            .into_iter()
            .map(|f| FailedLogin { at: f.at, remote: f.remote.to_string(), reason: f.reason.to_string() })
            .collect(),
    }
}

/// Every member's report, this node's own included, by node id; a member
/// that does not answer within a second has the reason instead.
pub async fn gather(
    state: &AppState,
    idents: &[String],
    activity_of: &[KeyOf],
) -> Vec<(NodeId, Result<NodeReport, String>)> {
    let members: Vec<(NodeId, String)> = {
        let m = state.node.metrics().borrow().clone();
        m.membership_config.nodes().map(|(id, info)| (*id, info.cluster_addr.clone())).collect()
    };
    let own = state.node.id();
    let tls = state.node.cluster_tls().clone();
    let asks = members.into_iter().map(|(id, addr)| {
        let tls = tls.clone();
        let request = ReportRequest { idents: idents.to_vec(), activity_of: activity_of.to_vec() };
        async move {
            if id == own {
                return (id, Ok(local_report(state, idents, activity_of)));
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
