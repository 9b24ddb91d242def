//! Authentication of peers on the cluster port: every request carries the
//! sender's node id, a timestamp, a random nonce and an HMAC-SHA256 over them
//! with the shared cluster secret. Requests without a valid MAC, or with a
//! timestamp more than `MAX_SKEW` away, are refused, logged and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

use crate::NodeId;

pub const HEADER_NODE: &str = "x-hpfriends-node";
pub const HEADER_TIME: &str = "x-hpfriends-time";
pub const HEADER_NONCE: &str = "x-hpfriends-nonce";
pub const HEADER_MAC: &str = "x-hpfriends-mac";

/// How far a peer's clock may be from ours.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct PeerAuth {
    secret: Arc<[u8]>,
    node_id: NodeId,
    refused: Arc<AtomicU64>,
    /// Outbound cluster connections leave from this address (the IP of the
    /// node's cluster address), so peers and firewalls see the cluster interface.
    source_ip: Option<std::net::IpAddr>,
}

impl PeerAuth {
    pub fn new(secret: &[u8], node_id: NodeId) -> Self {
        PeerAuth { secret: secret.into(), node_id, refused: Arc::default(), source_ip: None }
    }

    pub fn with_source_ip(mut self, ip: Option<std::net::IpAddr>) -> Self {
        self.source_ip = ip.filter(|ip| !ip.is_unspecified());
        self
    }

    /// A gRPC endpoint for a peer's cluster address.
    pub fn endpoint(&self, cluster_addr: &str) -> Result<tonic::transport::Endpoint, String> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{cluster_addr}"))
            .map_err(|e| format!("bad cluster address {cluster_addr:?}: {e}"))?;
        Ok(endpoint.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true).local_address(self.source_ip))
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn mac(&self, node: &str, time: &str, nonce: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(node.as_bytes());
        mac.update(b"|");
        mac.update(time.as_bytes());
        mac.update(b"|");
        mac.update(nonce.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The four header values that prove this node knows the secret.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        let node = self.node_id.to_string();
        let time = now_millis().to_string();
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let mac = hex::encode(self.mac(&node, &time, &nonce));
        [(HEADER_NODE, node), (HEADER_TIME, time), (HEADER_NONCE, nonce), (HEADER_MAC, mac)]
    }

    /// Checks the headers (via `get`), returning the peer's node id.
    pub fn verify_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Result<NodeId, String> {
        let result = (|| {
            let field = |name: &str| get(name).ok_or_else(|| format!("missing {name}"));
            let (node, time, nonce, mac) =
                (field(HEADER_NODE)?, field(HEADER_TIME)?, field(HEADER_NONCE)?, field(HEADER_MAC)?);
            let sent: u64 = time.parse().map_err(|_| format!("bad {HEADER_TIME}"))?;
            if now_millis().abs_diff(sent) > MAX_SKEW.as_millis() as u64 {
                return Err("timestamp too far from this node's clock".to_string());
            }
            let given = hex::decode(mac).map_err(|_| format!("bad {HEADER_MAC}"))?;
            if !bool::from(self.mac(node, time, nonce).ct_eq(&given)) {
                return Err("wrong cluster secret".to_string());
            }
            node.parse().map_err(|_| format!("bad {HEADER_NODE}"))
        })();
        if let Err(why) = &result {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %why, "refused an unauthenticated peer");
        }
        result
    }

    pub fn verify(&self, metadata: &MetadataMap) -> Result<NodeId, String> {
        self.verify_with(|name| metadata.get(name).and_then(|v| v.to_str().ok()))
    }
}

/// Client side: adds the headers to every outgoing request.
impl tonic::service::Interceptor for PeerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (name, value) in self.headers() {
            let value = value.parse().map_err(|_| tonic::Status::internal("header value"))?;
            req.metadata_mut().insert(name, value);
        }
        Ok(req)
    }
}

/// Server side: refuses requests that do not prove the secret.
#[derive(Clone)]
pub struct RequirePeer(pub PeerAuth);

impl tonic::service::Interceptor for RequirePeer {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match self.0.verify(req.metadata()) {
            Ok(_) => Ok(req),
            Err(why) => Err(tonic::Status::unauthenticated(format!("cluster authentication failed: {why}"))),
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(h: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn given_same_secret_then_verified_with_node_id() {
        let a = PeerAuth::new(b"s3cret", 2);
        let h = a.headers();
        assert_eq!(PeerAuth::new(b"s3cret", 1).verify_with(lookup(&h)), Ok(2));
    }

    #[test]
    fn given_wrong_secret_or_tampered_headers_then_refused_and_counted() {
        let server = PeerAuth::new(b"right", 1);
        let h = PeerAuth::new(b"wrong", 2).headers();
        assert!(server.verify_with(lookup(&h)).is_err());
        let mut h = PeerAuth::new(b"right", 2).headers();
        h[0].1 = "3".into(); // claims another node id
        assert!(server.verify_with(lookup(&h)).is_err());
        assert!(server.verify_with(|_| None).is_err());
        assert_eq!(server.refused(), 3);
    }
}
