//! The graph as a whole: `explain`, `apply` (a declaration).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hpfriends_graph::declare::{plan, Declaration};
use hpfriends_graph::{explain as explain_path, Actor, Command};

use super::openapi::ApiErrors;
use super::{QueryOf, Reply};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::types::{Applied, ApplyQuery, ExplainAnswer, ExplainQuery};
use crate::http::AppState;

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
    if let Actor::User(me) = &actor {
        if me != &q.from && me != &q.to {
            return Err(ApiError::forbidden("a user can only ask about paths that start or end with them"));
        }
    }
    let explanation = state.node.read_graph(|g| {
        for u in [&q.from, &q.to] {
            if !g.has_user(u) {
                return Err(ApiError::from(hpfriends_graph::GraphError::UnknownUser(u.clone())));
            }
        }
        Ok(explain_path(g, &q.from, &q.to, &q.channel))
    })?;
    let text = explanation.to_string();
    Ok(Json(ExplainAnswer { explanation, text }))
}

/// Makes the graph contain the declaration, as one entry: all or nothing.
#[utoipa::path(post, path = "/api/v1/apply", tag = "graph", params(ApplyQuery), request_body = Declaration, responses((status = 200, body = Applied), ApiErrors))]
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
    let decl: Declaration = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("invalid declaration: {e}"))
    })?;
    let commands = state.node.read_graph(|g| plan(&decl, g)).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let warnings = if q.allow_short_secrets {
        short_secrets(&commands, state.min_key_secret_len)
    } else {
        refuse_short_secrets(&commands, state.min_key_secret_len)?;
        Vec::new()
    };
    let changes = commands.len();
    if changes > 0 {
        super::execute(&state, actor, Command::Batch { commands }).await?;
    }
    Ok(Json(Applied { ok: true, changes, warnings }))
}

/// What is wrong with each new key whose secret is shorter than `min`.
fn short_secrets(commands: &[Command], min: usize) -> Vec<String> {
    let mut found = Vec::new();
    for c in commands {
        match c {
            Command::AddKey(k) if k.secret.chars().count() < min => found.push(format!(
                "the secret of key {:?} is {} characters long, shorter than {min}",
                k.ident,
                k.secret.chars().count()
            )),
            Command::Batch { commands } => found.extend(short_secrets(commands, min)),
            _ => {}
        }
    }
    found
}

pub fn refuse_short_secrets(commands: &[Command], min: usize) -> Result<(), ApiError> {
    let short = short_secrets(commands, min);
    if short.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!("{}: give a longer secret, or none to get a generated one", short.join("; "))))
}
