//! One hpfeeds client connection: INFO, AUTH, then PUBLISH / SUBSCRIBE /
//! UNSUBSCRIBE, each checked against the connection's authkey.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use hpfriends_consensus::log_budget::LogBudget;
use hpfriends_consensus::KeyEntry;
use hpfriends_graph::AuthKey;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::activity::{Activity, Connection};
use super::close::{subscription_dropped_text, CloseReason};
use super::outbound::outbound;
use super::resume::{Resumes, Session, SessionKey, Socket};
use super::socket::Transport;
use super::writer::{write_loop, FINAL_FLUSH_TIMEOUT};
use crate::auth_limit::{hpfeeds_key, AuthLimiter, Client, KnownClients};
use crate::protocol::codec::CodecError;
use crate::protocol::frame::{auth_hash, encode_error, encode_info, MAX_AUTH_BODY};
use crate::protocol::{Codec, Frame, Limits};
use crate::routing::{Subscriber, Switchboard};
use crate::telemetry;

/// Settings every session shares.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub broker_name: String,
    pub login_timeout: Duration,
    pub max_outbound_bytes: usize,
    pub limits: Limits,
    /// On drain, each connection closes at a random point of this window.
    pub close_window: Duration,
    /// Label the hpfeeds series with the ident (and channel) as hpfeeds 3.x does.
    pub metrics_per_ident: bool,
    pub max_subscriptions: usize,
}

pub struct Connections {
    pub switchboard: Arc<Switchboard>,
    pub config: ConnectionConfig,
    next_id: AtomicU64,
    publish_metrics: PublishMetrics,
    /// The close window now (µs); zero once the node stops at once.
    close_window_us: AtomicU64,
    auth_limit: AuthLimiter,
    /// Where each ident has logged in from: those are known clients to the limiter.
    known_clients: std::sync::Mutex<KnownClients>,
    /// Failed logins are logged at a bounded rate.
    failure_log: std::sync::Mutex<LogBudget>,
    /// Open connections.
    open: std::sync::atomic::AtomicUsize,
    /// Each key's connections, counts and failed logins on this node.
    pub activity: Activity,
    /// Serves resume keys' subscriptions from the archive (`archive = true`).
    resumes: Option<Arc<Resumes>>,
}

/// A connection's resume session, once its key subscribes, and what it
/// needs to know of the connection's byte stream.
struct Resuming {
    session: Option<Session>,
    socket: Socket,
    /// Bytes queued before the session began (the INFO).
    queued_before: u64,
}

/// Failed or refused logins logged per second, at most.
const FAILED_LOGINS_LOGGED_PER_SEC: u32 = 10;

/// Series of the publish path, registered once instead of looked up per message.
struct PublishMetrics {
    received: metrics::Counter,
    delivered: metrics::Counter,
    delivered_bytes: metrics::Counter,
    receive_buffer: metrics::Gauge,
    receive_buffer_fill: metrics::Counter,
}

/// Bytes asked of the socket per read: a busy publisher's frames arrive
/// hundreds per syscall (tokio-util's 8 KiB default cost seven times the reads).
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// What a connection's read buffer starts with: an AUTH and a sensor's
/// events fit. One that reads this much without waiting for its socket (a
/// busy publisher) is given `READ_BUFFER_BYTES`; a fleet of idle sensors is
/// not (64 KiB each was 65 MB of heap for 1,000 sensors).
const FIRST_READ_BUFFER_BYTES: usize = 2 * 1024;

/// With `metrics_per_ident`: the connection's publish series by channel,
/// labelled `ident` and `chan` as hpfeeds 3.x labels them.
struct PerIdent {
    ident: String,
    channels: std::collections::HashMap<Bytes, (metrics::Counter, metrics::Histogram)>,
}

impl PerIdent {
    fn record(&mut self, channel: &[u8], size: usize) {
        let (count, sizes) = match self.channels.get(channel) {
            Some(series) => series,
            None => {
                let labels = [("ident", self.ident.clone()), ("chan", String::from_utf8_lossy(channel).into_owned())];
                let series = (
                    metrics::counter!(telemetry::RECEIVE_PUBLISH_COUNT.name, &labels),
                    metrics::histogram!(telemetry::RECEIVE_PUBLISH_SIZE.name, &labels),
                );
                self.channels.entry(Bytes::copy_from_slice(channel)).or_insert(series)
            }
        };
        count.increment(1);
        sizes.record(size as f64);
    }
}

/// One session's publish counts not yet added to the shared counters: added
/// once per read from the client (and at the end) instead of per message.
struct PendingCounts<'a> {
    metrics: &'a PublishMetrics,
    connection: &'a Connection,
    /// Of the key, whether or not series are kept per ident.
    published: u64,
    published_bytes: u64,
    received: u64,
    sizes: telemetry::SessionSizes,
    delivered: u64,
    delivered_bytes: u64,
    /// Bytes of the read buffer last added to the receive-buffer gauge.
    buffered: usize,
    buffer_grew: bool,
}

impl PendingCounts<'_> {
    fn flush(&mut self) {
        if self.published > 0 {
            self.connection.published(self.published, self.published_bytes);
            (self.published, self.published_bytes) = (0, 0);
        }
        self.sizes.flush();
        if self.received == 0 && self.delivered == 0 {
            return;
        }
        let m = self.metrics;
        m.received.increment(self.received);
        m.delivered.increment(self.delivered);
        m.delivered_bytes.increment(self.delivered_bytes);
        (self.received, self.delivered, self.delivered_bytes) = (0, 0, 0);
    }

    /// Before waiting for the client: what its read buffer holds now.
    fn read_buffer(&mut self, len: usize, capacity: usize) {
        if len != self.buffered {
            self.metrics.receive_buffer.increment(len as f64 - self.buffered as f64);
            self.buffered = len;
        }
        if capacity > READ_BUFFER_BYTES && !self.buffer_grew {
            self.buffer_grew = true;
            self.metrics.receive_buffer_fill.increment(1);
        }
    }
}

impl Drop for PendingCounts<'_> {
    fn drop(&mut self) {
        self.flush();
        self.read_buffer(0, 0);
    }
}

impl Connections {
    pub fn new(switchboard: Arc<Switchboard>, config: ConnectionConfig) -> Self {
        let publish_metrics = PublishMetrics {
            received: metrics::counter!(telemetry::RECEIVE_PUBLISH_COUNT.name),
            delivered: metrics::counter!(telemetry::MESSAGES_DELIVERED.name),
            delivered_bytes: metrics::counter!(telemetry::BYTES_DELIVERED.name),
            receive_buffer: metrics::gauge!(telemetry::RECEIVE_BUFFER_SIZE.name),
            receive_buffer_fill: metrics::counter!(telemetry::RECEIVE_BUFFER_FILL.name),
        };
        let close_window_us = AtomicU64::new(config.close_window.as_micros() as u64);
        Connections {
            switchboard,
            config,
            next_id: AtomicU64::new(1),
            publish_metrics,
            close_window_us,
            auth_limit: AuthLimiter::for_hpfeeds(),
            known_clients: Default::default(),
            failure_log: std::sync::Mutex::new(LogBudget::per_second(FAILED_LOGINS_LOGGED_PER_SEC)),
            open: std::sync::atomic::AtomicUsize::new(0),
            activity: Activity::default(),
            resumes: None,
        }
    }

    /// Resume keys' subscriptions are served by `resumes`; without, like any key's.
    pub fn with_resumes(mut self, resumes: Option<Arc<Resumes>>) -> Self {
        self.resumes = resumes;
        self
    }

    /// An id for one more subscriber of the switchboard (a browser's live view).
    pub fn new_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Channels resume keys' sessions serve on this node.
    pub fn resume_subscriptions(&self) -> usize {
        self.resumes.as_ref().map_or(0, |r| r.subscriptions())
    }

    /// hpfeeds connections open on this node.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Each time the key table changes, the activity of keys gone from it goes.
    pub async fn forget_removed_keys(self: Arc<Self>, stop: CancellationToken) {
        let mut views = self.switchboard.watch_views();
        let mut keys = self.switchboard.view().keys.clone();
        loop {
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return },
                _ = stop.cancelled() => return,
            }
            let now = self.switchboard.view().keys.clone();
            if !Arc::ptr_eq(&now, &keys) {
                self.activity.forget_removed(&now);
                keys = now;
            }
        }
    }

    /// Connections logged in with `ident` on this node now.
    pub fn live_connections(&self, ident: &str) -> u32 {
        self.activity.live_connections(ident)
    }

    pub fn set_close_window(&self, window: Duration) {
        self.close_window_us.store(window.as_micros() as u64, Ordering::Relaxed);
    }

    /// When this connection closes within the close window: uniformly spread.
    fn close_delay(&self) -> Duration {
        let window = Duration::from_micros(self.close_window_us.load(Ordering::Relaxed));
        window.mul_f64(rand::random::<f64>())
    }

    /// Runs a connection to its end. Once `drain` is cancelled the connection
    /// closes at a random point of the close window, after flushing what is
    /// queued for it, so clients reconnect elsewhere a few at a time.
    pub async fn run<S>(self: Arc<Self>, stream: S, peer: SocketAddr, drain: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Transport + Send + 'static,
    {
        let conn = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::error_span!("conn", %peer, conn, ident = tracing::field::Empty);
        self.run_inner(conn, stream, peer, drain).instrument(span).await
    }

    async fn run_inner<S>(&self, conn: u64, stream: S, peer: SocketAddr, drain: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Transport + Send + 'static,
    {
        metrics::counter!(telemetry::CONNECTION_MADE.name).increment(1);
        metrics::gauge!(telemetry::CLIENT_CONNECTIONS.name).increment(1.0);
        self.open.fetch_add(1, Ordering::Relaxed);
        let socket = Socket { fd: stream.socket(), encrypted: S::ENCRYPTED };
        let (read_half, write_half) = tokio::io::split(stream);
        // Before AUTH no frame may be larger than an AUTH: an unauthenticated
        // client cannot make the broker buffer a megabyte PUBLISH.
        let before_auth = Limits { max_publish_body: MAX_AUTH_BODY };
        let mut reader = FramedRead::with_capacity(read_half, Codec { limits: before_auth }, FIRST_READ_BUFFER_BYTES);
        // Cancelled by an overflow or a failed write: the connection is lost.
        let close = CancellationToken::new();
        let (out, out_rx) = outbound(self.config.max_outbound_bytes, close.clone());
        let mut writer = tokio::spawn(write_loop(write_half, out_rx, close.clone()));

        let nonce: [u8; 4] = rand::random();
        let info = encode_info(self.config.broker_name.as_bytes(), &nonce);
        let mut resume = Resuming { session: None, socket, queued_before: info.len() as u64 };
        out.push(info);

        let mut channels: HashSet<Bytes> = HashSet::new();
        // The ident that logged in, as a label when series are kept per ident.
        let mut label_ident: Option<String> = None;
        let reason = match tokio::time::timeout(self.config.login_timeout, self.login(&mut reader, &nonce, peer)).await
        {
            Err(_) => CloseReason::LoginTimeout,
            Ok(Err(reason)) => reason,
            Ok(Ok(entry)) => {
                reader.decoder_mut().limits = self.config.limits;
                tracing::Span::current().record("ident", entry.key.ident.as_str());
                tracing::debug!(owner = %entry.key.owner, "authenticated");
                if self.config.metrics_per_ident {
                    label_ident = Some(entry.key.ident.clone());
                }
                metrics::counter!(telemetry::CONNECTION_READY.name, &ident_label(&label_ident)).increment(1);
                let authenticated = metrics::gauge!(telemetry::AUTHENTICATED_CONNECTIONS.name);
                authenticated.increment(1.0);
                let connection = self.activity.connected(conn, &entry.key.ident, entry.owner, peer, out.clone());
                let subscriber = Subscriber { conn, owner: entry.owner, out: out.clone() };
                let drained = async {
                    drain.cancelled().await;
                    tokio::time::sleep(self.close_delay()).await;
                };
                let reason = tokio::select! {
                    reason = self.serve(&mut reader, &entry.key, &subscriber, &connection, &mut channels, &mut resume) => reason,
                    _ = close.cancelled() => out.slow_consumer().unwrap_or(CloseReason::IoError),
                    _ = drained => CloseReason::Shutdown,
                };
                authenticated.decrement(1.0);
                self.activity.disconnected(conn, &connection);
                reason
            }
        };
        if let Some(session) = &mut resume.session {
            session.stop().await;
        }
        self.switchboard.remove_connection(conn, &channels);

        let error_text = reason.error_text();
        // A slow consumer's writer has sent its ERROR already.
        if let Some(text) = error_text.as_ref().filter(|_| !matches!(reason, CloseReason::SlowConsumer { .. })) {
            out.push_final(encode_error(text));
        }
        // The writer sends what is still queued, then closes the socket.
        drop(out);
        if tokio::time::timeout(FINAL_FLUSH_TIMEOUT + Duration::from_secs(1), &mut writer).await.is_err() {
            writer.abort();
        }
        // The socket is still open (`reader` holds it): ask it what arrived.
        if let Some(session) = resume.session {
            session.finish(reason == CloseReason::Shutdown).await;
        }

        // Failed logins are what a guesser makes by the thousand: logged at a bounded rate.
        let log =
            if reason.is_login_failure() { self.failure_log.lock().expect("log budget lock").take() } else { Some(0) };
        match log {
            None => {}
            Some(suppressed) if reason.is_error() => {
                if suppressed > 0 {
                    tracing::info!(suppressed, "failed logins not logged in the last second");
                }
                // Not the `message` field: that one is printed raw, and the text may
                // hold what the client sent (an ident with a newline in it).
                tracing::info!(reason = reason.category(), error = error_text.as_deref(), "connection closed");
            }
            Some(_) => tracing::debug!(reason = reason.category(), "connection closed"),
        }
        reason.count(label_ident.as_deref());
        metrics::counter!(telemetry::CONNECTION_LOST.name, &ident_label(&label_ident)).increment(1);
        metrics::gauge!(telemetry::CLIENT_CONNECTIONS.name).decrement(1.0);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// After AUTH: frames until the client leaves or breaks a rule.
    async fn serve<S: AsyncRead>(
        &self,
        reader: &mut FramedRead<ReadHalf<S>, Codec>,
        key: &AuthKey,
        subscriber: &Subscriber,
        connection: &Connection,
        channels: &mut HashSet<Bytes>,
        resume: &mut Resuming,
    ) -> CloseReason {
        let ident = key.ident.as_bytes();
        let mut per_ident =
            self.config.metrics_per_ident.then(|| PerIdent { ident: key.ident.clone(), channels: Default::default() });
        let mut counts = PendingCounts {
            metrics: &self.publish_metrics,
            connection,
            published: 0,
            published_bytes: 0,
            received: 0,
            sizes: Default::default(),
            delivered: 0,
            delivered_bytes: 0,
            buffered: 0,
            buffer_grew: false,
        };
        let mut views = self.switchboard.watch_views();
        views.mark_unchanged();
        let mut offers = self.switchboard.offers();
        // Bytes of PUBLISH frames read since the session last waited for its socket;
        // past FIRST_READ_BUFFER_BYTES the connection is busy and reads 64 KiB at a time.
        let (mut read_without_waiting, mut busy) = (0, false);
        loop {
            if views.has_changed().unwrap_or(false) {
                views.mark_unchanged();
                if let Some(reason) = self.recheck(key, subscriber, connection, channels, resume.session.as_ref()) {
                    return reason;
                }
            }
            // Counts go to the shared counters before the session waits for its client.
            let next = match reader.next().now_or_never() {
                Some(next) => next,
                None => {
                    read_without_waiting = 0;
                    counts.flush();
                    offers.flush();
                    counts.read_buffer(reader.read_buffer().len(), reader.read_buffer().capacity());
                    tokio::select! {
                        next = reader.next() => next,
                        // The graph changed while the client was quiet: check at once.
                        Ok(()) = views.changed() => match self.recheck(key, subscriber, connection, channels, resume.session.as_ref()) {
                            Some(reason) => return reason,
                            None => continue,
                        },
                    }
                }
            };
            let frame = match frame_or_close(next) {
                Ok(frame) => frame,
                Err(reason) => return reason,
            };
            match frame {
                Frame::Publish(publish) => {
                    if publish.ident() != ident {
                        return wrong_ident(publish.ident());
                    }
                    // Re-read the key each time: removing or narrowing it takes effect at once.
                    let view = self.switchboard.view();
                    let Some(current) = view.keys.get(&key.ident).filter(|c| same_key(c, key, subscriber)) else {
                        return revoked(key);
                    };
                    let chan = String::from_utf8_lossy(publish.channel());
                    if !current.may_publish(&chan) {
                        return CloseReason::PublishDenied { ident: key.ident.clone(), chan: chan.into() };
                    }
                    let d = self.switchboard.publish(&view, current.owner, &publish, &mut offers);
                    counts.published += 1;
                    counts.published_bytes += publish.raw().len() as u64;
                    read_without_waiting += publish.raw().len();
                    if read_without_waiting >= FIRST_READ_BUFFER_BYTES && !busy {
                        // A new buffer, not a `reserve`: the buffer's frames are shared with the
                        // subscribers, so each refill allocates anew, at the size it was made with.
                        busy = true;
                        let buffer = reader.read_buffer_mut();
                        let mut bigger = BytesMut::with_capacity(READ_BUFFER_BYTES.max(buffer.len()));
                        bigger.extend_from_slice(buffer);
                        *buffer = bigger;
                    }
                    match &mut per_ident {
                        None => {
                            counts.received += 1;
                            counts.sizes.record(publish.payload().len());
                        }
                        Some(per_ident) => per_ident.record(publish.channel(), publish.payload().len()),
                    }
                    counts.delivered += d.delivered as u64;
                    counts.delivered_bytes += (d.delivered * publish.raw().len()) as u64;
                }
                Frame::Subscribe { ident: fi, channel } => {
                    if fi != ident {
                        return wrong_ident(&fi);
                    }
                    let chan = String::from_utf8_lossy(&channel);
                    let view = self.switchboard.view();
                    let Some(current) = view.keys.get(&key.ident).filter(|c| same_key(c, key, subscriber)) else {
                        return revoked(key);
                    };
                    if !current.may_subscribe(&chan) {
                        return CloseReason::SubscribeDenied { ident: key.ident.clone(), chan: chan.into() };
                    }
                    if channels.len() >= self.config.max_subscriptions && !channels.contains(&channel) {
                        return CloseReason::TooManySubscriptions {
                            ident: key.ident.clone(),
                            chan: chan.into(),
                            limit: self.config.max_subscriptions,
                        };
                    }
                    if channels.insert(channel.clone()) {
                        match self.resumes.as_ref().filter(|_| key.resume) {
                            Some(resumes) => {
                                let (socket, queued_before) = (resume.socket, resume.queued_before);
                                let session = resume.session.get_or_insert_with(|| {
                                    let owner = SessionKey {
                                        ident: key.ident.clone(),
                                        owner: subscriber.owner,
                                        owner_name: key.owner.clone(),
                                    };
                                    let views = self.switchboard.watch_views();
                                    resumes.session(owner, subscriber.out.clone(), socket, queued_before, views)
                                });
                                session.subscribe(&chan).await;
                            }
                            None => self.switchboard.subscribe(channel.clone(), subscriber.clone()),
                        }
                    }
                    // After the switchboard: a key shown subscribed receives.
                    connection.subscribed(&chan);
                }
                Frame::Unsubscribe { ident: fi, channel } => {
                    if fi != ident {
                        return wrong_ident(&fi);
                    }
                    if channels.remove(&channel) {
                        let chan = String::from_utf8_lossy(&channel);
                        match &resume.session {
                            Some(session) => session.unsubscribe(&chan, None),
                            None => self.switchboard.unsubscribe(&channel, subscriber.conn),
                        }
                        connection.unsubscribed(&chan);
                    }
                }
                other => return unexpected(&other),
            }
        }
    }
}

impl Connections {
    /// After a graph change: ends the session if its key is gone (removed,
    /// re-created with another secret, or its owner removed), and drops each
    /// subscription the key no longer allows, with an ERROR naming the channel.
    fn recheck(
        &self,
        key: &AuthKey,
        subscriber: &Subscriber,
        connection: &Connection,
        channels: &mut HashSet<Bytes>,
        resume: Option<&Session>,
    ) -> Option<CloseReason> {
        let view = self.switchboard.view();
        let Some(current) = view.keys.get(&key.ident).filter(|c| same_key(c, key, subscriber)) else {
            return Some(revoked(key));
        };
        let denied: Vec<Bytes> =
            channels.iter().filter(|c| !current.may_subscribe(&String::from_utf8_lossy(c))).cloned().collect();
        for channel in denied {
            channels.remove(&channel);
            let chan = String::from_utf8_lossy(&channel);
            connection.unsubscribed(&chan);
            tracing::info!(channel = %chan.escape_debug(), "subscription no longer allowed: dropped");
            let error = encode_error(&subscription_dropped_text(&key.ident, &chan));
            match resume {
                // Queued by the session, in order with its frames.
                Some(session) => session.unsubscribe(&chan, Some(error)),
                None => {
                    self.switchboard.unsubscribe(&channel, subscriber.conn);
                    subscriber.out.push(error);
                }
            }
        }
        None
    }
}

/// The `ident` label of a connection's series, when they are kept per ident.
fn ident_label(ident: &Option<String>) -> Vec<(&'static str, String)> {
    ident.iter().map(|i| ("ident", i.clone())).collect()
}

/// The key the session logged in with is still the one in the graph.
fn same_key(current: &KeyEntry, key: &AuthKey, subscriber: &Subscriber) -> bool {
    current.owner == subscriber.owner && bool::from(current.key.secret.as_bytes().ct_eq(key.secret.as_bytes()))
}

fn revoked(key: &AuthKey) -> CloseReason {
    CloseReason::KeyRevoked { ident: key.ident.clone() }
}

fn wrong_ident(ident: &[u8]) -> CloseReason {
    CloseReason::WrongIdent { ident: String::from_utf8_lossy(ident).into() }
}

fn unexpected(frame: &Frame) -> CloseReason {
    let name = match frame {
        Frame::Error { .. } => "ERROR",
        Frame::Info { .. } => "INFO",
        Frame::Auth { .. } => "AUTH",
        _ => "frame",
    };
    CloseReason::UnexpectedFrame { name }
}

/// Reads the next frame; decoding problems become an ERROR that names them.
async fn next_frame<S: AsyncRead>(reader: &mut FramedRead<ReadHalf<S>, Codec>) -> Result<Frame, CloseReason> {
    frame_or_close(reader.next().await)
}

fn frame_or_close(next: Option<Result<Frame, CodecError>>) -> Result<Frame, CloseReason> {
    match next {
        Some(Ok(frame)) => Ok(frame),
        None => Err(CloseReason::ClientClosed),
        Some(Err(CodecError::Io(e))) => {
            tracing::debug!("read error: {e}");
            Err(CloseReason::IoError)
        }
        Some(Err(CodecError::Frame(e))) => Err(CloseReason::BadFrame(e)),
    }
}

impl Connections {
    /// The first frame must be AUTH with SHA-1(nonce ‖ secret) of a known key.
    /// An address with too many recent failures is refused unchecked.
    async fn login<S: AsyncRead>(
        &self,
        reader: &mut FramedRead<ReadHalf<S>, Codec>,
        nonce: &[u8],
        peer: SocketAddr,
    ) -> Result<Arc<KeyEntry>, CloseReason> {
        let Frame::Auth { ident, hash } = next_frame(reader).await? else {
            return Err(CloseReason::FirstNotAuth);
        };
        let from = hpfeeds_key(peer.ip(), &ident);
        let known = self.known_clients.lock().expect("known clients lock").contains(&from);
        let client = if known { Client::Known(&from) } else { Client::Address(peer.ip()) };
        // Failures with a key's ident are shown on that key (not those with unknown idents:
        // nobody to show them to, and a guesser's idents must not push real ones out).
        let failed_with_key = |reason| {
            let Ok(i) = std::str::from_utf8(&ident) else { return };
            if let Some(key) = self.switchboard.view().keys.get(i) {
                self.activity.login_failed(i, key.owner, peer, reason);
            }
        };
        let Some(attempt) = self.auth_limit.attempt(client, &ident) else {
            failed_with_key("too many failed logins: refused unchecked");
            return Err(CloseReason::AuthRateLimited);
        };
        let result = check_auth(&self.switchboard, &ident, &hash, nonce);
        match &result {
            Ok(_) => {
                attempt.succeeded();
                if !known {
                    self.known_clients.lock().expect("known clients lock").remember(from);
                }
            }
            Err(_) => failed_with_key("wrong secret"),
        }
        result
    }
}

fn check_auth(
    switchboard: &Switchboard,
    ident: &[u8],
    hash: &[u8],
    nonce: &[u8],
) -> Result<Arc<KeyEntry>, CloseReason> {
    let view = switchboard.view();
    let key = std::str::from_utf8(ident).ok().and_then(|i| view.keys.get(i)).cloned();
    // Hash and compare even for unknown idents, so both failures look and take the same.
    let secret = key.as_ref().map(|k| k.key.secret.as_bytes()).unwrap_or(b"");
    let expected = auth_hash(nonce, secret);
    let matches = hash.len() == expected.len() && bool::from(expected.ct_eq(hash));
    match key {
        Some(key) if matches => Ok(key),
        _ => Err(CloseReason::AuthFailed { ident: String::from_utf8_lossy(ident).into() }),
    }
}
