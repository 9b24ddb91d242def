//! The HTTP API (axum): graph administration for `ctl`, `/healthz`, `/readyz`.

pub mod accounts;
pub mod api;
pub mod auth;
mod error;
pub mod serve;
pub mod types;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hpfriends_consensus::ConsensusNode;

pub use api::openapi::ApiDoc;
pub use api::router;
pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub node: Arc<ConsensusNode>,
    pub router: Arc<crate::routing::Router>,
    pub fanout: Arc<crate::cluster::links::Fanout>,
    pub operator_token: Arc<str>,
    /// Set when the drain starts: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Shortest explicit hpfeeds key secret accepted (import may keep shorter ones).
    pub min_key_secret_len: usize,
    /// hpfeeds accept loops running now, and how many there should be.
    pub listening: Arc<std::sync::atomic::AtomicUsize>,
    pub listeners: usize,
    pub accounts: Arc<accounts::AccountSettings>,
    /// hpfeeds connections of this node (who is logged in now).
    pub sessions: Arc<crate::hpfeeds::session::Sessions>,
    /// Live pages streaming now, per user.
    pub live: Arc<crate::web::live::Streams>,
}
