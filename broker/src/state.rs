//! The node as the application sees it: its parts (Raft, the switchboard of
//! the publish path, the peers, the hpfeeds connections), its settings, and
//! whether it is ready for clients. The API, the web app, `ctl`'s server
//! side and the node reports all take an `AppState`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hpfriends_consensus::ConsensusNode;

use crate::app::types::Readiness;
use crate::auth_limit::AuthLimiter;
use crate::cluster::peers::Peers;
use crate::config::{Config, Signup};
use crate::hpfeeds::connection::Connections;
use crate::routing::Switchboard;

#[derive(Clone)]
pub struct AppState {
    pub node: Arc<ConsensusNode>,
    pub switchboard: Arc<Switchboard>,
    pub peers: Arc<Peers>,
    pub operator_token: Arc<str>,
    /// Set when the drain starts: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Shortest explicit hpfeeds key secret accepted (import may keep shorter ones).
    pub min_key_secret_len: usize,
    pub max_channels_per_key: usize,
    /// hpfeeds accept loops running now, and how many there should be.
    pub listening: Arc<AtomicUsize>,
    pub listeners: usize,
    pub accounts: Arc<AccountSettings>,
    /// hpfeeds connections of this node (who is logged in now).
    pub connections: Arc<Connections>,
    /// The messages published on this node (`None` with `archive = false`).
    pub archive: Option<Arc<crate::archive::Archive>>,
}

impl AppState {
    /// Whether a load balancer should send clients here (`/readyz`, and each
    /// node's report to the others).
    pub fn readiness(&self) -> Readiness {
        let m = self.node.metrics().borrow().clone();
        let draining = self.draining.load(Ordering::Acquire);
        let leader_known = m.current_leader.is_some();
        let caught_up = self.node.caught_up();
        let peer_links_replayed = self.peers.links_ready();
        let accepting_clients = self.listening.load(Ordering::Acquire) == self.listeners;
        let ready = !draining && leader_known && caught_up && peer_links_replayed && accepting_clients;
        Readiness {
            ready,
            draining,
            accepting_clients,
            leader_known,
            caught_up,
            peer_links_replayed,
            unreachable_peers: self.peers.unreachable_peers(),
            awaiting_replay_from: self.peers.awaiting_replay_from(),
            last_applied: m.last_applied.map(|l| l.index),
        }
    }
}

/// The account settings of a node, and its sign-in failure limit.
pub struct AccountSettings {
    pub signup: Signup,
    pub invite_ttl: Duration,
    pub session_ttl: Duration,
    /// Where the web app is opened, without a trailing slash.
    pub web_url: String,
    /// Session cookies carry `Secure` (the web app is reached over https).
    pub secure_cookies: bool,
    pub sign_in_limit: AuthLimiter,
    pub unknown_cookie_limit: AuthLimiter,
}

impl AccountSettings {
    pub fn new(config: &Config, http_addr: &str) -> Arc<Self> {
        let scheme = if config.web_tls_cert.is_some() { "https" } else { "http" };
        let web_url = config.web_url.clone().unwrap_or_else(|| format!("{scheme}://{http_addr}"));
        let web_url = web_url.trim_end_matches('/').to_string();
        Arc::new(AccountSettings {
            signup: config.signup,
            invite_ttl: config.invite_ttl(),
            session_ttl: config.session_ttl(),
            secure_cookies: web_url.starts_with("https://") || config.web_tls_cert.is_some(),
            web_url,
            sign_in_limit: AuthLimiter::for_sign_in(),
            unknown_cookie_limit: AuthLimiter::for_unknown_cookies(),
        })
    }
}
