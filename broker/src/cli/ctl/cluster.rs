//! `ctl cluster …`

use super::client::{Api, Output};
use super::ClusterCmd;
use crate::app::types::{ClusterStatus, Done, LeaveRequest};

/// A value or `null`, as the JSON of this answer shows it.
fn or_null(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

pub async fn run(api: &Api, cmd: &ClusterCmd) -> anyhow::Result<Output> {
    match cmd {
        ClusterCmd::Status => {
            let s: ClusterStatus = api.get("/api/v1/cluster/status").await?;
            let mut text = format!(
                "node {} is {} (term {}, leader {}, last applied {})",
                s.node_id,
                s.role,
                s.term,
                or_null(s.leader),
                or_null(s.last_applied)
            );
            for n in &s.nodes {
                text.push_str(&format!(
                    "\n  node {}{}{}  lag {}  http {}  hpfeeds {}  cluster {}",
                    n.id,
                    if n.leader { " (leader)" } else { "" },
                    if n.voter { "" } else { " (learner)" },
                    or_null(n.lag),
                    n.http_addr.as_deref().unwrap_or_default(),
                    n.hpfeeds_addr.as_deref().unwrap_or_default(),
                    n.cluster_addr.as_deref().unwrap_or_default()
                ));
            }
            Output::new(&s, text)
        }
        ClusterCmd::Leave { node_id } => {
            let done: Done = api.post("/api/v1/cluster/leave", &LeaveRequest { node_id: *node_id }).await?;
            Output::new(&done, format!("node {node_id} left the cluster"))
        }
    }
}
