//! The hpfeeds listener: admission (connection limit, TLS handshake under the
//! login deadline), TCP_NODELAY, and shutdown of every session it started.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::close::CloseReason;
use super::connection::Connections;

pub struct Listener {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Client slots, shared by every listener of the node.
    pub slots: Arc<Semaphore>,
}

/// Counts one running accept loop, and uncounts it however the loop ends (a
/// panic included): `/readyz` is 200 only while every listener is counted.
pub struct Accepting(Arc<std::sync::atomic::AtomicUsize>);

impl Accepting {
    pub fn new(count: Arc<std::sync::atomic::AtomicUsize>) -> Accepting {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Accepting(count)
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Listener {
    /// Accepts until `stop_accepting`, then returns (closing the socket).
    /// Connections close once `drain` is cancelled and are awaited through `tracker`.
    pub async fn run(
        self,
        connections: Arc<Connections>,
        stop_accepting: CancellationToken,
        drain: CancellationToken,
        tracker: TaskTracker,
    ) {
        let slots = self.slots.clone();
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop_accepting.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                CloseReason::ConnectionLimit.count(None);
                tracing::warn!(%peer, "connection limit reached, refusing");
                tracker.spawn(refuse(stream));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connections = connections.clone();
            let tls = self.tls.clone();
            let drain = drain.clone();
            tracker.spawn(async move {
                serve_one(connections, stream, peer, tls, drain).await;
                drop(permit);
            });
        }
    }
}

async fn serve_one(
    connections: Arc<Connections>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    drain: CancellationToken,
) {
    match tls {
        None => connections.run(stream, peer, drain).await,
        // On the heap: a TLS session's future is four times a plain one's, and
        // inline it would make every plain connection's task that large too.
        Some(acceptor) => Box::pin(serve_tls(connections, stream, peer, acceptor, drain)).await,
    }
}

async fn serve_tls(
    connections: Arc<Connections>,
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    drain: CancellationToken,
) {
    let deadline = connections.config.login_timeout;
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => connections.run(tls_stream, peer, drain).await,
        Ok(Err(e)) => {
            CloseReason::TlsHandshake.count(None);
            tracing::info!(%peer, "TLS handshake failed: {e}");
        }
        Err(_) => {
            CloseReason::TlsHandshake.count(None);
            tracing::info!(%peer, "TLS handshake timed out");
        }
    }
}

async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let text = CloseReason::ConnectionLimit.error_text().unwrap_or_default();
    let frame = crate::protocol::frame::encode_error(&text);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&frame)).await;
}

/// How often the TLS certificate and key files are checked for changes.
const TLS_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The TLS listener's certificate and key, reloaded when their files change
/// (new handshakes get the new ones; connected clients keep their session).
/// Any X.509 version is served, v1 included (the classic `openssl x509 -req
/// -signkey` recipe and hpfeeds' own test certificate): the server presents
/// its chain, it does not validate it.
#[derive(Debug)]
pub struct ReloadingCert {
    current: arc_swap::ArcSwap<rustls::sign::CertifiedKey>,
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Loads the certificate chain and key for the TLS listener and starts
/// watching their files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = load_certified(&provider, cert, key)?;
    let resolver = Arc::new(ReloadingCert { current: arc_swap::ArcSwap::new(Arc::new(certified)) });
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    tokio::spawn(async move {
        let mut seen = file_stamps(&cert, &key);
        loop {
            tokio::time::sleep(TLS_RELOAD_EVERY).await;
            let now = file_stamps(&cert, &key);
            if now == seen {
                continue;
            }
            seen = now;
            match load_certified(&provider, &cert, &key) {
                Ok(certified) => {
                    resolver.current.store(Arc::new(certified));
                    tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::warn!("TLS certificate not reloaded, the previous one stays: {e:#}"),
            }
        }
    });
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn file_stamps(cert: &std::path::Path, key: &std::path::Path) -> [Option<(std::time::SystemTime, u64)>; 2] {
    [cert, key].map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
}

fn load_certified(
    provider: &rustls::crypto::CryptoProvider,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::sign::CertifiedKey> {
    use anyhow::Context;
    let certs = hpfriends_consensus::cluster_tls::read_certs(cert, "tls_cert")?;
    let key_der = hpfriends_consensus::cluster_tls::read_key(key, "tls_key")?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("tls_key {}: not a usable private key", key.display()))?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // A v1 certificate cannot be parsed for the check; it is served as it is.
        Err(rustls::Error::InvalidCertificate(_)) => {
            tracing::debug!(cert = %cert.display(), "the key/certificate match is not checked (not an X.509 v3 certificate)")
        }
        Err(e) => anyhow::bail!("tls_cert {} and tls_key {} do not match: {e}", cert.display(), key.display()),
    }
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn given_an_accept_loop_that_ends_or_panics_then_it_is_no_longer_counted() {
        let count = Arc::new(AtomicUsize::new(0));
        let up = Accepting::new(count.clone());
        let ended = tokio::spawn(async move {
            let _up = up;
        });
        let up = Accepting::new(count.clone());
        let panicked = tokio::spawn(async move {
            let _up = up;
            panic!("the accept loop broke");
        });
        let _ = ended.await;
        assert!(panicked.await.is_err());
        assert_eq!(count.load(Ordering::Acquire), 0);
        let _still_up = Accepting::new(count.clone());
        assert_eq!(count.load(Ordering::Acquire), 1);
    }

    /// Every idle sensor holds its task for hours: a plain connection's must
    /// not carry the room a TLS handshake and session need (it did: 5 KiB
    /// instead of 1.4, most of an idle connection's memory).
    #[tokio::test]
    async fn given_a_plain_connection_then_its_task_is_not_sized_for_tls() {
        use crate::cluster::peers::Peers;
        use crate::hpfeeds::connection::ConnectionConfig;
        use crate::routing::{Switchboard, View};

        let switchboard = Arc::new(Switchboard::new(Arc::new(View::default()), Arc::new(Peers::new(10)), None));
        let config = ConnectionConfig {
            broker_name: "hpfriends".into(),
            login_timeout: std::time::Duration::from_secs(5),
            max_outbound_bytes: 1 << 20,
            limits: Default::default(),
            close_window: Default::default(),
            metrics_per_ident: false,
            max_subscriptions: 10,
        };
        let connections = Arc::new(Connections::new(switchboard, config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let connect = || TcpStream::connect(peer);

        let session = connections.clone().run(connect().await.unwrap(), peer, CancellationToken::new());
        let served = serve_one(connections.clone(), connect().await.unwrap(), peer, None, CancellationToken::new());
        let (session, served) = (std::mem::size_of_val(&session), std::mem::size_of_val(&served));
        assert!(served <= session + 256, "a plain connection's task is {served} bytes, its session {session}");
    }
}
