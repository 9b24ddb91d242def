//! The cluster port's security. Every connection between nodes is TLS 1.3
//! with a certificate on both sides (mutual TLS): the proof that a peer
//! belongs to the cluster is the handshake of that one connection, so nothing
//! recorded from one connection is accepted on another, and a relay in the
//! middle sees only ciphertext it can neither read nor pass off as its own.
//!
//! Trust comes from one of two places:
//! - the cluster secret (the default): every node derives the same CA key
//!   from the secret and, at each start, issues itself a fresh certificate
//!   under that CA. Knowing the secret is what lets a node in.
//! - an operator's PKI (`cluster_tls_ca/cert/key`): peers' certificates are
//!   checked against the CA, and a server's against the host it was reached at.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::RootCertStore;
use sha2::Sha256;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use crate::NodeId;

/// Every request names the node that sends it; the connection it comes on
/// proves that node a member.
pub const HEADER_NODE: &str = "x-hpfriends-node";

/// The name in every certificate issued under the secret-derived CA.
const SECRET_CA_SERVER_NAME: &str = "hpfriends-cluster";
/// How long a peer gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an outbound TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections to the cluster port waiting for their TLS handshake, at most.
const HANDSHAKES_IN_FLIGHT: usize = 256;
/// Refused connections logged per second, at most (an attacker can make many).
const REFUSALS_LOGGED_PER_SEC: u32 = 10;

use crate::log_budget::LogBudget;

/// Where the cluster's trust comes from.
pub enum Trust {
    /// The shared cluster secret.
    Secret(Vec<u8>),
    /// An operator's CA, and this node's certificate and key (PEM files).
    Pki { ca: PathBuf, cert: PathBuf, key: PathBuf },
}

#[derive(Clone)]
pub struct ClusterTls {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    /// With the secret: the one name every node's certificate carries. With a
    /// PKI: `None`, the peer's certificate must name the host it was reached at.
    server_name: Option<ServerName<'static>>,
    refused: AtomicU64,
    /// Connections that closed or stalled before their handshake was done.
    handshakes_ended: AtomicU64,
    refusal_log: Mutex<LogBudget>,
    /// Outbound connections leave from this address (the IP of the node's
    /// cluster address), so peers and firewalls see the cluster interface.
    source_ip: Option<IpAddr>,
}

/// Why an outbound connection to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the peer at {addr}: {source}")]
    Unreachable { addr: String, source: io::Error },
    /// The TLS handshake failed: the two nodes do not trust each other.
    #[error("the peer at {addr} and this node do not trust each other ({why}); check that both have the same cluster secret, or certificates from the same CA")]
    Refused { addr: String, why: String },
    #[error("bad cluster address {addr:?}: {why}")]
    BadAddress { addr: String, why: String },
    /// The gRPC channel over the connection could not be set up.
    #[error("cannot open a channel to the peer at {addr}: {why}")]
    Channel { addr: String, why: String },
}

/// Why a request on the cluster port was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefused {
    #[error("not over an authenticated cluster connection")]
    NotAuthenticated,
    #[error("missing or bad {HEADER_NODE}")]
    BadNodeHeader,
}

/// A peer's connection to the cluster port, authenticated by its handshake.
pub struct PeerStream {
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerConnection,
}

/// Put into every request's extensions by tonic: present only on requests
/// that came over an authenticated connection.
#[derive(Clone, Debug)]
pub struct PeerConnection {
    pub remote: SocketAddr,
}

impl ClusterTls {
    pub fn new(trust: Trust, node_id: NodeId) -> anyhow::Result<ClusterTls> {
        let (chain, key, roots, server_name) = match trust {
            Trust::Secret(secret) => {
                let (chain, key, roots) = secret_identity(&secret, node_id)?;
                let name = ServerName::try_from(SECRET_CA_SERVER_NAME).expect("a valid DNS name");
                (chain, key, roots, Some(name))
            }
            Trust::Pki { ca, cert, key } => {
                let mut roots = RootCertStore::empty();
                for c in read_certs(&ca, "cluster_tls_ca")? {
                    roots.add(c).map_err(|e| anyhow::anyhow!("cluster_tls_ca {}: {e}", ca.display()))?;
                }
                (read_certs(&cert, "cluster_tls_cert")?, read_key(&key, "cluster_tls_key")?, roots, None)
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(roots);
        let tls13 = &[&rustls::version::TLS13];
        let client_verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("cluster TLS: {e}"))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(tls13)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| anyhow::anyhow!("cluster TLS certificate and key do not match: {e}"))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(tls13)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| anyhow::anyhow!("cluster TLS certificate and key do not match: {e}"))?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ClusterTls {
            inner: Arc::new(Inner {
                node_id,
                connector: TlsConnector::from(Arc::new(client)),
                acceptor: TlsAcceptor::from(Arc::new(server)),
                server_name,
                refused: AtomicU64::new(0),
                handshakes_ended: AtomicU64::new(0),
                refusal_log: Mutex::new(LogBudget::per_second(REFUSALS_LOGGED_PER_SEC)),
                source_ip: None,
            }),
        })
    }

    pub fn with_source_ip(mut self, ip: Option<IpAddr>) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("set before the first clone");
        inner.source_ip = ip.filter(|ip| !ip.is_unspecified());
        self
    }

    /// Connections and requests refused so far (`hpfriends_cluster_auth_refused`).
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Inbound connections that closed, or sent nothing, before their TLS
    /// handshake was done (`hpfriends_cluster_handshakes_ended`): peers
    /// restarting or a partition healing, not refusals.
    pub fn handshakes_ended(&self) -> u64 {
        self.inner.handshakes_ended.load(Ordering::Relaxed)
    }

    /// A gRPC channel to a peer's cluster address, connected on first use.
    pub fn channel(&self, cluster_addr: &str) -> Result<Channel, ConnectError> {
        Ok(self.endpoint(cluster_addr)?.connect_with_connector_lazy(self.connector(cluster_addr)))
    }

    /// As `channel`, connected now.
    pub async fn connect_channel(&self, cluster_addr: &str) -> Result<Channel, ConnectError> {
        let connected = self.endpoint(cluster_addr)?.connect_with_connector(self.connector(cluster_addr)).await;
        connected.map_err(|e| ConnectError::Channel { addr: cluster_addr.to_string(), why: error_chain(&e) })
    }

    fn connector(
        &self,
        addr: &str,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
        Error = ConnectError,
        Future = impl std::future::Future<
            Output = Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, ConnectError>,
        > + Send,
    > + Send
           + 'static {
        let (tls, addr) = (self.clone(), addr.to_string());
        tower::service_fn(move |_: Uri| {
            let (tls, addr) = (tls.clone(), addr.clone());
            async move { tls.connect(&addr).await.map(TokioIo::new) }
        })
    }

    fn endpoint(&self, cluster_addr: &str) -> Result<Endpoint, ConnectError> {
        Endpoint::from_shared(format!("http://{cluster_addr}"))
            .map_err(|e| ConnectError::BadAddress { addr: cluster_addr.to_string(), why: e.to_string() })
    }

    /// TCP, then the TLS handshake, to a peer's cluster address.
    pub async fn connect(&self, addr: &str) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let unreachable = |source| ConnectError::Unreachable { addr: addr.to_string(), source };
        let name = match &self.inner.server_name {
            Some(name) => name.clone(),
            None => host_name(addr)?,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, self.tcp_connect(addr))
            .await
            .map_err(|_| unreachable(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(unreachable)?;
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.inner.connector.connect(name, tcp)).await {
            Err(_) => Err(unreachable(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))),
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(self.failed(addr, e)),
        }
    }

    /// Connects to a peer and waits for its first bytes: in TLS 1.3 the
    /// client finishes its handshake before the server has checked the
    /// client's certificate, so only the server's answer (HTTP/2 settings, or
    /// an alert) tells whether it accepted this node.
    pub async fn probe(&self, addr: &str) -> Result<(), ConnectError> {
        use tokio::io::AsyncReadExt;
        let mut stream = self.connect(addr).await?;
        let mut first = [0u8; 1];
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(Ok(_)) => Err(ConnectError::Unreachable {
                addr: addr.to_string(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "closed without an answer"),
            }),
            Ok(Err(e)) => Err(self.failed(addr, e)),
            Err(_) => Err(ConnectError::Unreachable {
                addr: addr.to_string(),
                source: io::Error::new(io::ErrorKind::TimedOut, "no answer after the handshake"),
            }),
        }
    }

    /// An I/O error on a connection to a peer: a TLS refusal (logged) or the peer unreachable.
    fn failed(&self, addr: &str, e: io::Error) -> ConnectError {
        match tls_error(&e) {
            Some(why) => {
                let e = ConnectError::Refused { addr: addr.to_string(), why };
                self.log_refusal(|| tracing::warn!("cluster connection refused: {e}"));
                e
            }
            None => ConnectError::Unreachable { addr: addr.to_string(), source: e },
        }
    }

    async fn tcp_connect(&self, addr: &str) -> io::Result<TcpStream> {
        let target = tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = self.inner.source_ip.filter(|ip| ip.is_ipv4() == target.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(target).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Accepts peers on the cluster port: each connection is served once its
    /// handshake proves it a member; refused ones are logged and counted.
    /// At most `HANDSHAKES_IN_FLIGHT` connections wait for their handshake
    /// (each holds a descriptor for up to 10 s); past that a connection is
    /// closed at once. Accept errors (out of file descriptors) back off
    /// instead of spinning.
    pub fn incoming(&self, listener: TcpListener) -> ReceiverStream<io::Result<PeerStream>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let tls = self.clone();
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT));
        tokio::spawn(async move {
            loop {
                let (tcp, remote) = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tls.log_refusal(|| tracing::warn!("cluster port: accept failed, backing off: {e}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let Ok(slot) = handshakes.clone().try_acquire_owned() else {
                    drop(tcp);
                    tls.refuse(|| tracing::warn!(%remote, "refused a cluster connection: {HANDSHAKES_IN_FLIGHT} handshakes already in progress"));
                    continue;
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.inner.acceptor.accept(tcp)).await;
                    drop(slot);
                    let ended = |why: String| {
                        tls.inner.handshakes_ended.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%remote, "a cluster connection ended before its TLS handshake: {why}");
                    };
                    // Only what TLS itself refused (a certificate, an alert, bytes that
                    // are not TLS) is a refusal; a connection that closes or stalls
                    // half-way is a peer restarting or a partition healing.
                    let why = match handshake {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(PeerStream { tls: stream, info: PeerConnection { remote } })).await;
                            return;
                        }
                        Ok(Err(e)) => match tls_error(&e) {
                            Some(why) => why,
                            None => return ended(e.to_string()),
                        },
                        Err(_) => return ended(format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")),
                    };
                    tls.refuse(|| {
                        tracing::warn!(
                            %remote,
                            "refused a cluster connection: {why} (a node with another cluster secret, an untrusted certificate, or not a node at all)"
                        )
                    });
                });
            }
        });
        ReceiverStream::new(rx)
    }

    fn refuse(&self, log: impl FnOnce()) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        self.log_refusal(log);
    }

    fn log_refusal(&self, log: impl FnOnce()) {
        let suppressed = self.inner.refusal_log.lock().expect("log budget lock").take();
        if let Some(suppressed) = suppressed {
            if suppressed > 0 {
                tracing::warn!(suppressed, "cluster port: more refusals than are logged per second");
            }
            log();
        }
    }

    /// The node id a request names, if it came over an authenticated connection.
    pub fn verify(&self, req: &tonic::Request<()>) -> Result<NodeId, RequestRefused> {
        let result = if req.extensions().get::<PeerConnection>().is_none() {
            Err(RequestRefused::NotAuthenticated)
        } else {
            peer_id(req.metadata()).ok_or(RequestRefused::BadNodeHeader)
        };
        if let Err(why) = &result {
            self.refuse(|| tracing::warn!("refused a cluster request: {why}"));
        }
        result
    }
}

/// The node id a request's header names.
pub fn peer_id(metadata: &tonic::metadata::MetadataMap) -> Option<NodeId> {
    metadata.get(HEADER_NODE)?.to_str().ok()?.parse().ok()
}

/// Client side: names this node on every request.
impl tonic::service::Interceptor for ClusterTls {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(HEADER_NODE, self.inner.node_id.into());
        Ok(req)
    }
}

/// Server side: refuses requests that did not come over an authenticated connection.
#[derive(Clone)]
pub struct RequirePeer(pub ClusterTls);

impl tonic::service::Interceptor for RequirePeer {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match self.0.verify(&req) {
            Ok(_) => Ok(req),
            Err(why) => Err(tonic::Status::unauthenticated(format!("cluster authentication failed: {why}"))),
        }
    }
}

/// The TLS failure inside a handshake's I/O error, said plainly.
fn tls_error(e: &io::Error) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(c) => format!("its certificate is not trusted here: {c:?}"),
        rustls::Error::AlertReceived(alert) => format!("it did not accept this node's certificate ({alert:?})"),
        rustls::Error::NoCertificatesPresented => "it presented no certificate".to_string(),
        other => other.to_string(),
    })
}

/// An error and its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// The host part of `host:port` as a TLS server name.
fn host_name(addr: &str) -> Result<ServerName<'static>, ConnectError> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| ConnectError::BadAddress {
        addr: addr.to_string(),
        why: format!("{host:?} is not a host name: {e}"),
    })
}

/// A PKCS#8 v1 document around a raw Ed25519 seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, RootCertStore);

/// The CA every node derives from the secret, and a fresh certificate for
/// this node signed by it.
fn secret_identity(secret: &[u8], node_id: NodeId) -> anyhow::Result<Identity> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    use rcgen::{KeyUsagePurpose, PKCS_ED25519};
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"hpfriends cluster CA key v1");
    let seed = mac.finalize().into_bytes();
    let pkcs8 = PrivatePkcs8KeyDer::from([&ED25519_PKCS8_PREFIX[..], &seed[..]].concat());
    let ca_key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ED25519)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "hpfriends cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let node_key = KeyPair::generate_for(&PKCS_ED25519)?;
    let mut node = CertificateParams::new(vec![SECRET_CA_SERVER_NAME.to_string()])?;
    node.distinguished_name.push(DnType::CommonName, format!("hpfriends node {node_id}"));
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let node_cert = node.signed_by(&node_key, &issuer)?;

    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(node_key.serialize_der()));
    Ok((vec![node_cert.der().clone()], key, roots))
}

/// The certificates of a PEM file.
pub fn read_certs(path: &Path, setting: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let file =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{setting}: cannot open {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{setting}: cannot parse {}: {e}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{setting}: no certificate found in {}", path.display());
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_key(path: &Path, setting: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let file =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{setting}: cannot open {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{setting}: cannot parse {}: {e}", path.display()))?
        .ok_or_else(|| anyhow::anyhow!("{setting}: no private key found in {}", path.display()))
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerConnection;

    fn connect_info(&self) -> PeerConnection {
        self.info.clone()
    }
}

impl tokio::io::AsyncRead for PeerStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tls).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PeerStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn server(tls: &ClusterTls) -> (SocketAddr, ReceiverStream<io::Result<PeerStream>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, tls.incoming(listener))
    }

    #[tokio::test]
    async fn given_the_same_secret_then_nodes_talk_over_an_encrypted_connection() {
        let (a, b) =
            (Trust::Secret(b"a-long-shared-secret-for-this-test".to_vec()), b"a-long-shared-secret-for-this-test");
        let server_tls = ClusterTls::new(a, 1).unwrap();
        let (addr, mut incoming) = server(&server_tls).await;
        let client = ClusterTls::new(Trust::Secret(b.to_vec()), 2).unwrap();
        let mut out = client.connect(&addr.to_string()).await.unwrap();
        let mut inbound = futures::StreamExt::next(&mut incoming).await.unwrap().unwrap();
        out.write_all(b"hello").await.unwrap();
        out.flush().await.unwrap();
        let mut got = [0u8; 5];
        inbound.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(server_tls.refused(), 0);
    }

    #[tokio::test]
    async fn given_another_secret_then_refused_on_both_sides_and_counted() {
        let server_tls = ClusterTls::new(Trust::Secret(b"the-secret-of-cluster-one-0123456789".to_vec()), 1).unwrap();
        let (addr, _incoming) = server(&server_tls).await;
        let client = ClusterTls::new(Trust::Secret(b"the-secret-of-cluster-two-0123456789".to_vec()), 2).unwrap();
        let err = client.connect(&addr.to_string()).await.unwrap_err();
        assert!(matches!(err, ConnectError::Refused { .. }), "{err}");
        assert!(err.to_string().contains("same cluster secret"), "{err}");
        tokio::time::timeout(Duration::from_secs(5), async {
            while server_tls.refused() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the server counts the refused handshake");
    }

    #[tokio::test]
    async fn given_a_connection_that_closes_mid_handshake_then_it_is_counted_as_ended_not_refused() {
        let server_tls = ClusterTls::new(Trust::Secret(b"the-secret-of-cluster-one-0123456789".to_vec()), 1).unwrap();
        let (addr, _incoming) = server(&server_tls).await;
        drop(TcpStream::connect(addr).await.unwrap());
        // Half a ClientHello, then gone.
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
        drop(half);
        tokio::time::timeout(Duration::from_secs(5), async {
            while server_tls.handshakes_ended() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("both counted as ended");
        assert_eq!(server_tls.refused(), 0, "no refusal: nothing was refused");
    }

    #[tokio::test]
    async fn given_plain_bytes_instead_of_a_handshake_then_refused_and_counted() {
        let server_tls = ClusterTls::new(Trust::Secret(b"the-secret-of-cluster-one-0123456789".to_vec()), 1).unwrap();
        let (addr, _incoming) = server(&server_tls).await;
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf)).await;
        assert!(!buf.windows(2).any(|w| w == b"h2"), "no HTTP/2 answer to a plaintext client");
        tokio::time::timeout(Duration::from_secs(5), async {
            while server_tls.refused() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("counted");
    }

    #[tokio::test]
    async fn given_more_idle_connections_than_handshakes_in_flight_then_the_extra_ones_close_at_once() {
        let server_tls = ClusterTls::new(Trust::Secret(b"the-secret-of-cluster-one-0123456789".to_vec()), 1).unwrap();
        let (addr, _incoming) = server(&server_tls).await;
        let mut idle = Vec::new();
        for _ in 0..HANDSHAKES_IN_FLIGHT {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // The extra connection is closed without waiting out the 10 s handshake deadline.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the extra connection stays open: {read:?}");
        assert_eq!(server_tls.refused(), 1);
        // A member still gets in once the idle ones are gone.
        drop(idle);
        let client = ClusterTls::new(Trust::Secret(b"the-secret-of-cluster-one-0123456789".to_vec()), 2).unwrap();
        let joined = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if client.connect(&addr.to_string()).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(joined.is_ok(), "a member could not connect after the flood ended");
    }

    #[test]
    fn given_addresses_then_host_names_for_pki_verification() {
        assert_eq!(host_name("node1.example.net:7000").unwrap(), ServerName::try_from("node1.example.net").unwrap());
        assert_eq!(host_name("[::1]:7000").unwrap(), ServerName::try_from("::1").unwrap());
        assert_eq!(host_name("10.0.0.5:7000").unwrap(), ServerName::try_from("10.0.0.5").unwrap());
    }
}
