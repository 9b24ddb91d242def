//! `/api/v1/archive/keeps`: how long the archive keeps an owner's messages,
//! channel by channel.

use axum::extract::State;
use axum::Json;

use super::openapi::ApiErrors;
use super::{done, Body, QueryOf, Reply};
use crate::app::keeps;
use crate::app::types::{Done, KeepList, KeepSetting, KeepsQuery};
use crate::http::auth::Caller;
use crate::state::AppState;

/// What the owner keeps of each channel where they set it (elsewhere the node's `archive_keep`).
#[utoipa::path(get, path = "/api/v1/archive/keeps", tag = "messages", params(KeepsQuery), responses((status = 200, body = KeepList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller, query: QueryOf<KeepsQuery>) -> Reply<KeepList> {
    let axum::extract::Query(q) = query?;
    Ok(Json(keeps::list(&state, &actor, q.owner)?))
}

/// Sets how long the owner's messages on a channel are kept: `off` stops
/// archiving them and deletes what is kept; a shorter time hides what is
/// older at once and deletes it within a minute; `default` is the node's keep.
#[utoipa::path(put, path = "/api/v1/archive/keeps", tag = "messages", request_body = KeepSetting, responses((status = 200, body = Done), ApiErrors))]
pub async fn set(State(state): State<AppState>, Caller(actor): Caller, body: Body<KeepSetting>) -> Reply<Done> {
    let Json(b) = body?;
    done(keeps::set(&state, actor, b).await)
}
