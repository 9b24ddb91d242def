//! Bearer tokens: the operator token from config, or a user's token, which is
//! `USER.SECRET` and stored only as its SHA-256.

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
        if bool::from(token.as_bytes().ct_eq(state.operator_token.as_bytes())) {
            return Ok(Caller(Actor::Operator));
        }
        // The secret part is hex: a user name may hold dots (an e-mail address).
        let user = token.rsplit_once('.').map(|(u, _)| u).unwrap_or("");
        let presented = hash_token(token);
        let valid = state.node.read_graph(|g| {
            g.user(user)
                .and_then(|u| u.token_hash.as_deref())
                .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(presented.as_bytes())))
        });
        if valid {
            Ok(Caller(Actor::User(user.to_string())))
        } else {
            Err(ApiError::unauthorized("invalid token"))
        }
    }
}
