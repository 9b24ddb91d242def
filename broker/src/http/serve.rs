//! The HTTP server: hyper's HTTP/1.1, over TLS when the node has a web
//! certificate, with a deadline for the TLS handshake and the request head
//! and one for the whole request, so half-sent requests cannot hold file
//! descriptors (and with them the hpfeeds listener) for ever, and caps on the
//! connections open at once, in all and per address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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

/// Serves `app` on `listener` until `shutdown`; then lets open requests
/// finish. A connection from one of `proxies` (load balancers) may start with
/// a PROXY protocol v2 header: the client's address is taken from it, for
/// the caps and for everything that limits per address.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    caps: Caps,
    proxies: Vec<ipnet::IpNet>,
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
        let proxied = proxies.iter().any(|net| net.contains(&peer.ip()));
        // A client's place is taken at once; a load balancer's connection
        // takes its client's once the header has told who that is.
        let early = match proxied {
            true => None,
            false => match Place::take(&open, caps, peer.ip()) {
                Ok(place) => Some(place),
                Err(limit) => {
                    refused(limit);
                    continue;
                }
            },
        };
        let (app, open, shutdown, tls) = (app.clone(), open.clone(), shutdown.clone(), tls.clone());
        connections.spawn(async move {
            let mut stream = stream;
            let (client, _place) = match early {
                Some(place) => (peer, place),
                None => {
                    let client = match tokio::time::timeout(header_timeout, proxy_header(&mut stream)).await {
                        Ok(Ok(client)) => client.unwrap_or(peer),
                        Ok(Err(e)) => return tracing::debug!(%peer, "bad PROXY protocol header: {e}"),
                        Err(_) => return tracing::debug!(%peer, "no request within the header timeout"),
                    };
                    match Place::take(&open, caps, client.ip()) {
                        Ok(place) => (client, place),
                        Err(limit) => return refused(limit),
                    }
                }
            };
            // Handlers that limit per address (web sign-in) read it from here.
            let service = TowerToHyperService::new(Extension(ConnectInfo(client)).layer(app));
            match tls {
                None => serve_connection(stream, service, header_timeout, shutdown).await,
                // The handshake gets the same deadline as a request head.
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, service, header_timeout, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(%client, "web TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%client, "web TLS handshake timed out"),
                },
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn refused(limit: &'static str) {
    metrics::counter!(telemetry::HTTP_CONNECTIONS_REFUSED.name, "limit" => limit).increment(1);
}

/// The 12 bytes a PROXY protocol v2 header starts with (HAProxy's
/// proxy-protocol.txt, 2.2): no HTTP request or TLS hello starts with them.
const PROXY_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest address block and TLVs taken.
const MAX_PROXY_BLOCK: usize = 1024;

/// Reads a PROXY protocol v2 header if the connection starts with one (and
/// nothing if it does not: the balancer's own health checks may send none).
/// `Some(client)` for a proxied TCP connection over IPv4 or IPv6; `None` for
/// a LOCAL one (the balancer itself) or no header.
async fn proxy_header(stream: &mut tokio::net::TcpStream) -> std::io::Result<Option<SocketAddr>> {
    use tokio::io::AsyncReadExt;
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut head = [0u8; 16];
    loop {
        let seen = stream.peek(&mut head).await?;
        if seen == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = seen.min(PROXY_SIGNATURE.len());
        if head[..n] != PROXY_SIGNATURE[..n] {
            return Ok(None);
        }
        if seen == head.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stream.read_exact(&mut head).await?;
    let (version, command) = (head[12] >> 4, head[12] & 0x0f);
    if version != 2 {
        return Err(invalid("only version 2 of the PROXY protocol is taken"));
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_PROXY_BLOCK {
        return Err(invalid("the address block is too long"));
    }
    let mut block = vec![0u8; len];
    stream.read_exact(&mut block).await?;
    let address = |ip: IpAddr, port: &[u8]| SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]));
    match (command, head[13]) {
        (0, _) => Ok(None),
        // TCP over IPv4: source, destination, source port, destination port.
        (1, 0x11) if len >= 12 => {
            Ok(Some(address(IpAddr::from(<[u8; 4]>::try_from(&block[..4]).expect("4 bytes")), &block[8..10])))
        }
        (1, 0x21) if len >= 36 => {
            Ok(Some(address(IpAddr::from(<[u8; 16]>::try_from(&block[..16]).expect("16 bytes")), &block[32..34])))
        }
        (1, _) => Err(invalid("only TCP over IPv4 or IPv6 is taken")),
        _ => Err(invalid("an unknown command")),
    }
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
