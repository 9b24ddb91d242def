//! Bearer tokens: the operator token from config, or a user's token, which is
//! `USER.SECRET` and stored only as its SHA-256 (the one `ctl user token`
//! issues, or one the user made in the web app). A disabled user's tokens
//! are refused.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hpfriends_graph::Actor;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh user token and the hash to store.
pub fn new_user_token(user: &str) -> (String, String) {
    let secret: [u8; 24] = rand::random();
    let token = format!("{user}.{}", hex::encode(secret));
    let hash = hash_token(&token);
    (token, hash)
}

pub fn is_operator_token(state: &AppState, token: &str) -> bool {
    bool::from(token.as_bytes().ct_eq(state.operator_token.as_bytes()))
}

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
        if is_operator_token(state, token) {
            return Ok(Caller(Actor::Operator));
        }
        // The secret part is hex: a user name may hold dots (an e-mail address).
        let user = token.rsplit_once('.').map(|(u, _)| u).unwrap_or("");
        let presented = hash_token(token);
        let matches = |stored: &str| bool::from(stored.as_bytes().ct_eq(presented.as_bytes()));
        let valid = state.node.read_graph(|g| {
            g.user(user).filter(|u| !u.account.disabled).is_some_and(|u| {
                u.token_hash.as_deref().is_some_and(matches)
                    || u.account.api_tokens.values().any(|t| matches(&t.token_hash))
            })
        });
        if valid {
            Ok(Caller(Actor::User(user.to_string())))
        } else {
            Err(ApiError::unauthorized("invalid token"))
        }
    }
}
