//! The HTTP server: hyper's HTTP/1.1, over TLS when the node has a web
//! certificate, with a deadline for the TLS handshake and the request head
//! and one for the whole request, so half-sent requests cannot hold file
//! descriptors (and with them the hpfeeds listener) for ever, and caps on the
//! connections open at once, in all and per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;

use crate::telemetry;

/// How many HTTP connections may be open at once: in all and per address.
/// Past either a new connection is closed at once, so a flood of HTTP
/// connections cannot take the descriptors hpfeeds clients, peers and
/// storage need.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub total: usize,
    pub per_address: usize,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One open connection's place; dropping it frees the place.
struct Place {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Place {
    fn take(open: &Arc<Mutex<Open>>, caps: Caps, ip: IpAddr) -> Result<Place, &'static str> {
        let mut o = open.lock().expect("http connections lock");
        if o.total >= caps.total {
            return Err("node");
        }
        let from = o.by_address.entry(ip).or_default();
        if *from >= caps.per_address {
            return Err("address");
        }
        *from += 1;
        o.total += 1;
        metrics::gauge!(telemetry::HTTP_CONNECTIONS.name).set(o.total as f64);
        Ok(Place { open: open.clone(), ip })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut o = self.open.lock().expect("http connections lock");
        o.total -= 1;
        if let Some(n) = o.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.by_address.remove(&self.ip);
            }
        }
        metrics::gauge!(telemetry::HTTP_CONNECTIONS.name).set(o.total as f64);
    }
}

/// Serves `app` on `listener` until `shutdown`; then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    caps: Caps,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let place = match Place::take(&open, caps, peer.ip()) {
            Ok(place) => place,
            Err(limit) => {
                metrics::counter!(telemetry::HTTP_CONNECTIONS_REFUSED.name, "limit" => limit).increment(1);
                drop(stream);
                continue;
            }
        };
        // Handlers that limit per address (web sign-in) read it from here.
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _place = place;
            match tls {
                None => serve_connection(stream, service, header_timeout, shutdown).await,
                // The handshake gets the same deadline as a request head.
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, service, header_timeout, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(%peer, "web TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "web TLS handshake timed out"),
                },
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection<IO, S>(io: IO, service: S, header_timeout: Duration, shutdown: CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = axum::response::Response>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answers 408 to a request its handler has not finished within `limit`
/// (a body sent slowly included).
pub async fn request_deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => super::error::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request was not done within {limit:?}"),
        )
        .into_response(),
    }
}
