//! Live: the messages reaching my channels now. The page's script opens
//! `/live/events` (server-sent events); the node makes that stream one more
//! subscriber of the switchboard, owned by the signed-in user, so it gets exactly
//! what an hpfeeds subscriber of that user would: the same index, the same
//! snapshot per publish, the same cross-node fan-out, and a byte bound on
//! its queue. A browser that stops reading is closed as a slow consumer;
//! publishers never wait for it.
//!
//! Started from a point in the past (`from=15m|1h|1d`), the stream follows
//! the archive instead (`app::messages::follow`, one per channel): what the
//! user may read of the past, by the rule of the past, then each message as
//! it is archived. A browser that stops reading then holds its followers
//! back, a few messages each, and is not closed.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hpfriends_graph::Actor;
use maud::{html, Markup};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::forms::channel_list;
use super::layout::{page, render, text_input, InputAttrs};
use super::session::{ClientIp, SignedInUser};
use crate::app::messages::Shown;
use crate::app::types::{ArchivedMessage, MessagesQuery};
use crate::app::AppError;
use crate::hpfeeds::close::CloseReason;
use crate::hpfeeds::outbound::{outbound, OutboundReceiver};
use crate::protocol::frame::{decode, Limits};
use crate::protocol::Frame;
use crate::routing::{Subscriber, Switchboard};
use crate::state::AppState;
use crate::telemetry;

/// Channels one page may watch.
pub const MAX_CHANNELS: usize = 16;
/// A browser's queue; past it the browser is closed as a slow consumer.
pub const QUEUE_BYTES: usize = 1 << 20;
/// Payload bytes sent to the browser per message; the size tells the rest.
const SHOWN_BYTES: usize = 16 * 1024;
/// Live streams open at once, per user, per client address and per node:
/// each may hold a queue. The address bound keeps a few hundred accounts of
/// one attacker (open sign-up) from taking every place of the node.
pub const STREAMS_PER_USER: usize = 4;
pub const STREAMS_PER_ADDRESS: usize = 32;
pub const STREAMS_PER_NODE: usize = 1_000;

/// The Live streams open on this node, by user and by address.
#[derive(Default)]
pub struct Streams {
    open: std::sync::Mutex<Open>,
}

#[derive(Default)]
struct Open {
    by_user: HashMap<String, usize>,
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// One open stream; closing it (dropping this) frees its place.
struct Ticket {
    streams: std::sync::Arc<Streams>,
    user: String,
    address: IpAddr,
}

impl Streams {
    fn open(self: &std::sync::Arc<Self>, user: &str, address: IpAddr) -> Result<Ticket, String> {
        let mut open = self.open.lock().expect("live streams lock");
        let refused = |limit: &'static str, why: String| {
            metrics::counter!(telemetry::LIVE_STREAMS_REFUSED.name, "limit" => limit).increment(1);
            Err(why)
        };
        if open.by_user.get(user).copied().unwrap_or(0) >= STREAMS_PER_USER {
            return refused("user", format!("you have {STREAMS_PER_USER} Live pages open already: close one first"));
        }
        if open.by_address.get(&address).copied().unwrap_or(0) >= STREAMS_PER_ADDRESS {
            return refused("address", format!("{STREAMS_PER_ADDRESS} Live pages are open from your address already"));
        }
        if open.total >= STREAMS_PER_NODE {
            return refused("node", "this node streams to as many Live pages as it may now: try again later".into());
        }
        *open.by_user.entry(user.to_string()).or_default() += 1;
        *open.by_address.entry(address).or_default() += 1;
        open.total += 1;
        metrics::gauge!(telemetry::LIVE_STREAMS.name).set(open.total as f64);
        Ok(Ticket { streams: self.clone(), user: user.to_string(), address })
    }
}

/// Counts one place less; the entry goes at zero, so the maps hold only open streams.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("live streams lock");
        release(&mut open.by_user, &self.user);
        release(&mut open.by_address, &self.address);
        open.total -= 1;
        metrics::gauge!(telemetry::LIVE_STREAMS.name).set(open.total as f64);
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LiveQuery {
    /// Channels, separated by commas or spaces.
    channels: String,
    /// Start this long ago (one of `FROM`), or now when empty.
    from: String,
}

/// Where the page may start, and how it names them.
const FROM: [(&str, &str); 4] = [("", "now"), ("15m", "15 minutes ago"), ("1h", "an hour ago"), ("1d", "a day ago")];

/// How far back `from` asks to start, or what is wrong with it.
fn start_from(from: &str) -> Result<Option<std::time::Duration>, String> {
    match FROM.iter().find(|(v, _)| *v == from) {
        Some(("", _)) => Ok(None),
        Some((v, _)) => Ok(Some(humantime::parse_duration(v).expect("listed spans parse"))),
        None => Err(format!("start from now, 15m, 1h or 1d, not {from:?}")),
    }
}

/// The channels asked for, or what is wrong with them.
fn asked(text: &str) -> Result<Vec<String>, String> {
    let channels = channel_list(text);
    if channels.len() > MAX_CHANNELS {
        return Err(format!("at most {MAX_CHANNELS} channels at once, not {}", channels.len()));
    }
    for c in &channels {
        hpfriends_graph::names::check_wire_name(hpfriends_graph::Named::Channel, c).map_err(|e| e.to_string())?;
    }
    Ok(channels)
}

pub async fn show(State(state): State<AppState>, u: SignedInUser, Query(q): Query<LiveQuery>) -> Response {
    let SignedInUser(signed, me) = &u;
    let readable = crate::app::shares::readable_channels(&state, me);
    let chosen = asked(&q.channels).and_then(|c| start_from(&q.from).map(|_| c));
    let watching = chosen.as_ref().ok().filter(|c| !c.is_empty()).map(|c| c.join(","));
    let archive = state.archive.is_some();
    let body: Markup = html! {
        p.lead { "The messages that reach your channels, as they arrive: what an hpfeeds subscriber of yours would get." }
        form.card method="get" action="/live" {
            (text_input(None, "channels", "Channels", &q.channels, InputAttrs {
                hint: Some("Separated by commas, at most 16."), list: Some("readable"), ..InputAttrs::text()
            }))
            datalist #readable { @for c in &readable { option value=(c) {} } }
            @if archive {
                label for="from" { "Start from" }
                select #from name="from" {
                    @for (value, name) in FROM { option value=(value) selected[q.from == value] { (name) } }
                }
                p.hint { "From the past: what you may read of it, kept in the archive, then on live." }
            }
            @if let Err(e) = &chosen { p.error role="alert" { (e) } }
            button.primary type="submit" { "Watch" }
        }
        @if !readable.is_empty() {
            p.hint { "You can read: " @for c in &readable { code.chip { (c) } " " } }
        }
        @if let Some(channels) = &watching {
            section #live data-channels=(channels) data-from=(q.from) aria-labelledby="live-title" {
                h2 #live-title { "On " code { (channels) } }
                noscript { p.error { "The live view needs JavaScript." } }
                p.live-bar {
                    span #live-status role="status" { "Connecting…" } " "
                    span #live-rate { "0" } " messages/s "
                    button #live-pause type="button" aria-pressed="false" { "Pause" }
                }
                table #live-messages {
                    caption.visually-hidden { "Messages, newest first" }
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Channel" } th scope="col" { "Publisher" } th scope="col" { "Payload" } } }
                    tbody {}
                }
            }
        }
    };
    let status = if chosen.is_err() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    render(status, page("Live", Some(signed), "/live", body))
}

/// The stream's subscriptions, removed when the browser goes.
struct Subscribed {
    switchboard: std::sync::Arc<Switchboard>,
    conn: u64,
    channels: Vec<Bytes>,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.switchboard.remove_connection(self.conn, &self.channels);
    }
}

/// Where a stream's messages come from.
enum Source {
    /// The switchboard, as an hpfeeds subscriber.
    Now { queue: OutboundReceiver, close: CancellationToken, _subscribed: Subscribed },
    /// The archive, from a point in the past on, a follower per channel, and
    /// per channel what was sent (each event's id: a reconnect goes on from it).
    Past {
        followers: futures::stream::SelectAll<tokio_stream::wrappers::ReceiverStream<ArchivedMessage>>,
        shown: Vec<(String, Shown)>,
    },
}

struct Live {
    state: AppState,
    user: String,
    cookie: String,
    source: Source,
    views: tokio::sync::watch::Receiver<u64>,
    pending: VecDeque<Event>,
    done: bool,
    /// When the session ends by itself: the stream ends then too, even on a
    /// cluster where nothing changes.
    expires: tokio::time::Instant,
    _ticket: Ticket,
}

pub async fn events(
    State(state): State<AppState>,
    State(streams): State<std::sync::Arc<Streams>>,
    u: SignedInUser,
    ClientIp(ip): ClientIp,
    Query(q): Query<LiveQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let SignedInUser(signed, me) = u;
    // An EventSource that reconnects sends the last event's id.
    let last_event = headers.get("last-event-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let (channels, from) = match (asked(&q.channels), start_from(&q.from)) {
        (Ok(c), Ok(from)) if !c.is_empty() => (c, from),
        (Ok(_), Ok(_)) => return (StatusCode::BAD_REQUEST, "name at least one channel").into_response(),
        (Err(e), _) | (_, Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let Some(owner) = state.node.read_graph(|g| g.user_id(&me)) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let ticket = match streams.open(&me, ip) {
        Ok(t) => t,
        Err(why) => return (StatusCode::TOO_MANY_REQUESTS, why).into_response(),
    };
    let source = match from {
        None => subscribe(&state, owner, channels),
        Some(ago) => match follow(&state, &me, channels, ago, last_event).await {
            Ok(source) => source,
            Err(e) => return (e.status(), e.to_string()).into_response(),
        },
    };
    let views = state.switchboard.watch_views();
    let expires = session_deadline(&state, &signed.cookie);
    let live = Live {
        expires,
        state,
        user: me,
        cookie: signed.cookie,
        source,
        views,
        pending: VecDeque::from([Event::default().event("open").data("connected")]),
        done: false,
        _ticket: ticket,
    };
    let stream = futures::stream::unfold(live, |mut live| async move {
        live.next().await.map(|event| (Ok::<_, Infallible>(event), live))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The stream as one more subscriber of the switchboard.
fn subscribe(state: &AppState, owner: hpfriends_graph::UserId, channels: Vec<String>) -> Source {
    let conn = state.connections.new_connection_id();
    let close = CancellationToken::new();
    let (out, queue) = outbound(QUEUE_BYTES, close.clone());
    let channels: Vec<Bytes> = channels.into_iter().map(Bytes::from).collect();
    for c in &channels {
        state.switchboard.subscribe(c.clone(), Subscriber { conn, owner, out: out.clone() });
    }
    let subscribed = Subscribed { switchboard: state.switchboard.clone(), conn, channels };
    Source::Now { queue, close, _subscribed: subscribed }
}

/// The stream as followers of the archive from `ago` on, without what
/// `last_event` (an event id of `shown_id`) says was sent already.
async fn follow(
    state: &AppState,
    me: &str,
    channels: Vec<String>,
    ago: std::time::Duration,
    last_event: &str,
) -> Result<Source, AppError> {
    let since = std::time::SystemTime::now().checked_sub(ago).unwrap_or(std::time::UNIX_EPOCH);
    let since = since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut before = parse_shown(last_event, channels.len());
    let mut followers = Vec::new();
    let mut shown = Vec::new();
    for (i, channel) in channels.into_iter().enumerate() {
        let before = std::mem::take(&mut before[i]);
        let q = MessagesQuery {
            channel: channel.clone(),
            since: Some(since.to_string()),
            follow: Some(true),
            ..Default::default()
        };
        let actor = Actor::User(me.to_string());
        let (rx, _) = crate::app::messages::follow_after(state, &actor, q, before.clone(), i == 0).await?;
        followers.push(tokio_stream::wrappers::ReceiverStream::new(rx));
        shown.push((channel, before));
    }
    Ok(Source::Past { followers: futures::stream::select_all(followers), shown })
}

/// Nodes per channel an event id names, at most (a cluster has a few).
const ID_NODES: usize = 64;

/// An event id: per channel, in the order asked, `node.seq` of the last
/// message sent from each node, `-` between nodes and `_` between channels.
fn shown_id(shown: &[(String, Shown)]) -> String {
    let channel = |s: &Shown| {
        let mut nodes: Vec<_> = s.iter().collect();
        nodes.sort();
        nodes.iter().map(|(n, q)| format!("{n}.{q}")).collect::<Vec<_>>().join("-")
    };
    shown.iter().map(|(_, s)| channel(s)).collect::<Vec<_>>().join("_")
}

/// What `shown_id` wrote, for `channels` channels; anything else (a
/// client's own id, a different channel list) as nothing shown.
fn parse_shown(id: &str, channels: usize) -> Vec<Shown> {
    let parse = || -> Option<Vec<Shown>> {
        let parts: Vec<&str> = id.split('_').collect();
        if id.is_empty() || parts.len() != channels {
            return None;
        }
        parts
            .iter()
            .map(|part| {
                let nodes: Vec<&str> = part.split('-').filter(|n| !n.is_empty()).collect();
                if nodes.len() > ID_NODES {
                    return None;
                }
                nodes
                    .iter()
                    .map(|n| n.split_once('.').and_then(|(n, q)| Some((n.parse().ok()?, q.parse().ok()?))))
                    .collect::<Option<Shown>>()
            })
            .collect()
    };
    parse().unwrap_or_else(|| vec![Shown::new(); channels])
}

impl Live {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let source = async {
                match &mut self.source {
                    Source::Now { queue, close, .. } => tokio::select! {
                        biased;
                        _ = close.cancelled() => {
                            let reason = queue.slow_consumer().unwrap_or(CloseReason::SlowConsumer { between_nodes: false });
                            reason.count(None);
                            Err("closed: too slow to keep up, messages were dropped")
                        }
                        frames = queue.rx.recv() => Ok(frames.map(|frames| {
                            queue.written(frames.len());
                            messages(&frames)
                        })),
                    },
                    Source::Past { followers, shown } => Ok(followers.next().await.map(|m| {
                        if let Some((_, s)) = shown.iter_mut().find(|(c, _)| *c == m.channel) {
                            s.insert(m.node, m.seq);
                        }
                        vec![archived(&m).id(shown_id(shown))]
                    })),
                }
            };
            tokio::select! {
                got = source => match got {
                    Ok(Some(events)) => self.pending.extend(events),
                    Ok(None) => self.done = true,
                    Err(why) => self.end(why),
                },
                changed = self.views.changed() => {
                    // Signed out, disabled or removed: the stream ends with the session.
                    let still = crate::app::accounts::session_actor(&self.state, &self.cookie);
                    if changed.is_err() || still != Some(Actor::User(self.user.clone())) {
                        self.end("closed: signed out");
                    }
                }
                _ = tokio::time::sleep_until(self.expires) => {
                    if crate::app::accounts::session_actor(&self.state, &self.cookie).is_none() {
                        self.end("closed: the sign-in expired");
                    } else {
                        self.expires = session_deadline(&self.state, &self.cookie);
                    }
                }
            }
        }
    }

    fn end(&mut self, why: &str) {
        self.pending.push_back(Event::default().event("closed").data(why));
        self.done = true;
    }
}

/// When the session of `cookie` expires (now, if it has).
fn session_deadline(state: &AppState, cookie: &str) -> tokio::time::Instant {
    let now = crate::app::accounts::now();
    let left = crate::app::accounts::session_expiry(state, cookie).map_or(0, |at| at.saturating_sub(now));
    // A second past the expiry, so the check then finds it over.
    tokio::time::Instant::now() + std::time::Duration::from_secs(left + 1)
}

/// One event per PUBLISH in `frames` (one frame, or a run of them from a peer).
fn messages(frames: &[u8]) -> Vec<Event> {
    let mut buf = BytesMut::from(frames);
    let limits = Limits { max_publish_body: usize::MAX >> 1 };
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut events = Vec::new();
    while let Ok(Some(Frame::Publish(p))) = decode(&mut buf, &limits) {
        events.push(event(at, &String::from_utf8_lossy(p.ident()), &String::from_utf8_lossy(p.channel()), p.payload()));
    }
    events
}

/// An archived message's event, at the time it was published.
fn archived(m: &ArchivedMessage) -> Event {
    use base64::Engine;
    let at = humantime::parse_rfc3339(&m.time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let payload = base64::engine::general_purpose::STANDARD.decode(&m.payload_b64).unwrap_or_default();
    event(at, &m.ident, &m.channel, &payload)
}

fn event(at: u64, ident: &str, channel: &str, payload: &[u8]) -> Event {
    let (kind, shown) = shown(payload);
    let data = serde_json::json!({
        "at": at,
        "ident": ident,
        "channel": channel,
        "size": payload.len(),
        "kind": kind,
        "payload": shown,
    });
    Event::default().data(data.to_string())
}

/// JSON pretty-printed, text as text, anything else as hex; at most `SHOWN_BYTES` of it.
fn shown(payload: &[u8]) -> (&'static str, String) {
    let part = &payload[..payload.len().min(SHOWN_BYTES)];
    if part.len() == payload.len() {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) {
            if value.is_object() || value.is_array() {
                return ("json", serde_json::to_string_pretty(&value).expect("a value serializes"));
            }
        }
    }
    match std::str::from_utf8(part) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => ("text", text.to_string()),
        _ => ("binary", hex::encode(part)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_payloads_then_json_is_pretty_text_is_text_and_the_rest_hex() {
        assert_eq!(shown(br#"{"src_ip":"192.0.2.1","port":22}"#).0, "json");
        assert!(shown(br#"{"src_ip":"192.0.2.1"}"#).1.contains("\n  \"src_ip\""));
        assert_eq!(shown(b"login attempt root/123456"), ("text", "login attempt root/123456".to_string()));
        assert_eq!(shown(&[0x7f, 0x45, 0x4c, 0x46, 0x00]), ("binary", "7f454c4600".to_string()));
        let big = vec![b'a'; SHOWN_BYTES * 2];
        assert_eq!(shown(&big).1.len(), SHOWN_BYTES, "at most 16 KiB is shown");
    }

    #[test]
    fn given_a_run_of_frames_then_one_event_each() {
        let mut run = crate::protocol::frame::PublishFrame::new(b"s", b"c", b"one").raw().to_vec();
        run.extend_from_slice(crate::protocol::frame::PublishFrame::new(b"s", b"c", b"two").raw());
        assert_eq!(messages(&run).len(), 2);
    }

    #[test]
    fn given_four_open_streams_then_a_fifth_of_that_user_is_refused_until_one_closes() {
        let streams = std::sync::Arc::new(Streams::default());
        let here = IpAddr::from([192, 0, 2, 1]);
        let tickets: Vec<Ticket> = (0..STREAMS_PER_USER).map(|_| streams.open("jojo", here).unwrap()).collect();
        assert!(streams.open("jojo", here).err().expect("a fifth is refused").contains("close one first"));
        let other = streams.open("mark", here).unwrap();
        drop(tickets);
        drop(other);
        let open = streams.open.lock().unwrap();
        assert!(open.by_user.is_empty() && open.by_address.is_empty() && open.total == 0);
        drop(open);
        assert!(streams.open("jojo", here).is_ok());
    }

    #[test]
    fn given_many_accounts_from_one_address_then_they_get_a_bounded_share_of_the_node() {
        let streams = std::sync::Arc::new(Streams::default());
        let (one, other) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let held: Vec<Ticket> =
            (0..STREAMS_PER_ADDRESS).map(|i| streams.open(&format!("u{i}"), one).unwrap()).collect();
        let refused = streams.open("one-more", one).err().expect("the address is full");
        assert!(refused.contains("from your address"), "{refused}");
        assert!(streams.open("one-more", other).is_ok(), "another address still gets a place");
        drop(held);
        assert!(streams.open("one-more", one).is_ok());
    }

    #[test]
    fn given_too_many_or_bad_channels_then_refused_with_the_reason() {
        let many = (0..=MAX_CHANNELS).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        assert!(asked(&many).unwrap_err().contains("at most 16 channels"));
        assert!(asked("a,\u{7}").unwrap_err().contains("control characters"));
        assert_eq!(asked("a, b a").unwrap(), ["a", "b"]);
    }
}
