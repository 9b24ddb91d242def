//! The hpfeeds listener: admission (connection limit, TLS handshake under the
//! login deadline), TCP_NODELAY, and shutdown of every session it started.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session::Sessions;

pub struct Listener {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Client slots, shared by every listener of the node.
    pub slots: Arc<Semaphore>,
}

impl Listener {
    /// Accepts until `stop_accepting`, then returns (closing the socket).
    /// Sessions close once `drain` is cancelled and are awaited through `tracker`.
    pub async fn run(
        self,
        sessions: Arc<Sessions>,
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
                metrics::counter!("hpfeeds_broker_connection_error", "category" => "connection_limit").increment(1);
                tracing::warn!(%peer, "connection limit reached, refusing");
                tracker.spawn(refuse(stream));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let sessions = sessions.clone();
            let tls = self.tls.clone();
            let drain = drain.clone();
            tracker.spawn(async move {
                serve_one(sessions, stream, peer, tls, drain).await;
                drop(permit);
            });
        }
    }
}

async fn serve_one(
    sessions: Arc<Sessions>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    drain: CancellationToken,
) {
    match tls {
        None => sessions.run(stream, peer, drain).await,
        Some(acceptor) => {
            let deadline = sessions.config.login_timeout;
            match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => sessions.run(tls_stream, peer, drain).await,
                Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let frame = crate::protocol::frame::encode_error("Server full: connection limit reached");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&frame)).await;
}

/// Loads a PEM certificate chain and private key for the TLS listener.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("cannot open TLS certificate {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("cannot parse TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate found in {}", cert.display());
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("cannot open TLS key {}", key.display()))?,
    ))
    .with_context(|| format!("cannot parse TLS key {}", key.display()))?
    .with_context(|| format!("no private key found in {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
