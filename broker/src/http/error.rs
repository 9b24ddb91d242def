//! API errors: a status and a JSON body `{"error": {"code", "message"}}`.
//! Codes are stable; a retired code is never reused.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpfriends_consensus::WriteError;
use hpfriends_graph::GraphError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<GraphError> for ApiError {
    /// Every variant named: a new one must be given its status here.
    fn from(e: GraphError) -> Self {
        use GraphError::*;
        let status = match e {
            UnknownUser(_) | UnknownGroup(_) | UnknownShare { .. } | UnknownKey(_) => StatusCode::NOT_FOUND,
            UserExists(_)
            | GroupExists(_)
            | NameTaken(_)
            | ShareExists { .. }
            | IdentExists(_)
            | AlreadyMember { .. }
            | AlreadyAdmin { .. }
            | LastAdmin { .. } => StatusCode::CONFLICT,
            UnknownToken { .. } => StatusCode::NOT_FOUND,
            TokenExists { .. } => StatusCode::CONFLICT,
            InvalidName { .. }
            | NotInvited { .. }
            | SelfShare
            | NestedBatch
            | InvalidAccount(_)
            | InvalidSetting(_)
            | InvalidInvitation(_) => StatusCode::BAD_REQUEST,
            AccountDisabled(_) => StatusCode::FORBIDDEN,
            Forbidden(_) => StatusCode::FORBIDDEN,
            UnknownCommand(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(g) => g.into(),
            WriteError::NotLeader { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", e.to_string()),
            WriteError::Unavailable(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_quorum", e.to_string()),
            WriteError::Membership(_) => ApiError::new(StatusCode::CONFLICT, "membership_refused", e.to_string()),
            WriteError::NeedsUpgrade(_) => ApiError::new(StatusCode::CONFLICT, "needs_upgrade", e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::new(e.status(), "malformed_request", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", e.body_text())
    }
}
