//! The graph as a whole: `explain`, `apply` (a declaration).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hpfriends_graph::Actor;

use super::openapi::ApiErrors;
use super::{QueryOf, Reply};
use crate::app::graph;
use crate::app::types::{Applied, ApplyQuery, ExplainAnswer, ExplainQuery};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Declarations (`ctl apply`) can be large; everything else is small.
pub const MAX_APPLY_BODY: usize = 64 * 1024 * 1024;
/// A user's declaration holds their own keys and shares only.
const MAX_USER_APPLY_BODY: usize = 1024 * 1024;

/// The path that lets `to` read `from`'s data on `channel`, or none. A user
/// may ask about paths that start or end with them.
#[utoipa::path(get, path = "/api/v1/explain", tag = "graph", params(ExplainQuery), responses((status = 200, body = ExplainAnswer), ApiErrors))]
pub async fn explain(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: QueryOf<ExplainQuery>,
) -> Reply<ExplainAnswer> {
    let axum::extract::Query(q) = query?;
    let explanation = graph::explain(&state, &actor, &q.from, &q.to, &q.channel)?;
    let text = explanation.to_string();
    Ok(Json(ExplainAnswer { explanation, text }))
}

/// Makes the graph contain the declaration, as one entry: all or nothing.
#[utoipa::path(post, path = "/api/v1/apply", tag = "graph", params(ApplyQuery), request_body = hpfriends_graph::declare::Declaration, responses((status = 200, body = Applied), ApiErrors))]
pub async fn apply(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: QueryOf<ApplyQuery>,
    request: axum::extract::Request,
) -> Reply<Applied> {
    let axum::extract::Query(q) = query?;
    let limit = if actor == Actor::Operator { MAX_APPLY_BODY } else { MAX_USER_APPLY_BODY };
    let bytes = axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a declaration from this caller may be at most {limit} bytes"),
        )
    })?;
    let applied = graph::apply(&state, actor, &bytes, q.allow_short_secrets).await?;
    Ok(Json(Applied { ok: true, changes: applied.changes, warnings: applied.warnings }))
}
