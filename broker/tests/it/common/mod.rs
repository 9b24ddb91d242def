//! Helpers for tests against an in-process node on 127.0.0.1:0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use hpfriends_broker::config::Config;
use hpfriends_broker::protocol::frame::{self, auth_hash};
use hpfriends_broker::protocol::{decode, Frame, Limits};
use hpfriends_broker::server::{start, Running};
use hpfriends_graph::declare::{plan, Declaration};
use hpfriends_graph::{Actor, Command};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` every 20 ms until it gives a value; panics after `WAIT`.
pub async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Node {
    pub running: Running,
    pub dir: tempfile::TempDir,
}

pub async fn start_node(tweak: impl FnOnce(&mut Config)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        hpfeeds_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        cluster_addr: "127.0.0.1:0".into(),
        // Test graphs use one-letter key secrets; the default of 8 has its own test.
        min_key_secret_len: 1,
        ..Config::default()
    };
    tweak(&mut config);
    let running = start(&config).await.unwrap();
    running.node.wait_ready(WAIT).await.unwrap();
    Node { running, dir }
}

impl Node {
    pub fn running_data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub async fn declare(&self, json: &str) {
        let decl: Declaration = serde_json::from_str(json).unwrap();
        let commands = self.running.node.read_graph(|g| plan(&decl, g)).unwrap();
        self.write(Command::Batch { commands }).await;
    }

    pub async fn write(&self, command: Command) {
        self.running.node.write(Actor::Operator, command).await.unwrap();
    }

    /// A series without labels, as the node's `/metrics` gives it now.
    pub async fn metric(&self, name: &str) -> f64 {
        let url = format!("http://{}/metrics", self.running.http_addr);
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' '))).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A user's API token, issued by the operator.
    pub async fn user_token(&self, name: &str) -> String {
        let url = format!("http://{}/api/v1/users/{name}/token", self.running.http_addr);
        let http = reqwest::Client::new();
        let body: serde_json::Value =
            http.post(url).bearer_auth(&self.running.operator_token).send().await.unwrap().json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }
}

/// A raw hpfeeds client.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    pub nonce: Vec<u8>,
    pub broker_name: Vec<u8>,
    pub ident: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::start(TcpStream::connect(addr).await.unwrap()).await
    }

    /// Connects from `source` (any 127.x.y.z works on loopback).
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        Client::start(socket.connect(addr).await.unwrap()).await
    }

    /// Connects with a receive buffer of about `bytes`: a client that stops
    /// reading soon leaves the broker's frames unacknowledged in its queue.
    pub async fn connect_with_receive_buffer(addr: SocketAddr, bytes: u32) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        Client::start(socket.connect(addr).await.unwrap()).await
    }

    /// Bytes this client has received and not yet decoded: in its own buffer
    /// and in its kernel's receive queue.
    pub fn unread(&self) -> usize {
        self.buf.len() + rustix::io::ioctl_fionread(&self.stream).unwrap() as usize
    }

    async fn start(stream: TcpStream) -> Client {
        let mut c = Client { stream, buf: BytesMut::new(), nonce: vec![], broker_name: vec![], ident: String::new() };
        match c.next().await {
            Some(Frame::Info { name, nonce }) => {
                c.nonce = nonce.to_vec();
                c.broker_name = name.to_vec();
            }
            other => panic!("expected INFO, got {other:?}"),
        }
        c
    }

    /// Connects and authenticates; the caller checks the outcome.
    pub async fn login(addr: SocketAddr, ident: &str, secret: &str) -> Client {
        Client::connect(addr).await.auth(ident, secret).await
    }

    pub async fn auth(mut self, ident: &str, secret: &str) -> Client {
        self.ident = ident.to_string();
        let hash = auth_hash(&self.nonce, secret.as_bytes());
        self.send(&frame::encode_auth(ident.as_bytes(), &hash)).await;
        self
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn publish(&mut self, channel: &str, payload: &[u8]) {
        let f = frame::encode_publish(self.ident.as_bytes(), channel.as_bytes(), payload);
        self.send(&f).await;
    }

    pub async fn subscribe(&mut self, channel: &str) {
        let f = frame::encode_subscribe(self.ident.as_bytes(), channel.as_bytes());
        self.send(&f).await;
    }

    pub async fn unsubscribe(&mut self, channel: &str) {
        let f = frame::encode_unsubscribe(self.ident.as_bytes(), channel.as_bytes());
        self.send(&f).await;
    }

    /// The next frame, or None when the broker closed the connection.
    pub async fn next(&mut self) -> Option<Frame> {
        let limits = Limits { max_publish_body: 64 * 1024 * 1024 };
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(f) = decode(&mut self.buf, &limits).unwrap() {
                    return Some(f);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("no frame and no close within the wait")
    }

    /// Expects an ERROR with exactly `text`, then the close.
    pub async fn expect_error(&mut self, text: &str) {
        match self.next().await {
            Some(Frame::Error { message }) => assert_eq!(String::from_utf8_lossy(&message), text),
            other => panic!("expected ERROR {text:?}, got {other:?}"),
        }
        assert_eq!(self.next().await, None, "connection should close after the ERROR");
    }

    /// Next PUBLISH as (ident, channel, payload).
    pub async fn next_publish(&mut self) -> (String, String, Vec<u8>) {
        match self.next().await {
            Some(Frame::Publish(p)) => (
                String::from_utf8_lossy(p.ident()).into_owned(),
                String::from_utf8_lossy(p.channel()).into_owned(),
                p.payload().to_vec(),
            ),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Publishes `marker` with this client's own key until it comes back:
    /// proves the subscription is live and everything routed before it arrived.
    pub async fn sync(&mut self, channel: &str, marker: &str) {
        self.publish(channel, marker.as_bytes()).await;
        let (_, _, payload) = self.next_publish().await;
        assert_eq!(payload, marker.as_bytes(), "expected only the marker");
    }
}
