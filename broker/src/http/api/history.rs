//! `/api/v1/history`: the audit trail of the graph. The operator sees every
//! change; a user the changes that touch them.

use axum::extract::State;
use axum::Json;
use hpfriends_graph::history::{Filter, Person, Retention};
use hpfriends_graph::{Actor, Command};

use super::openapi::ApiErrors;
use super::{write, Body, QueryOf, Reply};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::types::{Done, HistoryPage, HistoryQuery, HistoryRetention};
use crate::http::AppState;

/// Changes per page when the caller does not say, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Changes of the graph, newest first, with who made them, when and through which node.
#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(HistoryQuery), responses((status = 200, body = HistoryPage), ApiErrors))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: QueryOf<HistoryQuery>,
) -> Reply<HistoryPage> {
    let axum::extract::Query(q) = query?;
    Ok(Json(history_page(&state, &actor, q).await?))
}

pub async fn history_page(state: &AppState, actor: &Actor, q: HistoryQuery) -> Result<HistoryPage, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}, not {limit}")));
    }
    let time = |what: &str, t: Option<String>| t.map(|t| parse_time(what, &t)).transpose();
    let since = time("since", q.since)?;
    let until = time("until", q.until)?;
    let filter = state.node.read_graph(|g| {
        let viewer = match actor {
            Actor::Operator => None,
            Actor::User(me) => Some(Person::of(me, g)),
        };
        Filter { viewer, user: q.user.as_deref().map(|u| Person::of(u, g)), channel: q.channel, since, until }
    });
    let history = state.node.history().clone();
    let page = tokio::task::spawn_blocking(move || history.page(q.before, limit, |e| filter.matches(e)))
        .await
        .map_err(|e| ApiError::internal(format!("reading the history: {e}")))?
        .map_err(ApiError::internal)?;
    Ok(HistoryPage { events: page.events.into_iter().map(Into::into).collect(), next: page.next })
}

/// RFC 3339 (`2026-12-01T00:00:00Z`, or a date alone) or Unix seconds.
pub fn parse_time(what: &str, text: &str) -> Result<u64, ApiError> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{what} must be a time like 2026-12-01T00:00:00Z, a date like 2026-12-01 or Unix seconds, not {text:?}"
            ))
        })
}

/// How much history every node keeps.
#[utoipa::path(get, path = "/api/v1/history/retention", tag = "history", responses((status = 200, body = HistoryRetention), ApiErrors))]
pub async fn retention(State(state): State<AppState>, _caller: Caller) -> Reply<HistoryRetention> {
    let r = state.node.read_graph(|g| g.history_retention());
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
    write(
        &state,
        actor,
        Command::SetHistoryRetention(Retention { max_age_days: b.max_age_days, max_events: b.max_events }),
    )
    .await
}
