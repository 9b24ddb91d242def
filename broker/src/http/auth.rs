//! Bearer tokens: who called (`app::accounts::token_actor` says whose a
//! token is).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hpfriends_graph::Actor;

use super::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a request.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization header must be 'Bearer <token>'"))?;
        crate::app::accounts::token_actor(state, token)
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("invalid token"))
    }
}
