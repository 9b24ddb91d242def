//! Node configuration: one typed struct, loaded in layers (defaults → TOML
//! file → `HPFRIENDS_*` environment → flags), then validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Raft node id, unique in the cluster, ≥ 1.
    pub node_id: u64,
    pub data_dir: PathBuf,
    /// hpfeeds clients connect here (port 0 picks a free port).
    pub hpfeeds_addr: String,
    /// HTTP API, `/metrics`, `/healthz`, `/readyz`.
    pub http_addr: String,
    /// Raft and node-to-node traffic.
    pub cluster_addr: String,
    /// Host name or IP other nodes and clients use to reach this node
    /// (defaults to the bound address).
    pub advertise_addr: Option<String>,
    /// Cluster address (host:port) of any member, to join its cluster.
    pub join: Option<String>,
    /// Bearer token with every right. Generated into `<data_dir>/operator-token` when unset.
    pub operator_token: Option<String>,
    /// Proves nodes to each other on the cluster port (mutual TLS under a CA
    /// derived from it). Generated into `<data_dir>/cluster-secret` when unset.
    pub cluster_secret: Option<String>,
    /// An operator's PKI for the cluster port instead of the secret: the CA
    /// peers' certificates must chain to, and this node's certificate and key.
    pub cluster_tls_ca: Option<PathBuf>,
    pub cluster_tls_cert: Option<PathBuf>,
    pub cluster_tls_key: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The TLS hpfeeds listener, used when `tls_cert` and `tls_key` are set.
    pub tls_addr: String,
    /// Sent in INFO.
    pub broker_name: String,
    pub login_timeout_secs: u64,
    /// An HTTP client must have sent its request head within this time.
    pub http_header_timeout_ms: u64,
    /// Largest PUBLISH payload accepted.
    pub max_publish_bytes: usize,
    /// Per-connection outbound queue bound; a subscriber past it is closed.
    pub max_outbound_bytes: usize,
    pub max_connections: usize,
    /// Channels one connection may subscribe to; one more is an ERROR and a close.
    pub max_subscriptions_per_connection: usize,
    /// Shortest hpfeeds key secret a person may set (generated ones are 32
    /// hex characters); `ctl import-hpfeeds` keeps shorter old ones, with a warning.
    pub min_key_secret_len: usize,
    /// Publishes queued for one peer node, at most; past it they are dropped
    /// and the peer closes the subscribers that would have got them.
    pub peer_queue_messages: usize,
    /// Raft builds a snapshot (and compacts the log) after this many entries.
    pub snapshot_every_logs: u64,
    /// Drain on SIGTERM: `/readyz` answers 503 this long before the node
    /// stops accepting, so the load balancer has seen it.
    pub drain_grace_ms: u64,
    /// Drain: client connections are closed spread over this window, so they
    /// do not all reconnect elsewhere at the same instant.
    pub drain_close_window_ms: u64,
    /// Label the hpfeeds series with the client's ident (and channel), as
    /// hpfeeds 3.x does (one series per sensor: only for a bounded number).
    pub metrics_per_ident: bool,
    /// Who may make an account in the web app: `invite` (the operator
    /// invites), `open` (anyone signs up), `closed` (nobody new).
    pub signup: Signup,
    /// An invitation or password-reset link works this long.
    pub invite_ttl_hours: u64,
    /// A web app sign-in lasts this long.
    pub session_ttl_hours: u64,
    /// Where people open the web app (invitation links point there); defaults
    /// to `http://` + the HTTP listener's advertised address. `https://` marks
    /// the session cookie Secure.
    pub web_url: Option<String>,
    /// Serve the HTTP listener (web app and API) over TLS with this
    /// certificate and key (re-read when the files change).
    pub web_tls_cert: Option<PathBuf>,
    pub web_tls_key: Option<PathBuf>,
    /// The command format version this node announces and reads. Only for
    /// rehearsing a rolling upgrade: one below this build's own version makes
    /// the node behave like the previous release.
    pub command_version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Signup {
    #[default]
    Invite,
    Open,
    Closed,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            data_dir: PathBuf::from("./data"),
            hpfeeds_addr: "0.0.0.0:10000".into(),
            http_addr: "127.0.0.1:8080".into(),
            cluster_addr: "127.0.0.1:7000".into(),
            advertise_addr: None,
            join: None,
            operator_token: None,
            cluster_secret: None,
            cluster_tls_ca: None,
            cluster_tls_cert: None,
            cluster_tls_key: None,
            tls_cert: None,
            tls_key: None,
            tls_addr: "0.0.0.0:10443".into(),
            broker_name: "hpfriends".into(),
            login_timeout_secs: 10,
            http_header_timeout_ms: 10_000,
            max_publish_bytes: 1024 * 1024,
            max_outbound_bytes: 16 * 1024 * 1024,
            max_connections: 10_000,
            max_subscriptions_per_connection: 1_000,
            min_key_secret_len: 8,
            peer_queue_messages: 16 * 1024,
            snapshot_every_logs: 5_000,
            drain_grace_ms: 5_000,
            drain_close_window_ms: 5_000,
            metrics_per_ident: false,
            signup: Signup::Invite,
            invite_ttl_hours: 7 * 24,
            session_ttl_hours: 7 * 24,
            web_url: None,
            web_tls_cert: None,
            web_tls_key: None,
            command_version: hpfriends_graph::COMMAND_VERSION,
        }
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("node_id must be at least 1")]
    NodeIdZero,
    #[error("{field} = {value:?} is not a socket address (host:port): {reason}")]
    BadAddress { field: &'static str, value: String, reason: String },
    #[error("tls_cert and tls_key must be given together")]
    TlsHalf,
    #[error("web_tls_cert and web_tls_key must be given together")]
    WebTlsHalf,
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("{field} = {value} is more than {max}")]
    TooLarge { field: &'static str, value: u64, max: u64 },
    #[error("max_publish_bytes = {0} exceeds the 64 MiB ceiling")]
    PublishTooLarge(usize),
    #[error("broker_name must be 1..=255 bytes")]
    BrokerName,
    #[error("{setting} is {len} characters long: use at least {MIN_SECRET_LEN} (for example `openssl rand -hex 24`)")]
    WeakSecret { setting: &'static str, len: usize },
    #[error(
        "{setting} is the placeholder shipped in deploy/: set a random value (for example `openssl rand -hex 24`)"
    )]
    PlaceholderSecret { setting: &'static str },
    #[error("cluster_tls_ca, cluster_tls_cert and cluster_tls_key must be given together")]
    ClusterTlsHalf,
    #[error("join = {0:?}: give the cluster address (host:port) of a member, not a URL")]
    BadJoin(String),
    #[error("command_version = {0}: this build runs {own} (or {previous} to rehearse an upgrade from the previous release)", own = hpfriends_graph::COMMAND_VERSION, previous = hpfriends_graph::COMMAND_VERSION - 1)]
    CommandVersion(u32),
    #[error("web_url = {0:?}: give an http:// or https:// URL, without a path")]
    WebUrl(String),
    #[error("{field} = {value} ms is more than an hour")]
    DrainTooLong { field: &'static str, value: u64 },
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::NodeIdZero);
        }
        for (field, value) in
            [("hpfeeds_addr", &self.hpfeeds_addr), ("http_addr", &self.http_addr), ("cluster_addr", &self.cluster_addr)]
        {
            check_addr(field, value)?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsHalf);
        }
        if self.tls_cert.is_some() {
            check_addr("tls_addr", &self.tls_addr)?;
        }
        if self.web_tls_cert.is_some() != self.web_tls_key.is_some() {
            return Err(ConfigError::WebTlsHalf);
        }
        for (field, v) in [
            ("login_timeout_secs", self.login_timeout_secs as usize),
            ("http_header_timeout_ms", self.http_header_timeout_ms as usize),
            ("max_publish_bytes", self.max_publish_bytes),
            ("max_outbound_bytes", self.max_outbound_bytes),
            ("max_connections", self.max_connections),
            ("max_subscriptions_per_connection", self.max_subscriptions_per_connection),
            ("min_key_secret_len", self.min_key_secret_len),
            ("peer_queue_messages", self.peer_queue_messages),
            ("snapshot_every_logs", self.snapshot_every_logs as usize),
            ("invite_ttl_hours", self.invite_ttl_hours as usize),
            ("session_ttl_hours", self.session_ttl_hours as usize),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        for (field, value, max) in [
            ("max_connections", self.max_connections as u64, MAX_CONNECTIONS),
            ("max_subscriptions_per_connection", self.max_subscriptions_per_connection as u64, 1_000_000),
            ("login_timeout_secs", self.login_timeout_secs, 3_600),
            ("http_header_timeout_ms", self.http_header_timeout_ms, 600_000),
            ("max_outbound_bytes", self.max_outbound_bytes as u64, 1 << 30),
            ("peer_queue_messages", self.peer_queue_messages as u64, 10_000_000),
            ("snapshot_every_logs", self.snapshot_every_logs, 100_000_000),
            ("min_key_secret_len", self.min_key_secret_len as u64, hpfriends_graph::names::MAX_SECRET_LEN as u64),
            ("invite_ttl_hours", self.invite_ttl_hours, 90 * 24),
            ("session_ttl_hours", self.session_ttl_hours, 90 * 24),
        ] {
            if value > max {
                return Err(ConfigError::TooLarge { field, value, max });
            }
        }
        if self.max_publish_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::PublishTooLarge(self.max_publish_bytes));
        }
        if self.broker_name.is_empty() || self.broker_name.len() > 255 {
            return Err(ConfigError::BrokerName);
        }
        for (setting, value) in [("operator_token", &self.operator_token), ("cluster_secret", &self.cluster_secret)] {
            if let Some(v) = value {
                check_secret(setting, v)?;
            }
        }
        let pki = [&self.cluster_tls_ca, &self.cluster_tls_cert, &self.cluster_tls_key];
        if pki.iter().any(|p| p.is_some()) && !pki.iter().all(|p| p.is_some()) {
            return Err(ConfigError::ClusterTlsHalf);
        }
        if let Some(join) = &self.join {
            let port = join.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if join.contains('/') || !matches!(port, Some(Ok(_))) {
                return Err(ConfigError::BadJoin(join.clone()));
            }
        }
        let own = hpfriends_graph::COMMAND_VERSION;
        if self.command_version != own && self.command_version + 1 != own {
            return Err(ConfigError::CommandVersion(self.command_version));
        }
        if let Some(url) = &self.web_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.trim_end_matches('/').contains('/')) {
                return Err(ConfigError::WebUrl(url.clone()));
            }
        }
        for (field, value) in
            [("drain_grace_ms", self.drain_grace_ms), ("drain_close_window_ms", self.drain_close_window_ms)]
        {
            if value > 3_600_000 {
                return Err(ConfigError::DrainTooLong { field, value });
            }
        }
        Ok(())
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }

    pub fn http_header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
    }

    pub fn drain_grace(&self) -> Duration {
        Duration::from_millis(self.drain_grace_ms)
    }

    pub fn invite_ttl(&self) -> Duration {
        Duration::from_secs(self.invite_ttl_hours * 3600)
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_hours * 3600)
    }

    pub fn drain_close_window(&self) -> Duration {
        Duration::from_millis(self.drain_close_window_ms)
    }
}

/// The most hpfeeds connections one node is configured for.
pub const MAX_CONNECTIONS: u64 = 1_000_000;

/// Shortest cluster secret or operator token accepted.
pub const MIN_SECRET_LEN: usize = 32;

/// Refuses a secret that is short, or a placeholder from deploy/ (`change-me-…`).
pub fn check_secret(setting: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.starts_with("change-me") {
        return Err(ConfigError::PlaceholderSecret { setting });
    }
    if value.chars().count() < MIN_SECRET_LEN {
        return Err(ConfigError::WeakSecret { setting, len: value.chars().count() });
    }
    Ok(())
}

fn check_addr(field: &'static str, value: &str) -> Result<(), ConfigError> {
    value.parse::<SocketAddr>().map(drop).map_err(|e| ConfigError::BadAddress {
        field,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_defaults_then_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn given_shipped_example_config_then_it_parses_to_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/hpfriends.example.toml");
        assert_eq!(Config::from_file(&path).unwrap(), Config::default());
    }

    #[test]
    fn given_bad_values_then_named_errors() {
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.node_id = 0), ConfigError::NodeIdZero);
        assert!(matches!(bad(|c| c.http_addr = "nope".into()), ConfigError::BadAddress { field: "http_addr", .. }));
        assert_eq!(bad(|c| c.tls_cert = Some("c.pem".into())), ConfigError::TlsHalf);
        assert_eq!(bad(|c| c.max_outbound_bytes = 0), ConfigError::Zero { field: "max_outbound_bytes" });
        assert_eq!(
            bad(|c| c.max_connections = 9223372036854775807),
            ConfigError::TooLarge { field: "max_connections", value: 9223372036854775807, max: 1_000_000 }
        );
        assert!(matches!(
            bad(|c| c.login_timeout_secs = u64::MAX),
            ConfigError::TooLarge { field: "login_timeout_secs", .. }
        ));
        assert_eq!(
            bad(|c| c.operator_token = Some("short".into())),
            ConfigError::WeakSecret { setting: "operator_token", len: 5 }
        );
        assert_eq!(
            bad(|c| c.cluster_secret = Some("x".repeat(31))),
            ConfigError::WeakSecret { setting: "cluster_secret", len: 31 }
        );
        assert_eq!(
            bad(|c| c.cluster_secret = Some("change-me-to-a-long-random-cluster-secret".into())),
            ConfigError::PlaceholderSecret { setting: "cluster_secret" }
        );
        assert_eq!(bad(|c| c.cluster_tls_ca = Some("ca.pem".into())), ConfigError::ClusterTlsHalf);
        assert_eq!(
            bad(|c| c.join = Some("http://node1:8080".into())),
            ConfigError::BadJoin("http://node1:8080".into())
        );
        assert_eq!(bad(|c| c.join = Some("node1".into())), ConfigError::BadJoin("node1".into()));
        assert_eq!(bad(|c| c.command_version = 0), ConfigError::CommandVersion(0));
        assert_eq!(bad(|c| c.command_version = 9), ConfigError::CommandVersion(9));
        for url in ["ftp://x", "example.org", "https://", "https://x/app"] {
            let mut c = Config { web_url: Some(url.into()), ..Config::default() };
            assert_eq!(c.validate().unwrap_err(), ConfigError::WebUrl(url.into()));
            c.web_url = Some("https://hpfriends.example.org/".into());
            c.validate().unwrap();
        }
        assert!(matches!(
            bad(|c| c.drain_grace_ms = 4_000_000),
            ConfigError::DrainTooLong { field: "drain_grace_ms", .. }
        ));
    }

    #[test]
    fn given_toml_with_unknown_key_then_parse_error_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "node_id = 2\nhttp_port = 1\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("http_port"), "{err}");
        std::fs::write(&path, "node_id = 2\n").unwrap();
        assert_eq!(Config::from_file(&path).unwrap().node_id, 2);
    }
}
