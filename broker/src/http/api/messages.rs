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
#[utoipa::path(get, path = "/api/v1/messages", tag = "messages", params(MessagesQuery),
    responses((status = 200, description = "One message per line", body = ArchivedMessage, content_type = "application/x-ndjson"), ApiErrors))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: QueryOf<MessagesQuery>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) = query?;
    if q.follow == Some(true) {
        use futures::StreamExt;
        let messages = messages::follow(&state, &actor, q).await?;
        let lines = tokio_stream::wrappers::ReceiverStream::new(messages).map(|m| {
            let mut line = serde_json::to_vec(&m).unwrap_or_default();
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
        });
        let body = axum::body::Body::from_stream(lines);
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response());
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
    if let Some(cursor) = page.next {
        let link = format!("</api/v1/messages?{again}&cursor={cursor}>; rel=\"next\"");
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
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
