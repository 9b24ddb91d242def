//! The archive read back: what a user may read of what was published on a
//! channel, by the rule of docs/sharing.md ("The past").

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use hpfriends_graph::{Actor, Named};

use super::types::{ArchivedMessage, MessagesQuery};
use super::{AppError, Field};
use crate::archive::{self, Cursor};
use crate::state::AppState;

/// Messages per page when the caller does not say, and at most.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
/// A page's payloads, at most: a page is held in memory while it is sent.
const PAGE_BYTES: usize = 16 * 1024 * 1024;
/// Messages looked at for one page, at most: a reader who may read little of
/// a busy channel gets short pages, not a long scan.
const PAGE_SCAN: usize = 100_000;

pub struct MessagesPage {
    pub messages: Vec<ArchivedMessage>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<String>,
}

/// One page of `channel`'s archived messages that `actor` may read, oldest
/// first by chunk (each publisher's in the order published).
pub async fn page(state: &AppState, actor: &Actor, q: MessagesQuery) -> Result<MessagesPage, AppError> {
    let Some(archive) = state.archive.clone() else {
        return Err(AppError::NotFound("this node keeps no archive (archive = false)".into()));
    };
    let Actor::User(me) = actor else {
        return Err(AppError::Forbidden(
            "messages are read as a user, by the sharing graph: the operator token reads none".into(),
        ));
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid(Field::Limit, format!("limit must be 1 to {MAX_LIMIT}, not {limit}")));
    }
    hpfriends_graph::names::check_wire_name(Named::Channel, &q.channel)?;
    let since = q.since.as_deref().map(|t| parse_instant("since", t)).transpose()?.unwrap_or(0);
    let until = q.until.as_deref().map(|t| parse_instant("until", t)).transpose()?.unwrap_or(u64::MAX);
    if since > until {
        return Err(AppError::invalid(Field::Time, "since is after until"));
    }
    let after = match &q.cursor {
        Some(cursor) => Some(Cursor::decode(cursor).ok_or_else(|| {
            AppError::invalid(Field::Cursor, format!("cursor {cursor:?} is not one this API gave (56 hex digits)"))
        })?),
        None => None,
    };
    let readers = state.node.read_graph(|g| {
        let listed = g.keys().any(|k| k.publish.iter().chain(&k.subscribe).any(|c| *c == q.channel));
        if !listed {
            return Err(AppError::NotFound(format!("unknown channel {:?}: no key lists it", q.channel)));
        }
        g.past_readers(me, &q.channel).ok_or_else(|| AppError::NotFound(format!("no user {me:?}")))
    })?;
    let read = archive::Read {
        channel: q.channel.into_bytes(),
        since_us: since,
        until_us: until,
        after,
        publisher: q.publisher.map(String::into_bytes),
        limit,
        max_bytes: PAGE_BYTES,
        max_scanned: PAGE_SCAN,
    };
    let page = tokio::task::spawn_blocking(move || archive.read(&read, &readers))
        .await
        .map_err(|e| AppError::Internal(format!("reading the archive: {e}")))?
        .map_err(|e| AppError::Internal(format!("reading the archive: {e}")))?;
    let next = page.more.then(|| page.last.map(|c| c.encode())).flatten();
    Ok(MessagesPage { messages: page.messages.into_iter().map(to_api).collect(), next })
}

fn to_api(m: archive::Message) -> ArchivedMessage {
    let time = UNIX_EPOCH + Duration::from_micros(m.id.time_us);
    ArchivedMessage {
        time: humantime::format_rfc3339_micros(time).to_string(),
        ident: String::from_utf8_lossy(&m.ident).into_owned(),
        channel: String::from_utf8_lossy(&m.channel).into_owned(),
        node: m.id.node,
        seq: m.id.seq,
        payload_b64: base64::engine::general_purpose::STANDARD.encode(&m.payload),
        payload: String::from_utf8(m.payload.to_vec()).ok(),
    }
}

/// RFC 3339 with any fraction of a second (`2026-12-01T08:00:00.250Z`), a
/// date alone, or Unix seconds; in microseconds since the epoch.
pub fn parse_instant(what: &str, text: &str) -> Result<u64, AppError> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs.saturating_mul(1_000_000));
    }
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_micros() as u64)
        .ok_or_else(|| {
            AppError::invalid(
                Field::Time,
                format!("{what} must be a time like 2026-12-01T08:00:00Z, a date like 2026-12-01 or Unix seconds, not {text:?}"),
            )
        })
}
