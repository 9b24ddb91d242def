//! Why a connection ended, and the one place for the hpfeeds ERROR texts.
//! Every close goes through a `CloseReason`: it is logged and counted under
//! its `category()`, and the client is sent its `error_text()`, if any.
//! The texts follow hpfeeds 3.x where it has one (docs/protocol.md).

use crate::protocol::FrameError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client hung up.
    ClientClosed,
    AuthFailed {
        ident: String,
    },
    /// Too many failed AUTHs for the ident or from the client's address; refused unchecked.
    AuthRateLimited,
    FirstNotAuth,
    LoginTimeout,
    /// PUBLISH, SUBSCRIBE or UNSUBSCRIBE naming another ident than the logged-in one.
    WrongIdent {
        ident: String,
    },
    PublishDenied {
        ident: String,
        chan: String,
    },
    SubscribeDenied {
        ident: String,
        chan: String,
    },
    /// One SUBSCRIBE past `max_subscriptions_per_connection`.
    TooManySubscriptions {
        ident: String,
        chan: String,
        limit: usize,
    },
    /// The frame could not be decoded (too large, unknown opcode, malformed).
    BadFrame(FrameError),
    /// A frame only the broker sends (INFO, ERROR) or a second AUTH.
    UnexpectedFrame {
        name: &'static str,
    },
    /// The outbound queue overflowed its byte bound, or messages for the
    /// connection were dropped on a full link between nodes. Its writer sends
    /// the ERROR (it drops the queue first).
    SlowConsumer {
        between_nodes: bool,
    },
    /// The authkey was removed, or its owner, while connected.
    KeyRevoked {
        ident: String,
    },
    /// Every client slot (`max_connections`) is taken; refused before INFO.
    ConnectionLimit,
    /// The TLS listener's handshake failed or timed out: no ERROR can be sent.
    TlsHandshake,
    IoError,
    Shutdown,
}

impl CloseReason {
    /// The label value in `hpfeeds_broker_connection_error_total{category}` and logs.
    pub fn category(&self) -> &'static str {
        use FrameError::*;
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::AuthFailed { .. } => "auth_failed",
            CloseReason::AuthRateLimited => "auth_rate_limited",
            CloseReason::FirstNotAuth => "first_not_auth",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::WrongIdent { .. } => "wrong_ident",
            CloseReason::PublishDenied { .. } => "publish_denied",
            CloseReason::SubscribeDenied { .. } => "subscribe_denied",
            CloseReason::TooManySubscriptions { .. } => "too_many_subscriptions",
            CloseReason::BadFrame(FrameTooLarge { .. }) => "frame_too_large",
            CloseReason::BadFrame(UnknownOpcode(_)) => "unknown_opcode",
            CloseReason::BadFrame(LengthTooSmall { .. } | Malformed { .. }) => "malformed_frame",
            CloseReason::UnexpectedFrame { .. } => "unexpected_frame",
            CloseReason::SlowConsumer { .. } => "slow_consumer",
            CloseReason::KeyRevoked { .. } => "key_revoked",
            CloseReason::ConnectionLimit => "connection_limit",
            CloseReason::TlsHandshake => "tls_handshake",
            CloseReason::IoError => "io_error",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// The ERROR frame's text sent before closing, or `None` for a close
    /// without one (the client left, the socket broke, the node drains).
    pub fn error_text(&self) -> Option<String> {
        let text = match self {
            CloseReason::AuthFailed { ident } => format!("Authentication failed for {ident}"),
            CloseReason::AuthRateLimited => "Too many failed logins, try again later".into(),
            CloseReason::FirstNotAuth => "First message was not AUTH".into(),
            CloseReason::WrongIdent { ident } => format!("Invalid authkey in message, ident={ident}"),
            CloseReason::PublishDenied { ident, chan } => {
                format!("Authkey not allowed to pub here. ident={ident}, chan={chan}")
            }
            CloseReason::SubscribeDenied { ident, chan } => {
                format!("Authkey not allowed to sub here. ident={ident}, chan={chan}")
            }
            CloseReason::TooManySubscriptions { ident, chan, limit } => {
                format!("Too many subscriptions on this connection (the limit is {limit}). ident={ident}, chan={chan}")
            }
            CloseReason::BadFrame(e) => e.to_string(),
            CloseReason::UnexpectedFrame { name } => format!("Unexpected {name} message from client"),
            CloseReason::KeyRevoked { ident } => format!("Authkey revoked, ident={ident}"),
            CloseReason::ConnectionLimit => "Server full: connection limit reached".into(),
            CloseReason::SlowConsumer { between_nodes: false } => {
                "Slow consumer: outbound queue exceeded its limit, closing".into()
            }
            CloseReason::SlowConsumer { between_nodes: true } => {
                "Slow consumer: messages for this connection were dropped between nodes, closing".into()
            }
            CloseReason::ClientClosed
            | CloseReason::LoginTimeout
            | CloseReason::TlsHandshake
            | CloseReason::IoError
            | CloseReason::Shutdown => return None,
        };
        Some(text)
    }

    /// Counts this close under its category (and the connection's ident,
    /// when series are kept per ident).
    pub fn count(&self, ident: Option<&str>) {
        let mut labels = vec![("category", self.category().to_string())];
        labels.extend(ident.map(|i| ("ident", i.to_string())));
        metrics::counter!(crate::telemetry::CONNECTION_ERROR.name, &labels).increment(1);
    }

    pub fn is_error(&self) -> bool {
        !matches!(self, CloseReason::ClientClosed | CloseReason::Shutdown)
    }

    /// A failed login: what a guesser makes by the thousand.
    pub fn is_login_failure(&self) -> bool {
        matches!(self, CloseReason::AuthFailed { .. } | CloseReason::AuthRateLimited)
    }
}

/// The one ERROR that does not close: a subscription the key no longer
/// allows was dropped after a graph change.
pub fn subscription_dropped_text(ident: &str, chan: &str) -> String {
    format!("Authkey no longer allowed to sub here, unsubscribed. ident={ident}, chan={chan}")
}
