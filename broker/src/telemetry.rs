//! Every metric the node exports: its name, type and HELP text, in one
//! table; the process-wide Prometheus recorder behind `/metrics`; the log.
//!
//! The `hpfeeds_broker_*` and `hpfeeds_client_*` series are the ones the
//! hpfeeds 3.x broker exports, with the same names (counters end in `_total`,
//! as its Python client library writes them), types and labels, so its
//! dashboards keep working. Their `ident`/`chan` labels are there only with
//! `metrics_per_ident` (one series per sensor); without it the same names
//! carry the node's totals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Exported at zero from the start, so dashboards and `rate()` see the
    /// series before the first event (unlabelled series only).
    pub zero_at_start: bool,
}

const fn metric(name: &'static str, kind: Kind, help: &'static str, zero_at_start: bool) -> Metric {
    Metric { name, kind, help, zero_at_start }
}

use Kind::{Counter, Gauge, Histogram};

// hpfeeds 3.x series.
pub const CLIENT_CONNECTIONS: Metric =
    metric("hpfeeds_broker_client_connections", Gauge, "open hpfeeds connections", true);
pub const AUTHENTICATED_CONNECTIONS: Metric =
    metric("hpfeeds_client_authenticated_connections", Gauge, "hpfeeds connections that have logged in", true);
pub const SUBSCRIPTIONS: Metric =
    metric("hpfeeds_broker_subscriptions", Gauge, "channel subscriptions of open connections", true);
pub const SEND_BUFFER_SIZE: Metric = metric(
    "hpfeeds_broker_connection_send_buffer_size",
    Gauge,
    "bytes queued for subscribers, not yet written to their sockets",
    true,
);
pub const RECEIVE_BUFFER_SIZE: Metric = metric(
    "hpfeeds_broker_connection_receive_buffer_size",
    Gauge,
    "bytes read from clients and not yet decoded (a frame still arriving)",
    true,
);
pub const CONNECTION_MADE: Metric =
    metric("hpfeeds_broker_connection_made_total", Counter, "hpfeeds connections accepted", true);
pub const CONNECTION_READY: Metric =
    metric("hpfeeds_broker_connection_ready_total", Counter, "hpfeeds connections that logged in", true);
pub const CONNECTION_ERROR: Metric = metric(
    "hpfeeds_broker_connection_error_total",
    Counter,
    "hpfeeds connections closed, by category (auth_failed, slow_consumer, client_closed, ...)",
    false,
);
pub const CONNECTION_LOST: Metric =
    metric("hpfeeds_broker_connection_lost_total", Counter, "hpfeeds connections closed, for any reason", true);
pub const RECEIVE_BUFFER_FILL: Metric = metric(
    "hpfeeds_broker_connection_receive_buffer_fill_total",
    Counter,
    "times a connection's read buffer had to grow past its 64 KiB for one large frame",
    true,
);
pub const SEND_BUFFER_FILL: Metric = metric(
    "hpfeeds_broker_connection_send_buffer_fill_total",
    Counter,
    "times a connection's queue passed half of max_outbound_bytes (its subscriber reads too slowly)",
    true,
);
pub const SEND_BUFFER_DRAIN: Metric = metric(
    "hpfeeds_broker_connection_send_buffer_drain_total",
    Counter,
    "times a filled queue fell back below a quarter of max_outbound_bytes",
    true,
);
pub const SEND_BUFFER_DEADLINE_START: Metric = metric(
    "hpfeeds_broker_connection_send_buffer_deadline_start_total",
    Counter,
    "queues that overflowed max_outbound_bytes: hpfriends closes such a slow consumer at once, with no deadline",
    true,
);
pub const SEND_BUFFER_DEADLINE_RECOVER: Metric = metric(
    "hpfeeds_broker_connection_send_buffer_deadline_recover_total",
    Counter,
    "slow consumers that recovered before their deadline: always 0, hpfriends gives no deadline",
    true,
);
pub const RECEIVE_PUBLISH_COUNT: Metric =
    metric("hpfeeds_broker_receive_publish_count_total", Counter, "PUBLISH frames received from clients", true);
pub const RECEIVE_PUBLISH_SIZE: Metric = metric(
    "hpfeeds_broker_receive_publish_size",
    Histogram,
    "payload sizes of PUBLISH frames received from clients",
    false,
);

// hpfriends' own.
pub const MESSAGES_DELIVERED: Metric = metric(
    "hpfriends_messages_delivered_total",
    Counter,
    "PUBLISH frames queued to local subscribers (from local clients and from peers)",
    true,
);
pub const BYTES_DELIVERED: Metric =
    metric("hpfriends_bytes_delivered_total", Counter, "bytes of PUBLISH frames queued to local subscribers", true);
pub const FANOUT_MESSAGES: Metric =
    metric("hpfriends_fanout_messages_total", Counter, "publishes sent to a peer node, by peer", false);
pub const FANOUT_BYTES: Metric =
    metric("hpfriends_fanout_bytes_total", Counter, "bytes of publishes sent to a peer node, by peer", false);
pub const FANOUT_DROPPED: Metric = metric(
    "hpfriends_fanout_dropped_total",
    Counter,
    "publishes dropped because a peer link's queue was full, by peer",
    false,
);
pub const PEER_LINK_UP: Metric =
    metric("hpfriends_peer_link_up", Gauge, "1 while the fan-out link to a peer has replayed interest, by peer", false);
pub const CLUSTER_AUTH_REFUSED: Metric = metric(
    "hpfriends_cluster_auth_refused",
    Gauge,
    "connections to the cluster port refused (failed TLS handshake, no peer certificate, too many handshakes)",
    true,
);
pub const CLUSTER_HANDSHAKES_ENDED: Metric = metric(
    "hpfriends_cluster_handshakes_ended",
    Gauge,
    "connections to the cluster port that closed or stalled before their TLS handshake was done (peers restarting, partitions healing; not refusals)",
    true,
);
pub const RAFT_ENTRIES_SENT: Metric = metric(
    "hpfriends_raft_entries_sent_bytes",
    Gauge,
    "bytes of Raft log entries this node sent to its peers (a retry that waited for the send in flight not counted again)",
    true,
);
pub const RAFT_ROLE: Metric =
    metric("hpfriends_raft_role", Gauge, "1 for this node's current Raft role, by role", false);
pub const RAFT_TERM: Metric = metric("hpfriends_raft_term", Gauge, "current Raft term", true);
pub const RAFT_IS_LEADER: Metric = metric("hpfriends_raft_is_leader", Gauge, "1 while this node leads", true);
pub const RAFT_LEADER_ID: Metric =
    metric("hpfriends_raft_leader_id", Gauge, "node id of the known leader, 0 when none", true);
pub const RAFT_KNOWN_COMMIT: Metric =
    metric("hpfriends_raft_known_commit", Gauge, "highest commit index a leader has told this node", true);
pub const RAFT_LAST_APPLIED: Metric =
    metric("hpfriends_raft_last_applied", Gauge, "last log index applied to the graph", true);
pub const RAFT_LAST_LOG_INDEX: Metric =
    metric("hpfriends_raft_last_log_index", Gauge, "last index in this node's Raft log", true);
pub const INDEX_GENERATION: Metric =
    metric("hpfriends_index_generation", Gauge, "generation of the sharing index the publish path uses", true);
pub const INDEX_BUILD_SECONDS: Metric =
    metric("hpfriends_index_build_seconds", Gauge, "time of the last full sharing-index build (snapshot load)", true);
pub const GRAPH_SIZE: Metric =
    metric("hpfriends_graph_size", Gauge, "users, groups, shares and keys in the graph, by kind", false);
pub const HTTP_CONNECTIONS: Metric =
    metric("hpfriends_http_connections", Gauge, "HTTP connections open (web app, API, metrics)", true);
pub const HTTP_CONNECTIONS_REFUSED: Metric = metric(
    "hpfriends_http_connections_refused_total",
    Counter,
    "HTTP connections closed at once, by the cap they hit (`limit`: address, node)",
    false,
);
pub const LIVE_STREAMS: Metric = metric("hpfriends_live_streams", Gauge, "Live pages streaming from this node", true);
pub const LIVE_STREAMS_REFUSED: Metric = metric(
    "hpfriends_live_streams_refused_total",
    Counter,
    "Live pages refused, by the limit they hit (`limit`: user, address, node)",
    false,
);
pub const ARCHIVE_BYTES: Metric = metric(
    "hpfriends_archive_bytes",
    Gauge,
    "bytes of messages in this node's archive (as archive_max_bytes counts them)",
    true,
);
pub const ARCHIVE_MESSAGES: Metric =
    metric("hpfriends_archive_messages", Gauge, "messages in this node's archive", true);
pub const ARCHIVE_WRITE_LAG: Metric = metric(
    "hpfriends_archive_write_lag_seconds",
    Gauge,
    "from publish to archive write, of the oldest message of the last batch written",
    true,
);
pub const ARCHIVE_OLDEST_AGE: Metric =
    metric("hpfriends_archive_oldest_seconds", Gauge, "age of the oldest message in this node's archive", true);
pub const ARCHIVE_COPY_LAG: Metric = metric(
    "hpfriends_archive_copy_lag_seconds",
    Gauge,
    "from publish to this node's copy, of the newest message of the last batch copied from each node (`from`)",
    false,
);
pub const ARCHIVE_DROPPED: Metric = metric(
    "hpfriends_archive_dropped_total",
    Counter,
    "messages not archived because storage fell behind (they were still delivered live)",
    true,
);
pub const RESUME_SKIPPED: Metric = metric(
    "hpfriends_resume_skipped_total",
    Counter,
    "messages a resume key had missed that were not sent when it came back: more than resume_max_messages or resume_max_bytes",
    true,
);
pub const RESUME_PLACES_WRITTEN: Metric = metric(
    "hpfriends_resume_places_written_total",
    Counter,
    "places of resume keys' subscriptions this node wrote to the graph (when a connection ends, and every 2 s while it lasts if it moved)",
    true,
);
pub const SHARE_FILTER: Metric = metric(
    "hpfriends_share_filter_messages_total",
    Counter,
    "messages a share's filter let through, dropped (its condition was false) or failed on (`outcome`), on this node, since the filter was last set; one evaluation per message and path",
    false,
);

/// Every metric, each once.
pub const ALL: &[Metric] = &[
    CLIENT_CONNECTIONS,
    AUTHENTICATED_CONNECTIONS,
    SUBSCRIPTIONS,
    SEND_BUFFER_SIZE,
    RECEIVE_BUFFER_SIZE,
    CONNECTION_MADE,
    CONNECTION_READY,
    CONNECTION_ERROR,
    CONNECTION_LOST,
    RECEIVE_BUFFER_FILL,
    SEND_BUFFER_FILL,
    SEND_BUFFER_DRAIN,
    SEND_BUFFER_DEADLINE_START,
    SEND_BUFFER_DEADLINE_RECOVER,
    RECEIVE_PUBLISH_COUNT,
    RECEIVE_PUBLISH_SIZE,
    MESSAGES_DELIVERED,
    BYTES_DELIVERED,
    FANOUT_MESSAGES,
    FANOUT_BYTES,
    FANOUT_DROPPED,
    PEER_LINK_UP,
    CLUSTER_AUTH_REFUSED,
    CLUSTER_HANDSHAKES_ENDED,
    RAFT_ENTRIES_SENT,
    RAFT_ROLE,
    RAFT_TERM,
    RAFT_IS_LEADER,
    RAFT_LEADER_ID,
    RAFT_KNOWN_COMMIT,
    RAFT_LAST_APPLIED,
    RAFT_LAST_LOG_INDEX,
    INDEX_GENERATION,
    INDEX_BUILD_SECONDS,
    GRAPH_SIZE,
    HTTP_CONNECTIONS,
    HTTP_CONNECTIONS_REFUSED,
    LIVE_STREAMS,
    LIVE_STREAMS_REFUSED,
    ARCHIVE_BYTES,
    ARCHIVE_MESSAGES,
    ARCHIVE_WRITE_LAG,
    ARCHIVE_OLDEST_AGE,
    ARCHIVE_COPY_LAG,
    ARCHIVE_DROPPED,
    RESUME_SKIPPED,
    RESUME_PLACES_WRITTEN,
    SHARE_FILTER,
];

/// Bucket bounds of the publish-size histogram, in bytes.
const PUBLISH_SIZE_BUCKETS: [u64; 9] = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304];

/// The node's publish-size histogram (`RECEIVE_PUBLISH_SIZE` without labels).
/// Each session counts its publishes per bucket ([`SessionSizes`]) and adds
/// them here once per read of its socket: through the `metrics` exporter it
/// was a stored sample per PUBLISH (a clock read each, an allocation per
/// block), 4–7 % of the broker's CPU at 1.7 M publishes/s (docs/BENCHMARKS.md).
/// With `metrics_per_ident` the labelled series go through the exporter.
pub static PUBLISH_SIZES: PublishSizes =
    PublishSizes { buckets: [const { AtomicU64::new(0) }; PUBLISH_SIZE_BUCKETS.len() + 1], sum: AtomicU64::new(0) };

pub struct PublishSizes {
    /// Per bucket (the last is +Inf), not cumulative.
    buckets: [AtomicU64; PUBLISH_SIZE_BUCKETS.len() + 1],
    sum: AtomicU64,
}

/// One session's publish sizes not yet added to [`PUBLISH_SIZES`].
#[derive(Default)]
pub struct SessionSizes {
    buckets: [u64; PUBLISH_SIZE_BUCKETS.len() + 1],
    sum: u64,
    count: u64,
}

impl SessionSizes {
    pub fn record(&mut self, size: usize) {
        let size = size as u64;
        self.buckets[PUBLISH_SIZE_BUCKETS.partition_point(|le| *le < size)] += 1;
        self.sum += size;
        self.count += 1;
    }

    pub fn flush(&mut self) {
        if self.count == 0 {
            return;
        }
        for (shared, n) in PUBLISH_SIZES.buckets.iter().zip(&self.buckets).filter(|(_, n)| **n > 0) {
            shared.fetch_add(*n, Ordering::Relaxed);
        }
        PUBLISH_SIZES.sum.fetch_add(self.sum, Ordering::Relaxed);
        *self = SessionSizes::default();
    }
}

/// The text format of `/metrics`: the exporter's, with the node's publish-size
/// series in the same family as any labelled ones it holds.
pub fn render() -> String {
    let mut text = prometheus().render();
    let name = RECEIVE_PUBLISH_SIZE.name;
    let counts: Vec<u64> = PUBLISH_SIZES.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    let count: u64 = counts.iter().sum();
    let family = format!("# TYPE {name} histogram\n");
    let labelled = text.contains(&family);
    if labelled && count == 0 {
        return text;
    }
    let mut ours = String::new();
    let mut cumulative = 0;
    for (i, n) in counts.iter().enumerate() {
        cumulative += n;
        let le = PUBLISH_SIZE_BUCKETS.get(i).map_or("+Inf".to_string(), u64::to_string);
        ours.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}\n"));
    }
    ours.push_str(&format!("{name}_sum {}\n{name}_count {count}\n", PUBLISH_SIZES.sum.load(Ordering::Relaxed)));
    if labelled {
        // After the family's TYPE line: one family holds every series of a name.
        let at = text.find(&family).expect("found above") + family.len();
        text.insert_str(at, &ours);
    } else {
        text.push_str(&format!("# HELP {name} {}\n{family}{ours}", RECEIVE_PUBLISH_SIZE.help));
    }
    text
}

/// Installs the recorder on first use (several in-process nodes in one test
/// binary share it) and returns the handle that renders the text format.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(RECEIVE_PUBLISH_SIZE.name.into()),
                    &PUBLISH_SIZE_BUCKETS.map(|b| b as f64),
                )
                .expect("bucket bounds are not empty")
        };
        let handle = builder().install_recorder().unwrap_or_else(|_| {
            // Another recorder is installed already (only in tests): render an empty set.
            builder().build_recorder().handle()
        });
        describe();
        handle
    })
}

fn describe() {
    for m in ALL {
        match m.kind {
            Kind::Counter => {
                metrics::describe_counter!(m.name, m.help);
                if m.zero_at_start {
                    metrics::counter!(m.name).increment(0);
                }
            }
            Kind::Gauge => {
                metrics::describe_gauge!(m.name, m.help);
                if m.zero_at_start {
                    metrics::gauge!(m.name).increment(0.0);
                }
            }
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Logs to stderr, filtered by `HPFRIENDS_LOG` (default: info, and only
/// openraft's warnings), in colour when stderr is a terminal.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HPFRIENDS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_sizes_then_each_counts_in_the_first_bucket_that_holds_it() {
        let mut sizes = SessionSizes::default();
        for size in [0, 64, 65, 256, 4_194_304, 4_194_305] {
            sizes.record(size);
        }
        assert_eq!(sizes.buckets, [2, 2, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!((sizes.count, sizes.sum), (6, 64 + 65 + 256 + 4_194_304 + 4_194_305));
    }
}
