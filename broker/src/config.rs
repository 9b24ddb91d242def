//! Node configuration. Every setting is declared once, in `settings!` below
//! (name, type, default, bounds, what it does): the `Config` struct and its
//! defaults, the `serve` flags and their `HPFRIENDS_*` variables, the range
//! checks and docs/cli.md's table (a test compares it) all come from that
//! one line. Loaded in layers (defaults → TOML file → environment → flags),
//! then validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a setting is checked at start, beyond its type.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    None,
    /// A number in `min..=max` (below 1: `Zero`, above: `TooLarge`).
    Range {
        min: u64,
        max: u64,
    },
    /// A socket address (host:port).
    Addr,
    /// At most an hour, in milliseconds.
    UpToAnHour,
    /// Comma-separated IP addresses or networks (`10.0.0.5,192.0.2.0/24`).
    Nets,
}

/// One setting as the flags, the environment and docs/cli.md see it.
pub struct Setting {
    /// The key in the file; the flag is `--` + it with `-`, the variable
    /// `HPFRIENDS_` + it in capitals.
    pub name: &'static str,
    /// The flag's value, as `--help` and docs/cli.md show it.
    pub value_name: &'static str,
    /// The default, as docs/cli.md shows it.
    pub default: &'static str,
    pub what: &'static str,
    /// Its value is not echoed (`--help` does not show the variable's value).
    pub secret: bool,
    /// Only for rehearsals: not in `--help`.
    pub hidden: bool,
    pub check: Check,
    /// Sets it from a flag's or variable's text.
    set: fn(&mut Config, &str) -> Result<(), String>,
    /// Its value as a number, and as text, for the checks.
    number: fn(&Config) -> Option<u64>,
    text: fn(&Config) -> Option<&str>,
}

impl Setting {
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    pub fn env(&self) -> String {
        format!("HPFRIENDS_{}", self.name.to_uppercase())
    }

    /// Sets the setting from text (a flag or an environment variable).
    pub fn set(&self, config: &mut Config, text: &str) -> Result<(), String> {
        (self.set)(config, text)
    }
}

/// A setting's type: read from a flag or variable.
pub trait Value: Sized {
    fn parse(text: &str) -> Result<Self, String>;
    /// As a number, for the range checks.
    fn number(&self) -> Option<u64> {
        None
    }
    /// As text, for the address checks.
    fn text(&self) -> Option<&str> {
        None
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|e| format!("{text:?} is not a whole number: {e}"))
            }
            fn number(&self) -> Option<u64> {
                Some(*self as u64)
            }
        }
    )*};
}
numbers!(u64, u32, usize);

impl Value for bool {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim().parse().map_err(|_| format!("{text:?} is not true or false"))
    }
}

impl Value for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl Value for PathBuf {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
}

impl Value for Signup {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "invite" => Ok(Signup::Invite),
            "open" => Ok(Signup::Open),
            "closed" => Ok(Signup::Closed),
            other => Err(format!("{other:?} is not invite, open or closed")),
        }
    }
}

impl<T: Value> Value for Option<T> {
    fn parse(text: &str) -> Result<Self, String> {
        T::parse(text).map(Some)
    }
}

/// Declares every setting: `name: Type = default, "VALUE", "default as
/// shown", "what it does", check [, secret | hidden];`.
macro_rules! settings {
    ($( $name:ident : $ty:ty = $default:expr, $value_name:literal, $shown:literal, $what:literal, $check:expr $(, $flag:ident)? ; )*) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $( #[doc = $what] pub $name: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $name: $default, )* }
            }
        }

        /// Every setting, in the order of docs/cli.md's table.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                value_name: $value_name,
                default: $shown,
                what: $what,
                secret: settings!(@is secret $($flag)?),
                hidden: settings!(@is hidden $($flag)?),
                check: $check,
                set: |c, text| {
                    c.$name = <$ty as Value>::parse(text)?;
                    Ok(())
                },
                number: |c| c.$name.number(),
                text: |c| c.$name.text(),
            },
        )*];
    };
    (@is secret secret) => { true };
    (@is hidden hidden) => { true };
    (@is $want:ident $($other:ident)?) => { false };
}

settings! {
    node_id: u64 = 1, "N", "1", "the Raft node id, unique in the cluster, at least 1", Check::None;
    data_dir: PathBuf = PathBuf::from("./data"), "DIR", "`./data`",
        "RocksDB (the Raft log, vote and snapshots), the generated token and secret", Check::None;
    hpfeeds_addr: String = "0.0.0.0:10000".into(), "A", "`0.0.0.0:10000`", "hpfeeds clients", Check::Addr;
    http_addr: String = "127.0.0.1:8080".into(), "A", "`127.0.0.1:8080`",
        "the HTTP API, `/metrics`, `/healthz`, `/readyz`", Check::Addr;
    cluster_addr: String = "127.0.0.1:7000".into(), "A", "`127.0.0.1:7000`",
        "Raft, joins and fan-out between nodes (TLS 1.3, both sides authenticated)", Check::Addr;
    advertise_addr: Option<String> = None, "HOST", "the bound address",
        "the host other nodes and clients reach this node at", Check::None;
    join: Option<String> = None, "HOST:PORT", "none",
        "the cluster address of any member: join its cluster instead of bootstrapping", Check::None;
    operator_token: Option<String> = None, "T", "generated into `<data_dir>/operator-token`",
        "the bearer token with every right; at least 32 characters", Check::None, secret;
    cluster_secret: Option<String> = None, "S", "generated into `<data_dir>/cluster-secret`",
        "shared by every node; the cluster port's CA is derived from it; at least 32 characters", Check::None, secret;
    operator_token_file: Option<PathBuf> = None, "F", "none",
        "a file holding the operator token: other local users can read a flag in the process list", Check::None;
    cluster_secret_file: Option<PathBuf> = None, "F", "none", "a file holding the cluster secret", Check::None;
    cluster_tls_ca: Option<PathBuf> = None, "F", "none",
        "an operator's CA for the cluster port instead of the secret", Check::None;
    cluster_tls_cert: Option<PathBuf> = None, "F", "none",
        "this node's certificate under that CA (serverAuth and clientAuth, naming its host)", Check::None;
    cluster_tls_key: Option<PathBuf> = None, "F", "none", "its key", Check::None;
    tls_cert: Option<PathBuf> = None, "F", "none",
        "certificate of the TLS hpfeeds listener (re-read when the file changes)", Check::None;
    tls_key: Option<PathBuf> = None, "F", "none", "its key", Check::None;
    tls_addr: String = "0.0.0.0:10443".into(), "A", "`0.0.0.0:10443`",
        "the TLS hpfeeds listener (with `--tls-cert`/`--tls-key`)", Check::None;
    broker_name: String = "hpfriends".into(), "NAME", "`hpfriends`", "the name sent in INFO (1 to 255 bytes)", Check::None;
    login_timeout_secs: u64 = 10, "N", "10", "connections that do not log in within this are closed",
        Check::Range { min: 1, max: 3_600 };
    http_header_timeout_ms: u64 = 10_000, "N", "10000",
        "an HTTP request head must arrive within this (a whole request within 60 s)", Check::Range { min: 1, max: 600_000 };
    http_max_connections: usize = 512, "N", "512",
        "HTTP connections open at once (past it new ones are closed; at most 512, within the descriptors kept beside hpfeeds clients)",
        Check::Range { min: 1, max: 512 };
    http_max_connections_per_address: usize = 64, "N", "64",
        "HTTP connections open at once from one address (raise it behind a load balancer that does not send the PROXY protocol)",
        Check::Range { min: 1, max: 512 };
    proxy_protocol_from: Option<String> = None, "NETS", "none",
        "load balancers whose HTTP connections may start with a PROXY protocol v2 header (comma-separated addresses or networks): the client's address is taken from it",
        Check::Nets;
    max_publish_bytes: usize = 1024 * 1024, "N", "1048576", "the largest PUBLISH payload (at most 64 MiB)",
        Check::Range { min: 1, max: 64 * 1024 * 1024 };
    max_outbound_bytes: usize = 16 * 1024 * 1024, "N", "16777216",
        "bytes queued for one connection before it is closed as a slow consumer", Check::Range { min: 1, max: 1 << 30 };
    max_connections: usize = 10_000, "N", "10000",
        "hpfeeds connections; must fit the file descriptor limit with 1024 to spare",
        Check::Range { min: 1, max: MAX_CONNECTIONS };
    max_subscriptions_per_connection: usize = 1_000, "N", "1000", "subscriptions of one connection",
        Check::Range { min: 1, max: 1_000_000 };
    min_key_secret_len: usize = 8, "N", "8", "the shortest key secret a person may set",
        Check::Range { min: 1, max: hpfriends_graph::names::MAX_SECRET_LEN as u64 };
    max_channels_per_key: usize = 1_000, "N", "1000", "channels a key may list to publish to, and to subscribe to",
        Check::Range { min: 1, max: 1_000_000 };
    peer_queue_messages: usize = 16 * 1024, "N", "16384",
        "publishes queued for one peer before they are dropped (and the subscribers that would have got them closed)",
        Check::Range { min: 1, max: 10_000_000 };
    snapshot_every_logs: u64 = 5_000, "N", "5000",
        "Raft snapshots the graph and compacts its log after this many entries", Check::Range { min: 1, max: 100_000_000 };
    drain_grace_ms: u64 = 5_000, "N", "5000",
        "on SIGTERM, how long `/readyz` answers 503 before the node stops accepting", Check::UpToAnHour;
    drain_close_window_ms: u64 = 5_000, "N", "5000", "client connections are closed spread over this window",
        Check::UpToAnHour;
    metrics_per_ident: bool = false, "BOOL", "false",
        "label the hpfeeds series with ident and channel (one series per sensor)", Check::None;
    signup: Signup = Signup::Invite, "MODE", "`invite`",
        "who may make a web app account: `invite` (the operator invites), `open` (anyone signs up), `closed` (nobody new; existing users still get reset links)",
        Check::None;
    invite_ttl_hours: u64 = 7 * 24, "N", "168", "how long an invitation or password-reset link works",
        Check::Range { min: 1, max: 90 * 24 };
    session_ttl_hours: u64 = 7 * 24, "N", "168", "how long a web app sign-in lasts", Check::Range { min: 1, max: 90 * 24 };
    web_url: Option<String> = None, "URL", "`http://` + the HTTP address",
        "where people open the web app; invitation links point there; `https://` makes the session cookie Secure",
        Check::None;
    web_tls_cert: Option<PathBuf> = None, "F", "none",
        "serve the web app and API over TLS with this certificate (re-read when the file changes); session cookies become Secure",
        Check::None;
    web_tls_key: Option<PathBuf> = None, "F", "none", "its key", Check::None;
    archive: bool = true, "BOOL", "true",
        "keep the messages published on this node, for those who missed them (`GET /api/v1/messages`, `ctl messages`)",
        Check::None;
    archive_keep: Span = Span(Duration::from_secs(7 * 86_400)), "AGE", "`7d`",
        "how long archived messages are kept (`12h`, `7d`, `30d`)", Check::Range { min: 1, max: 10 * 365 * 86_400 };
    archive_max_bytes: u64 = 1 << 30, "N", "1073741824",
        "the most the archive holds on this node, in bytes; the oldest messages go first",
        Check::Range { min: 1, max: u64::MAX };
    resume_max_messages: u64 = 1_000_000, "N", "1000000",
        "the most a resume key is sent of what it missed on a channel when it subscribes again; beyond it the oldest are skipped",
        Check::Range { min: 1, max: u64::MAX };
    resume_max_bytes: u64 = 1 << 30, "N", "1073741824",
        "the same bound in bytes (as archive_max_bytes counts them)", Check::Range { min: 1, max: u64::MAX };
    command_version: u32 = hpfriends_graph::COMMAND_VERSION, "N", "this build's (2)",
        "rehearsing an upgrade only: one below this build's version makes the node announce and read only the previous release's entries",
        Check::None, hidden;
}

/// A length of time written as people write it: `90s`, `12h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl Value for Span {
    fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim())
            .map(Span)
            .map_err(|e| format!("{text:?} is not a length of time like 90s, 12h or 7d: {e}"))
    }
    /// In seconds.
    fn number(&self) -> Option<u64> {
        Some(self.0.as_secs())
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signup {
    #[default]
    Invite,
    Open,
    Closed,
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
    #[error("{field} = {value:?}: {reason}")]
    BadNets { field: &'static str, value: String, reason: String },
    #[error("tls_cert and tls_key must be given together")]
    TlsHalf,
    #[error("web_tls_cert and web_tls_key must be given together")]
    WebTlsHalf,
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("{field} = {value} is more than {max}")]
    TooLarge { field: &'static str, value: u64, max: u64 },
    #[error("broker_name must be 1..=255 bytes")]
    BrokerName,
    #[error("{setting} is {len} characters long: use at least {MIN_SECRET_LEN} (for example `openssl rand -hex 24`)")]
    WeakSecret { setting: &'static str, len: usize },
    #[error(
        "{setting} is the placeholder shipped in deploy/: set a random value (for example `openssl rand -hex 24`)"
    )]
    PlaceholderSecret { setting: &'static str },
    #[error("{setting} and {setting}_file are both given: give one")]
    TwoSources { setting: &'static str },
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
        for setting in SETTINGS {
            let field = setting.name;
            match (setting.check, (setting.number)(self)) {
                (Check::Range { min, .. }, Some(v)) if v < min => return Err(ConfigError::Zero { field }),
                (Check::Range { max, .. }, Some(value)) if value > max => {
                    return Err(ConfigError::TooLarge { field, value, max })
                }
                (Check::UpToAnHour, Some(value)) if value > 3_600_000 => {
                    return Err(ConfigError::DrainTooLong { field, value })
                }
                (Check::Addr, _) => check_addr(field, (setting.text)(self).unwrap_or_default())?,
                (Check::Nets, _) => {
                    if let Some(text) = (setting.text)(self) {
                        parse_nets(text).map_err(|reason| ConfigError::BadNets {
                            field,
                            value: text.to_string(),
                            reason,
                        })?;
                    }
                }
                _ => {}
            }
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
        if self.broker_name.is_empty() || self.broker_name.len() > 255 {
            return Err(ConfigError::BrokerName);
        }
        for (setting, value) in [("operator_token", &self.operator_token), ("cluster_secret", &self.cluster_secret)] {
            if let Some(v) = value {
                check_secret(setting, v)?;
            }
        }
        if self.operator_token.is_some() && self.operator_token_file.is_some() {
            return Err(ConfigError::TwoSources { setting: "operator_token" });
        }
        if self.cluster_secret.is_some() && self.cluster_secret_file.is_some() {
            return Err(ConfigError::TwoSources { setting: "cluster_secret" });
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

/// `10.0.0.5,192.0.2.0/24,2001:db8::/32`: addresses or networks, comma-separated.
pub fn parse_nets(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{t:?} is not an IP address or network (like 10.0.0.5 or 192.0.2.0/24)"))
        })
        .collect()
}

impl Config {
    /// `proxy_protocol_from` as networks (checked by `validate`).
    pub fn proxy_protocol_nets(&self) -> Vec<ipnet::IpNet> {
        self.proxy_protocol_from.as_deref().map(|t| parse_nets(t).unwrap_or_default()).unwrap_or_default()
    }
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
