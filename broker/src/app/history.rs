//! The audit trail of the graph. The operator sees every change; a user the
//! changes that touch them: them and their groups, not earlier holders of
//! those names.

use hpfriends_graph::history::{Filter, Person, Retention};
use hpfriends_graph::{Actor, Command};

use super::types::{HistoryPage, HistoryQuery};
use super::{execute, AppError, Field};
use crate::state::AppState;

/// Changes per page when the caller does not say, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Changes of the graph, newest first, with who made them, when and through which node.
pub async fn page(state: &AppState, actor: &Actor, q: HistoryQuery) -> Result<HistoryPage, AppError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid(Field::Limit, format!("limit must be 1 to {MAX_LIMIT}, not {limit}")));
    }
    let time = |what: &str, t: Option<String>| t.map(|t| parse_time(what, &t)).transpose();
    let since = time("since", q.since)?;
    let until = time("until", q.until)?;
    let viewer = state.node.read_graph(|g| match actor {
        Actor::Operator => Ok(None),
        Actor::User(me) => Person::of(me, g).map(Some).ok_or_else(|| AppError::NotFound(format!("no user {me:?}"))),
    })?;
    let filter = Filter { viewer, user: q.user, channel: q.channel, since, until };
    let history = state.node.history().clone();
    let page = tokio::task::spawn_blocking(move || history.page(q.before, limit, |e| filter.matches(e)))
        .await
        .map_err(|e| AppError::Internal(format!("reading the history: {e}")))?
        .map_err(AppError::Internal)?;
    Ok(HistoryPage { events: page.events.into_iter().map(Into::into).collect(), next: page.next })
}

/// RFC 3339 (`2026-12-01T00:00:00Z`, or a date alone) or Unix seconds; in seconds.
pub fn parse_time(what: &str, text: &str) -> Result<u64, AppError> {
    super::messages::parse_instant(what, text).map(|us| us / 1_000_000)
}

/// How much history every node keeps.
pub fn retention(state: &AppState) -> Retention {
    state.node.read_graph(|g| g.history_retention())
}

/// The operator sets how much history every node keeps; what is older goes at the next change.
pub async fn set_retention(state: &AppState, actor: Actor, retention: Retention) -> Result<(), AppError> {
    execute(state, actor, Command::SetHistoryRetention(retention)).await
}
