//! `/api/v1/history`: the audit trail of the graph. The operator sees every
//! change; a user the changes that touch them.

use axum::extract::State;
use axum::Json;
use hpfriends_graph::history::Retention;

use super::openapi::ApiErrors;
use super::{done, Body, QueryOf, Reply};
use crate::app::history;
use crate::app::types::{Done, HistoryPage, HistoryQuery, HistoryRetention};
use crate::http::auth::Caller;
use crate::state::AppState;

/// Changes of the graph, newest first, with who made them, when and through which node.
#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(HistoryQuery), responses((status = 200, body = HistoryPage), ApiErrors))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: QueryOf<HistoryQuery>,
) -> Reply<HistoryPage> {
    let axum::extract::Query(q) = query?;
    Ok(Json(history::page(&state, &actor, q).await?))
}

/// How much history every node keeps.
#[utoipa::path(get, path = "/api/v1/history/retention", tag = "history", responses((status = 200, body = HistoryRetention), ApiErrors))]
pub async fn retention(State(state): State<AppState>, _caller: Caller) -> Reply<HistoryRetention> {
    let r = history::retention(&state);
    Ok(Json(HistoryRetention { max_age_days: r.max_age_days, max_events: r.max_events }))
}

/// The operator sets how much history every node keeps; what is older goes at the next change.
#[utoipa::path(put, path = "/api/v1/history/retention", tag = "history", request_body = HistoryRetention, responses((status = 200, body = Done), ApiErrors))]
pub async fn set_retention(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Body<HistoryRetention>,
) -> Reply<Done> {
    let Json(b) = body?;
    done(
        history::set_retention(&state, actor, Retention { max_age_days: b.max_age_days, max_events: b.max_events })
            .await,
    )
}
