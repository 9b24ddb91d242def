//! The archive read back: what a user may read of what was published on a
//! channel, by the rule of docs/sharing.md ("The past").

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use hpfriends_graph::{Actor, Named};

use super::types::{ArchivedMessage, MessagesQuery};
use super::{AppError, Field};
use crate::archive::{self, Archive, Cursor, MayRead};
pub use crate::cluster::copies::Coverage;
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
    /// What this node's archive may lack (asked on the first page only).
    pub coverage: Coverage,
}

/// Before a first page: what other nodes hold that this one lacks is
/// copied first (a bounded wait); what still lacks is named.
async fn covered(state: &AppState, a: &Asked) -> Coverage {
    match a.after {
        None => crate::cluster::copies::catch_up(&state.node, &a.archive).await,
        Some(_) => Coverage::default(),
    }
}

/// What a read of the archive is about, checked.
struct Asked {
    archive: Arc<Archive>,
    me: String,
    channel: String,
    since: u64,
    until: u64,
    after: Option<Cursor>,
    publisher: Option<Vec<u8>>,
    limit: usize,
}

fn asked(state: &AppState, actor: &Actor, q: MessagesQuery) -> Result<Asked, AppError> {
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
    let asked = Asked {
        archive,
        me: me.clone(),
        channel: q.channel,
        since,
        until,
        after,
        publisher: q.publisher.map(String::into_bytes),
        limit,
    };
    readers(state, &asked)?;
    Ok(asked)
}

/// The rule of the past for the caller on the channel, as the graph is now.
fn readers(state: &AppState, a: &Asked) -> Result<MayRead, AppError> {
    state.node.read_graph(|g| {
        let listed = g.keys().any(|k| k.publish.iter().chain(&k.subscribe).any(|c| *c == a.channel));
        if !listed {
            return Err(AppError::NotFound(format!("unknown channel {:?}: no key lists it", a.channel)));
        }
        MayRead::of(g, &a.me, &a.channel).ok_or_else(|| AppError::NotFound(format!("no user {:?}", a.me)))
    })
}

/// One page of what `a` asks for, from `after`.
async fn read(a: &Asked, readers: MayRead, after: Option<Cursor>, limit: usize) -> Result<archive::Page, AppError> {
    let read = archive::Read {
        channel: a.channel.clone().into_bytes(),
        since_us: a.since,
        until_us: a.until,
        after,
        publisher: a.publisher.clone(),
        limit,
        max_bytes: PAGE_BYTES,
        max_scanned: PAGE_SCAN,
    };
    let archive = a.archive.clone();
    tokio::task::spawn_blocking(move || archive.read(&read, &readers))
        .await
        .map_err(|e| AppError::Internal(format!("reading the archive: {e}")))?
        .map_err(|e| AppError::Internal(format!("reading the archive: {e}")))
}

/// One page of `channel`'s archived messages that `actor` may read, oldest
/// first by chunk (each publisher's in the order published).
pub async fn page(state: &AppState, actor: &Actor, q: MessagesQuery) -> Result<MessagesPage, AppError> {
    let a = asked(state, actor, q)?;
    let coverage = covered(state, &a).await;
    let page = read(&a, readers(state, &a)?, a.after, a.limit).await?;
    let next = page.more.then(|| page.last.map(|c| c.encode())).flatten();
    Ok(MessagesPage { messages: page.messages.into_iter().map(to_api).collect(), next, coverage })
}

/// Messages sent ahead of a follower's reading.
const FOLLOW_AHEAD: usize = 16;
/// A follower with nothing new looks again at least this often.
const FOLLOW_LOOK: Duration = Duration::from_secs(1);

/// What `page` gives, every page of it, then each message the archive keeps
/// next, as it is written, until the receiver is dropped: every message the
/// caller may read once, none missed where the one turns into the other.
///
/// The seam: the archive's marks are taken first (per publishing node, the
/// next number it does not hold); the pages give only what is below them,
/// and following reads each node's messages in order from them
/// (`Archive::scan_origin`, as the copies do). Who may read what is asked of
/// the graph again at every page and every look, so a removed share stops
/// the stream's messages of its publisher at once.
pub async fn follow(
    state: &AppState,
    actor: &Actor,
    q: MessagesQuery,
) -> Result<(tokio::sync::mpsc::Receiver<ArchivedMessage>, Coverage), AppError> {
    follow_after(state, actor, q, Shown::new(), true).await
}

/// Per publishing node, the number of the last message a reader was given.
pub type Shown = std::collections::HashMap<u64, u64>;

/// `follow`, but without what `shown` says the reader has already: a stream
/// taken up again where it broke (the Live page's reconnect). Each node's
/// messages come in the order of their numbers, so that is exact. The
/// catch-up with the other nodes is the node's, not the channel's: a reader
/// of several channels asks for it with the first only.
pub async fn follow_after(
    state: &AppState,
    actor: &Actor,
    q: MessagesQuery,
    shown: Shown,
    catch_up: bool,
) -> Result<(tokio::sync::mpsc::Receiver<ArchivedMessage>, Coverage), AppError> {
    if q.until.is_some() || q.cursor.is_some() {
        return Err(AppError::invalid(Field::Time, "follow reads on from since: until and cursor cannot be given"));
    }
    let a = asked(state, actor, q)?;
    let coverage = if catch_up { covered(state, &a).await } else { Coverage::default() };
    let (tx, rx) = tokio::sync::mpsc::channel(FOLLOW_AHEAD);
    let state = state.clone();
    tokio::spawn(async move {
        let marks = a.archive.marks();
        let new = |m: &archive::Message| shown.get(&m.id.node).is_none_or(|last| m.id.seq > *last);
        let below = |m: &archive::Message| m.id.seq < marks.get(&m.id.node).copied().unwrap_or(0) && new(m);
        let mut after = None;
        loop {
            let Ok(readers) = readers(&state, &a) else { return };
            let Ok(page) = read(&a, readers, after, MAX_LIMIT).await else { return };
            for m in page.messages.into_iter().filter(below) {
                if tx.send(to_api(m)).await.is_err() {
                    return;
                }
            }
            match (page.more, page.last) {
                (true, Some(last)) => after = Some(last),
                _ => break,
            }
        }
        // Following starts past the marks, and past what was shown.
        let mut at = marks;
        for (node, last) in &shown {
            let from = at.entry(*node).or_default();
            *from = (*from).max(last + 1);
        }
        let mut written = a.archive.watch_written();
        // Until the reader hangs up: checked on every look, as a busy archive
        // may hold nothing for it to be sent for a long while.
        while !tx.is_closed() {
            let Ok(readers) = readers(&state, &a) else { return };
            let mut moved = false;
            for (node, held) in a.archive.marks() {
                let from = at.get(&node).copied().unwrap_or(0);
                if from >= held {
                    continue;
                }
                let (archive, channel) = (a.archive.clone(), a.channel.clone());
                let scan = tokio::task::spawn_blocking(move || {
                    archive.scan_origin(node, from, Some(channel.as_bytes()), 1024, PAGE_BYTES)
                });
                let Ok(Ok(scanned)) = scan.await else { return };
                moved |= scanned.next > from;
                at.insert(node, scanned.next);
                for m in scanned.messages {
                    let wanted = a.publisher.as_deref().is_none_or(|p| p == &m.ident[..]) && m.id.time_us >= a.since;
                    let Some(m) = readers.admit(m, archive::now_us()).filter(|_| wanted) else { continue };
                    if tx.send(to_api(m)).await.is_err() {
                        return;
                    }
                }
            }
            if !moved {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = written.changed() => {}
                    _ = tokio::time::sleep(FOLLOW_LOOK) => {}
                }
            }
        }
    });
    Ok((rx, coverage))
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
