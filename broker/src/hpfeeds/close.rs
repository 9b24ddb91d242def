//! Why a connection ended. Every close goes through one of these; each is
//! logged and counted under its `category()`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client hung up.
    ClientClosed,
    AuthFailed,
    /// Too many failed AUTHs from the client's address; refused unchecked.
    AuthRateLimited,
    FirstNotAuth,
    LoginTimeout,
    /// PUBLISH, SUBSCRIBE or UNSUBSCRIBE naming another ident than the logged-in one.
    WrongIdent,
    PublishDenied,
    SubscribeDenied,
    /// One SUBSCRIBE past `max_subscriptions_per_connection`.
    TooManySubscriptions,
    FrameTooLarge,
    UnknownOpcode,
    MalformedFrame,
    UnexpectedFrame,
    /// The outbound queue overflowed its byte bound.
    SlowConsumer,
    /// The authkey was removed while connected.
    KeyRevoked,
    IoError,
    Shutdown,
}

impl CloseReason {
    /// The label value in `hpfeeds_broker_connection_error{category}` and logs.
    pub fn category(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::AuthFailed => "auth_failed",
            CloseReason::AuthRateLimited => "auth_rate_limited",
            CloseReason::FirstNotAuth => "first_not_auth",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::WrongIdent => "wrong_ident",
            CloseReason::PublishDenied => "publish_denied",
            CloseReason::SubscribeDenied => "subscribe_denied",
            CloseReason::TooManySubscriptions => "too_many_subscriptions",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::UnknownOpcode => "unknown_opcode",
            CloseReason::MalformedFrame => "malformed_frame",
            CloseReason::UnexpectedFrame => "unexpected_frame",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::KeyRevoked => "key_revoked",
            CloseReason::IoError => "io_error",
            CloseReason::Shutdown => "shutdown",
        }
    }

    pub fn is_error(self) -> bool {
        !matches!(self, CloseReason::ClientClosed | CloseReason::Shutdown)
    }
}
