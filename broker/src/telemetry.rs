//! The process-wide Prometheus recorder behind `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the recorder on first use (several in-process nodes in one test
/// binary share it) and returns the handle that renders the text format.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new().install_recorder().unwrap_or_else(|_| {
            // Another recorder is installed already (only in tests): render an empty set.
            PrometheusBuilder::new().build_recorder().handle()
        });
        describe();
        handle
    })
}

/// HELP texts, and every unlabelled series at zero from the start, so
/// dashboards and `rate()` see them before the first client connects.
fn describe() {
    use metrics::{counter, describe_counter, describe_gauge, gauge};
    for (name, help) in [
        ("hpfeeds_broker_connection_made", "hpfeeds connections accepted"),
        ("hpfeeds_broker_receive_publish_count", "PUBLISH frames received from clients"),
        ("hpfeeds_broker_receive_publish_size", "bytes of PUBLISH payloads received from clients"),
        ("hpfriends_messages_delivered_total", "PUBLISH frames queued to local subscribers"),
        ("hpfriends_bytes_delivered_total", "bytes of PUBLISH frames queued to local subscribers"),
    ] {
        describe_counter!(name, help);
        counter!(name).increment(0);
    }
    for (name, help) in [
        ("hpfeeds_broker_client_connections", "open hpfeeds connections"),
        ("hpfeeds_broker_subscriptions", "channel subscriptions of open connections"),
    ] {
        describe_gauge!(name, help);
        gauge!(name).increment(0.0);
    }
    describe_counter!(
        "hpfeeds_broker_connection_error",
        "connections closed for a reason other than the client leaving, by category (slow_consumer, auth_failed, ...)"
    );
    describe_counter!("hpfriends_fanout_messages_total", "publishes sent to a peer node (taken from its link queue)");
    describe_counter!(
        "hpfriends_fanout_bytes_total",
        "bytes of publishes sent to a peer node (taken from its link queue)"
    );
    describe_counter!("hpfriends_fanout_dropped_total", "publishes dropped because a peer link's queue was full");
    describe_gauge!("hpfriends_peer_link_up", "1 while the outbound fan-out link to a peer has replayed interest");
    describe_gauge!("hpfriends_raft_role", "1 for this node's current Raft role");
    describe_gauge!("hpfriends_raft_term", "current Raft term");
    describe_gauge!("hpfriends_raft_leader_id", "node id of the known leader, 0 when none");
    describe_gauge!("hpfriends_raft_known_commit", "highest commit index a leader has told this node");
    describe_gauge!("hpfriends_raft_last_applied", "last log index applied to the graph");
    describe_gauge!("hpfriends_index_generation", "generation of the sharing index the publish path uses");
    describe_gauge!("hpfriends_index_build_seconds", "time of the last full sharing-index build (snapshot load)");
    describe_gauge!("hpfriends_graph_size", "users, groups, shares and keys in the graph");
}
