//! One hpfeeds client connection: INFO, AUTH, then PUBLISH / SUBSCRIBE /
//! UNSUBSCRIBE, each checked against the connection's authkey.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use hpfriends_consensus::log_budget::LogBudget;
use hpfriends_consensus::KeyEntry;
use hpfriends_graph::AuthKey;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::auth_limit::AuthLimiter;
use super::close::CloseReason;
use super::outbound::outbound;
use super::writer::{write_loop, FINAL_FLUSH_TIMEOUT};
use crate::protocol::codec::CodecError;
use crate::protocol::frame::{auth_hash, encode_error, encode_info, MAX_AUTH_BODY};
use crate::protocol::{Codec, Frame, FrameError, Limits};
use crate::routing::{Router, Subscriber};

/// Settings every session shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub broker_name: String,
    pub login_timeout: Duration,
    pub max_outbound_bytes: usize,
    pub limits: Limits,
    /// On drain, each connection closes at a random point of this window.
    pub close_window: Duration,
    /// Also count publishes per publisher ident (one series per ident).
    pub metrics_per_ident: bool,
    pub max_subscriptions: usize,
}

pub struct Sessions {
    pub router: Arc<Router>,
    pub config: SessionConfig,
    next_id: AtomicU64,
    publish_metrics: PublishMetrics,
    /// The close window now (µs); zero once the node stops at once.
    close_window_us: AtomicU64,
    auth_limit: AuthLimiter,
    /// Failed logins are logged at a bounded rate.
    failure_log: std::sync::Mutex<LogBudget>,
}

/// Failed or refused logins logged per second, at most.
const FAILED_LOGINS_LOGGED_PER_SEC: u32 = 10;

/// Counters of the publish path, registered once instead of looked up per message.
struct PublishMetrics {
    received: metrics::Counter,
    received_bytes: metrics::Counter,
    delivered: metrics::Counter,
    delivered_bytes: metrics::Counter,
}

/// Bytes asked of the socket per read: a busy publisher's frames arrive
/// hundreds per syscall (tokio-util's 8 KiB default cost seven times the reads).
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// One session's publish counts not yet added to the shared counters: added
/// once per read from the client (and at the end) instead of per message.
struct PendingCounts<'a> {
    metrics: &'a PublishMetrics,
    by_ident: Option<(metrics::Counter, metrics::Counter)>,
    received: u64,
    received_bytes: u64,
    delivered: u64,
    delivered_bytes: u64,
}

impl PendingCounts<'_> {
    fn flush(&mut self) {
        if self.received == 0 {
            return;
        }
        let m = self.metrics;
        m.received.increment(self.received);
        m.received_bytes.increment(self.received_bytes);
        m.delivered.increment(self.delivered);
        m.delivered_bytes.increment(self.delivered_bytes);
        if let Some((count, size)) = &self.by_ident {
            count.increment(self.received);
            size.increment(self.received_bytes);
        }
        (self.received, self.received_bytes, self.delivered, self.delivered_bytes) = (0, 0, 0, 0);
    }
}

impl Drop for PendingCounts<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A session ended with this reason and, for protocol errors, this ERROR text.
struct Ending {
    reason: CloseReason,
    message: Option<String>,
}

impl Ending {
    fn quiet(reason: CloseReason) -> Self {
        Ending { reason, message: None }
    }
    fn error(reason: CloseReason, message: String) -> Self {
        Ending { reason, message: Some(message) }
    }
}

impl Sessions {
    pub fn new(router: Arc<Router>, config: SessionConfig) -> Self {
        let publish_metrics = PublishMetrics {
            received: metrics::counter!("hpfeeds_broker_receive_publish_count"),
            received_bytes: metrics::counter!("hpfeeds_broker_receive_publish_size"),
            delivered: metrics::counter!("hpfriends_messages_delivered_total"),
            delivered_bytes: metrics::counter!("hpfriends_bytes_delivered_total"),
        };
        let close_window_us = AtomicU64::new(config.close_window.as_micros() as u64);
        Sessions {
            router,
            config,
            next_id: AtomicU64::new(1),
            publish_metrics,
            close_window_us,
            auth_limit: AuthLimiter::default(),
            failure_log: std::sync::Mutex::new(LogBudget::per_second(FAILED_LOGINS_LOGGED_PER_SEC)),
        }
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
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let conn = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::error_span!("conn", %peer, conn, ident = tracing::field::Empty);
        self.run_inner(conn, stream, peer, drain).instrument(span).await
    }

    async fn run_inner<S>(&self, conn: u64, stream: S, peer: SocketAddr, drain: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        metrics::counter!("hpfeeds_broker_connection_made").increment(1);
        metrics::gauge!("hpfeeds_broker_client_connections").increment(1.0);
        let (read_half, write_half) = tokio::io::split(stream);
        // Before AUTH no frame may be larger than an AUTH: an unauthenticated
        // client cannot make the broker buffer a megabyte PUBLISH.
        let before_auth = Limits { max_publish_body: MAX_AUTH_BODY };
        let mut reader = FramedRead::with_capacity(read_half, Codec { limits: before_auth }, READ_BUFFER_BYTES);
        // Cancelled by an overflow or a failed write: the connection is lost.
        let close = CancellationToken::new();
        let (out, out_rx) = outbound(self.config.max_outbound_bytes, close.clone());
        let mut writer = tokio::spawn(write_loop(write_half, out_rx, close.clone()));

        let nonce: [u8; 4] = rand::random();
        out.push(encode_info(self.config.broker_name.as_bytes(), &nonce));

        let mut channels: HashSet<Bytes> = HashSet::new();
        let ending = match tokio::time::timeout(self.config.login_timeout, self.login(&mut reader, &nonce, peer)).await
        {
            Err(_) => Ending::quiet(CloseReason::LoginTimeout),
            Ok(Err(ending)) => ending,
            Ok(Ok(entry)) => {
                reader.decoder_mut().limits = self.config.limits;
                tracing::Span::current().record("ident", entry.key.ident.as_str());
                tracing::debug!(owner = %entry.key.owner, "authenticated");
                let subscriber = Subscriber { conn, owner: entry.owner, out: out.clone() };
                let drained = async {
                    drain.cancelled().await;
                    tokio::time::sleep(self.close_delay()).await;
                };
                tokio::select! {
                    ending = self.serve(&mut reader, &entry.key, &subscriber, &mut channels) => ending,
                    _ = close.cancelled() => Ending::quiet(if out.overflowed() {
                        CloseReason::SlowConsumer
                    } else {
                        CloseReason::IoError
                    }),
                    _ = drained => Ending::quiet(CloseReason::Shutdown),
                }
            }
        };
        self.router.remove_connection(conn, &channels);
        metrics::gauge!("hpfeeds_broker_subscriptions").decrement(channels.len() as f64);

        let reason = ending.reason;
        if let Some(message) = &ending.message {
            out.push_final(encode_error(message));
        }
        // The writer sends what is still queued, then closes the socket.
        drop(out);
        if tokio::time::timeout(FINAL_FLUSH_TIMEOUT + Duration::from_secs(1), &mut writer).await.is_err() {
            writer.abort();
        }

        // Failed logins are what a guesser makes by the thousand: logged at a bounded rate.
        let login_failure = matches!(reason, CloseReason::AuthFailed | CloseReason::AuthRateLimited);
        let log = if login_failure { self.failure_log.lock().expect("log budget lock").take() } else { Some(0) };
        match log {
            None => {}
            Some(suppressed) if reason.is_error() => {
                if suppressed > 0 {
                    tracing::info!(suppressed, "failed logins not logged in the last second");
                }
                // Not the `message` field: that one is printed raw, and the text may
                // hold what the client sent (an ident with a newline in it).
                tracing::info!(reason = reason.category(), error = ending.message.as_deref(), "connection closed");
            }
            Some(_) => tracing::debug!(reason = reason.category(), "connection closed"),
        }
        metrics::counter!("hpfeeds_broker_connection_error", "category" => reason.category()).increment(1);
        metrics::gauge!("hpfeeds_broker_client_connections").decrement(1.0);
    }

    /// After AUTH: frames until the client leaves or breaks a rule.
    async fn serve<S: AsyncRead>(
        &self,
        reader: &mut FramedRead<ReadHalf<S>, Codec>,
        key: &AuthKey,
        subscriber: &Subscriber,
        channels: &mut HashSet<Bytes>,
    ) -> Ending {
        let ident = key.ident.as_bytes();
        // Registered once per connection: the ident does not change.
        let by_ident = self.config.metrics_per_ident.then(|| {
            let label = key.ident.clone();
            (
                metrics::counter!("hpfriends_ident_publish_count", "ident" => label.clone()),
                metrics::counter!("hpfriends_ident_publish_size", "ident" => label),
            )
        });
        let mut counts = PendingCounts {
            metrics: &self.publish_metrics,
            by_ident,
            received: 0,
            received_bytes: 0,
            delivered: 0,
            delivered_bytes: 0,
        };
        let mut views = self.router.watch_views();
        views.mark_unchanged();
        loop {
            if views.has_changed().unwrap_or(false) {
                views.mark_unchanged();
                if let Some(ending) = self.recheck(key, subscriber, channels) {
                    return ending;
                }
            }
            // Counts go to the shared counters before the session waits for its client.
            let next = match reader.next().now_or_never() {
                Some(next) => next,
                None => {
                    counts.flush();
                    tokio::select! {
                        next = reader.next() => next,
                        // The graph changed while the client was quiet: check at once.
                        Ok(()) = views.changed() => match self.recheck(key, subscriber, channels) {
                            Some(ending) => return ending,
                            None => continue,
                        },
                    }
                }
            };
            let frame = match frame_or_ending(next) {
                Ok(frame) => frame,
                Err(ending) => return ending,
            };
            match frame {
                Frame::Publish(publish) => {
                    if publish.ident() != ident {
                        return wrong_ident(publish.ident());
                    }
                    // Re-read the key each time: removing or narrowing it takes effect at once.
                    let view = self.router.view();
                    let Some(current) = view.keys.get(&key.ident).filter(|c| same_key(c, key, subscriber)) else {
                        return revoked(key);
                    };
                    let chan = String::from_utf8_lossy(publish.channel());
                    if !current.key.may_publish(&chan) {
                        return Ending::error(
                            CloseReason::PublishDenied,
                            format!("Authkey not allowed to pub here. ident={}, chan={chan}", key.ident),
                        );
                    }
                    let d = self.router.publish(&view, current.owner, &publish);
                    counts.received += 1;
                    counts.received_bytes += publish.payload().len() as u64;
                    counts.delivered += d.delivered as u64;
                    counts.delivered_bytes += (d.delivered * publish.raw().len()) as u64;
                }
                Frame::Subscribe { ident: fi, channel } => {
                    if fi != ident {
                        return wrong_ident(&fi);
                    }
                    let chan = String::from_utf8_lossy(&channel);
                    let view = self.router.view();
                    let Some(current) = view.keys.get(&key.ident).filter(|c| same_key(c, key, subscriber)) else {
                        return revoked(key);
                    };
                    if !current.key.may_subscribe(&chan) {
                        return Ending::error(
                            CloseReason::SubscribeDenied,
                            format!("Authkey not allowed to sub here. ident={}, chan={chan}", key.ident),
                        );
                    }
                    if channels.len() >= self.config.max_subscriptions && !channels.contains(&channel) {
                        return Ending::error(
                            CloseReason::TooManySubscriptions,
                            format!(
                                "Too many subscriptions on this connection (the limit is {}). ident={}, chan={chan}",
                                self.config.max_subscriptions, key.ident
                            ),
                        );
                    }
                    if channels.insert(channel.clone()) {
                        self.router.subscribe(channel, subscriber.clone());
                        metrics::gauge!("hpfeeds_broker_subscriptions").increment(1.0);
                    }
                }
                Frame::Unsubscribe { ident: fi, channel } => {
                    if fi != ident {
                        return wrong_ident(&fi);
                    }
                    if channels.remove(&channel) {
                        self.router.unsubscribe(&channel, subscriber.conn);
                        metrics::gauge!("hpfeeds_broker_subscriptions").decrement(1.0);
                    }
                }
                other => return unexpected(&other),
            }
        }
    }
}

impl Sessions {
    /// After a graph change: ends the session if its key is gone (removed,
    /// re-created with another secret, or its owner removed), and drops each
    /// subscription the key no longer allows, with an ERROR naming the channel.
    fn recheck(&self, key: &AuthKey, subscriber: &Subscriber, channels: &mut HashSet<Bytes>) -> Option<Ending> {
        let view = self.router.view();
        let Some(current) = view.keys.get(&key.ident).filter(|c| same_key(c, key, subscriber)) else {
            return Some(revoked(key));
        };
        let denied: Vec<Bytes> =
            channels.iter().filter(|c| !current.key.may_subscribe(&String::from_utf8_lossy(c))).cloned().collect();
        for channel in denied {
            channels.remove(&channel);
            self.router.unsubscribe(&channel, subscriber.conn);
            metrics::gauge!("hpfeeds_broker_subscriptions").decrement(1.0);
            let chan = String::from_utf8_lossy(&channel);
            tracing::info!(channel = %chan.escape_debug(), "subscription no longer allowed: dropped");
            subscriber.out.push(encode_error(&format!(
                "Authkey no longer allowed to sub here, unsubscribed. ident={}, chan={chan}",
                key.ident
            )));
        }
        None
    }
}

/// The key the session logged in with is still the one in the graph.
fn same_key(current: &KeyEntry, key: &AuthKey, subscriber: &Subscriber) -> bool {
    current.owner == subscriber.owner && bool::from(current.key.secret.as_bytes().ct_eq(key.secret.as_bytes()))
}

fn revoked(key: &AuthKey) -> Ending {
    Ending::error(CloseReason::KeyRevoked, format!("Authkey revoked, ident={}", key.ident))
}

fn wrong_ident(ident: &[u8]) -> Ending {
    Ending::error(
        CloseReason::WrongIdent,
        format!("Invalid authkey in message, ident={}", String::from_utf8_lossy(ident)),
    )
}

fn unexpected(frame: &Frame) -> Ending {
    let name = match frame {
        Frame::Error { .. } => "ERROR",
        Frame::Info { .. } => "INFO",
        Frame::Auth { .. } => "AUTH",
        _ => "frame",
    };
    Ending::error(CloseReason::UnexpectedFrame, format!("Unexpected {name} message from client"))
}

/// Reads the next frame; decoding problems become an ERROR that names them.
async fn next_frame<S: AsyncRead>(reader: &mut FramedRead<ReadHalf<S>, Codec>) -> Result<Frame, Ending> {
    frame_or_ending(reader.next().await)
}

fn frame_or_ending(next: Option<Result<Frame, CodecError>>) -> Result<Frame, Ending> {
    match next {
        Some(Ok(frame)) => Ok(frame),
        None => Err(Ending::quiet(CloseReason::ClientClosed)),
        Some(Err(CodecError::Io(e))) => {
            tracing::debug!("read error: {e}");
            Err(Ending::quiet(CloseReason::IoError))
        }
        Some(Err(CodecError::Frame(e))) => {
            let reason = match e {
                FrameError::FrameTooLarge { .. } => CloseReason::FrameTooLarge,
                FrameError::UnknownOpcode(_) => CloseReason::UnknownOpcode,
                FrameError::LengthTooSmall { .. } | FrameError::Malformed { .. } => CloseReason::MalformedFrame,
            };
            Err(Ending::error(reason, e.to_string()))
        }
    }
}

impl Sessions {
    /// The first frame must be AUTH with SHA-1(nonce ‖ secret) of a known key.
    /// An address with too many recent failures is refused unchecked.
    async fn login<S: AsyncRead>(
        &self,
        reader: &mut FramedRead<ReadHalf<S>, Codec>,
        nonce: &[u8],
        peer: SocketAddr,
    ) -> Result<Arc<KeyEntry>, Ending> {
        let Frame::Auth { ident, hash } = next_frame(reader).await? else {
            return Err(Ending::error(CloseReason::FirstNotAuth, "First message was not AUTH".into()));
        };
        if !self.auth_limit.may_try(peer.ip(), &ident) {
            return Err(Ending::error(
                CloseReason::AuthRateLimited,
                "Too many failed logins from this address, try again later".into(),
            ));
        }
        let result = check_auth(&self.router, &ident, &hash, nonce);
        if result.is_err() {
            self.auth_limit.failed(peer.ip(), &ident);
        }
        result
    }
}

fn check_auth(router: &Router, ident: &[u8], hash: &[u8], nonce: &[u8]) -> Result<Arc<KeyEntry>, Ending> {
    let view = router.view();
    let key = std::str::from_utf8(ident).ok().and_then(|i| view.keys.get(i)).cloned();
    // Hash and compare even for unknown idents, so both failures look and take the same.
    let secret = key.as_ref().map(|k| k.key.secret.as_bytes()).unwrap_or(b"");
    let expected = auth_hash(nonce, secret);
    let matches = hash.len() == expected.len() && bool::from(expected.ct_eq(&hash[..]));
    match key {
        Some(key) if matches => Ok(key),
        _ => Err(Ending::error(
            CloseReason::AuthFailed,
            format!("Authentication failed for {}", String::from_utf8_lossy(ident)),
        )),
    }
}
