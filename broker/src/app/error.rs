//! Why a use case was refused. Each variant says what it is about, so the
//! API picks its status and code, and a web form the field it shows the
//! message next to, from the variant alone: rewording a message moves nothing.

use axum::http::StatusCode;
use hpfriends_consensus::WriteError;
use hpfriends_graph::{GraphError, Named};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The graph refused the command (validation or authorization, the same
    /// on every node); nothing changed.
    #[error(transparent)]
    Rejected(GraphError),
    /// The cluster could not take the write (no quorum, membership, versions).
    #[error(transparent)]
    Cluster(WriteError),
    /// An input is missing or malformed; nothing was proposed.
    #[error("{message}")]
    Invalid { field: Field, message: String },
    /// A new password that the policy refuses.
    #[error("{0}")]
    WeakPassword(String),
    /// The current password given to change it is not right.
    #[error("the current password is not right")]
    WrongPassword,
    /// A sign-in with the wrong name, password or operator token.
    #[error("{0}")]
    BadCredentials(&'static str),
    /// Too many failed sign-ins for a name or from an address.
    #[error("{0}")]
    Limited(&'static str),
    /// The caller may not do this (decided before proposing).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing of the caller's by that name.
    #[error("{0}")]
    NotFound(String),
    /// An invitation link that is not valid or has expired.
    #[error("this link is not valid or has expired")]
    InvalidInvitation,
    /// A declaration (`apply`) that is not valid JSON of its shape.
    #[error("invalid declaration: {0}")]
    MalformedDeclaration(String),
    #[error("{0}")]
    Internal(String),
}

/// The input an error is about: a form shows the message next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Ident,
    Channel,
    Secret,
    User,
    Group,
    /// A name a user and a group may not both have.
    Name,
    /// A share: who it is from and to, on which channel.
    Share,
    Kind,
    Password,
    CurrentPassword,
    Label,
    Limit,
    Time,
    /// A page's cursor.
    Cursor,
    /// A share's filter (its `where`, `redact` or `pseudonymize`).
    Filter,
}

impl AppError {
    pub fn invalid(field: Field, message: impl Into<String>) -> Self {
        AppError::Invalid { field, message: message.into() }
    }

    /// The input this error is about, if it is about one.
    pub fn field(&self) -> Option<Field> {
        use GraphError::*;
        match self {
            AppError::Rejected(e) => match e {
                InvalidName { what, .. } => Some(match what {
                    Named::User => Field::User,
                    Named::Group => Field::Group,
                    Named::Channel => Field::Channel,
                    Named::Ident => Field::Ident,
                    Named::Secret => Field::Secret,
                    Named::TokenLabel => Field::Label,
                }),
                UnknownUser(_)
                | UserExists(_)
                | NotInvited { .. }
                | AlreadyMember { .. }
                | AlreadyAdmin { .. }
                | LastAdmin { .. } => Some(Field::User),
                UnknownGroup(_) | GroupExists(_) => Some(Field::Group),
                NameTaken(_) => Some(Field::Name),
                ShareExists { .. } | UnknownShare { .. } | SelfShare => Some(Field::Share),
                IdentExists(_) | UnknownKey(_) => Some(Field::Ident),
                TokenExists { .. } | UnknownToken { .. } => Some(Field::Label),
                InvalidAccount(_) => Some(Field::Password),
                InvalidFilter { .. } => Some(Field::Filter),
                NestedBatch | Forbidden(_) | InvalidInvitation(_) | AccountDisabled(_) | InvalidSetting(_)
                | UnknownCommand(_) => None,
            },
            AppError::Invalid { field, .. } => Some(*field),
            AppError::WeakPassword(_) | AppError::BadCredentials(_) => Some(Field::Password),
            AppError::WrongPassword => Some(Field::CurrentPassword),
            AppError::Cluster(_)
            | AppError::Limited(_)
            | AppError::Forbidden(_)
            | AppError::NotFound(_)
            | AppError::InvalidInvitation
            | AppError::MalformedDeclaration(_)
            | AppError::Internal(_) => None,
        }
    }
}

impl AppError {
    /// The HTTP status that answers it (the API's and a refused form's).
    /// Every variant named: a new one must be given its status here.
    pub fn status(&self) -> StatusCode {
        use GraphError::*;
        match self {
            AppError::Rejected(e) => match e {
                UnknownUser(_) | UnknownGroup(_) | UnknownShare { .. } | UnknownKey(_) | UnknownToken { .. } => {
                    StatusCode::NOT_FOUND
                }
                UserExists(_)
                | GroupExists(_)
                | NameTaken(_)
                | ShareExists { .. }
                | IdentExists(_)
                | AlreadyMember { .. }
                | AlreadyAdmin { .. }
                | LastAdmin { .. }
                | TokenExists { .. } => StatusCode::CONFLICT,
                InvalidName { .. }
                | NotInvited { .. }
                | SelfShare
                | NestedBatch
                | InvalidAccount(_)
                | InvalidSetting(_)
                | InvalidFilter { .. }
                | InvalidInvitation(_) => StatusCode::BAD_REQUEST,
                AccountDisabled(_) | Forbidden(_) => StatusCode::FORBIDDEN,
                UnknownCommand(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            AppError::Cluster(w) => match w {
                WriteError::Rejected(_) | WriteError::Membership(_) | WriteError::NeedsUpgrade(_) => {
                    StatusCode::CONFLICT
                }
                WriteError::NotLeader { .. } | WriteError::Unavailable(_) | WriteError::ReadUnavailable(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
            AppError::Invalid { .. }
            | AppError::WeakPassword(_)
            | AppError::WrongPassword
            | AppError::MalformedDeclaration(_) => StatusCode::BAD_REQUEST,
            AppError::BadCredentials(_) => StatusCode::UNAUTHORIZED,
            AppError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) | AppError::InvalidInvitation => StatusCode::NOT_FOUND,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Its stable machine-readable code (never reused for another meaning).
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Rejected(e) => e.code(),
            AppError::Cluster(w) => match w {
                WriteError::Rejected(e) => e.code(),
                WriteError::NotLeader { .. } => "not_leader",
                WriteError::Unavailable(_) | WriteError::ReadUnavailable(_) => "no_quorum",
                WriteError::Membership(_) => "membership_refused",
                WriteError::NeedsUpgrade(_) => "needs_upgrade",
            },
            AppError::Invalid { .. } => "bad_request",
            AppError::WeakPassword(_) => "weak_password",
            AppError::WrongPassword => "wrong_password",
            AppError::BadCredentials(_) => "unauthorized",
            AppError::Limited(_) => "sign_in_limited",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::InvalidInvitation => "invalid_invitation",
            AppError::MalformedDeclaration(_) => "malformed_request",
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<GraphError> for AppError {
    fn from(e: GraphError) -> Self {
        AppError::Rejected(e)
    }
}

impl From<WriteError> for AppError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(g) => AppError::Rejected(g),
            other => AppError::Cluster(other),
        }
    }
}
