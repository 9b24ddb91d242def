//! `/api/v1/messages`: the archive, as NDJSON.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::openapi::ApiErrors;
use super::QueryOf;
use crate::app::messages;
use crate::app::types::{ArchivedMessage, MessagesQuery};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::state::AppState;

/// What was published on a channel that the caller may read, oldest first
/// (each publisher's messages in the order published; different nodes'
/// interleaved by the batches the archive wrote), one JSON object per line. A message reaches the caller if the sharing
/// graph lets them read its publisher now and the path that lets them was in
/// place when it was published (docs/sharing.md, "The past"). When there may
/// be more, `Link: <…>; rel="next"` gives the next page. With `follow=true`
/// the answer does not end: every page, then each message as it is archived.
///
/// Served from this node's archive. Before the first page the node asks the
/// others how far theirs go and waits (up to 5 s) for the copies of what one
/// holds and it lacks (a node back from being down, or new). What it may
/// still lack is named in headers: `Hpfriends-Unreachable` (nodes that did
/// not answer: what only they hold is missing) and `Hpfriends-Not-Copied`
/// (publishing nodes whose messages are not all copied here yet).
#[utoipa::path(get, path = "/api/v1/messages", tag = "messages", params(MessagesQuery),
    responses((status = 200, description = "One message per line", body = ArchivedMessage, content_type = "application/x-ndjson",
        headers(
            ("Hpfriends-Unreachable" = String, description = "Node ids, comma-separated, that did not say how far their archives go"),
            ("Hpfriends-Not-Copied" = String, description = "Publishing node ids, comma-separated, whose messages another node holds and this one has not copied yet"),
        )), ApiErrors))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: QueryOf<MessagesQuery>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) = query?;
    if q.follow == Some(true) {
        use futures::StreamExt;
        let (messages, coverage) = messages::follow(&state, &actor, q).await?;
        let lines = tokio_stream::wrappers::ReceiverStream::new(messages).map(|m| {
            let mut line = serde_json::to_vec(&m).unwrap_or_default();
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
        });
        let body = axum::body::Body::from_stream(lines);
        let mut response = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
        name_what_lacks(&mut response, &coverage);
        return Ok(response);
    }
    let again = next_query(&q);
    let page = messages::page(&state, &actor, q).await?;
    let mut body = Vec::with_capacity(page.messages.iter().map(|m| m.payload_b64.len() * 2 + 128).sum());
    for m in &page.messages {
        serde_json::to_writer(&mut body, m)
            .map_err(|e| ApiError::from(crate::app::AppError::Internal(e.to_string())))?;
        body.push(b'\n');
    }
    let mut response = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    name_what_lacks(&mut response, &page.coverage);
    if let Some(cursor) = page.next {
        let link = format!("</api/v1/messages?{again}&cursor={cursor}>; rel=\"next\"");
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// Nodes that did not answer, and publishing nodes whose messages another
/// node holds and this one has not copied yet: the answer may lack theirs.
pub const UNREACHABLE: &str = "hpfriends-unreachable";
pub const NOT_COPIED: &str = "hpfriends-not-copied";

fn name_what_lacks(response: &mut Response, coverage: &messages::Coverage) {
    for (name, nodes) in [(UNREACHABLE, &coverage.unreachable), (NOT_COPIED, &coverage.not_copied)] {
        if !nodes.is_empty() {
            let list: Vec<String> = nodes.iter().map(u64::to_string).collect();
            if let Ok(value) = header::HeaderValue::from_str(&list.join(", ")) {
                response.headers_mut().insert(name, value);
            }
        }
    }
}

/// The query of the next page, but its cursor.
fn next_query(q: &MessagesQuery) -> String {
    use crate::app::types::urlencode as enc;
    let mut parts = vec![format!("channel={}", enc(&q.channel))];
    for (key, value) in [("since", &q.since), ("until", &q.until), ("publisher", &q.publisher)] {
        if let Some(v) = value {
            parts.push(format!("{key}={}", enc(v)));
        }
    }
    if let Some(limit) = q.limit {
        parts.push(format!("limit={limit}"));
    }
    parts.join("&")
}
