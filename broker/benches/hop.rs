//! The cost of the node-to-node hop, on a real three-node cluster (release
//! processes on loopback): throughput and latency with publisher and
//! subscriber on the same node vs on different nodes, in one run.
//!
//! cargo bench -p hpfriends --bench hop

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hpfriends_broker::protocol::frame::{auth_hash, encode_auth, encode_publish, encode_subscribe};
use hpfriends_broker::protocol::{decode, Frame, Limits};
use hpfriends_cluster_tests::{Cluster, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const PAYLOAD: usize = 256;
const CHANNEL: &str = "bench";

struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
}

impl Reader {
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = decode(&mut self.buf, &Limits::default()).unwrap() {
                return f;
            }
            assert!(self.half.read_buf(&mut self.buf).await.unwrap() > 0, "broker closed the connection");
        }
    }
}

async fn login(addr: SocketAddr, ident: &str, secret: &str) -> (Reader, BufWriter<OwnedWriteHalf>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (r, w) = stream.into_split();
    let mut reader = Reader { half: r, buf: BytesMut::with_capacity(1 << 16) };
    let Frame::Info { nonce, .. } = reader.frame().await else { panic!("expected INFO") };
    let mut writer = BufWriter::new(w);
    writer.write_all(&encode_auth(ident.as_bytes(), &auth_hash(&nonce, secret.as_bytes()))).await.unwrap();
    writer.flush().await.unwrap();
    (reader, writer)
}

/// Payload: 8-byte sequence, 8-byte send time (ns since `epoch`), padding.
fn payload(seq: u64, epoch: Instant) -> Vec<u8> {
    let mut p = vec![0u8; PAYLOAD];
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
    p
}

async fn subscriber_ready(sub_addr: SocketAddr, pub_addr: SocketAddr) -> (Reader, BufWriter<OwnedWriteHalf>) {
    let (mut sr, mut sw) = login(sub_addr, "sub-k", "s").await;
    sw.write_all(&encode_subscribe(b"sub-k", CHANNEL.as_bytes())).await.unwrap();
    sw.flush().await.unwrap();
    let (_pr, mut pw) = login(pub_addr, "pub-k", "p").await;
    // Publish probes until one arrives: the subscription is live on the publisher's node.
    let epoch = Instant::now();
    loop {
        pw.write_all(&encode_publish(b"pub-k", CHANNEL.as_bytes(), &payload(u64::MAX, epoch))).await.unwrap();
        pw.flush().await.unwrap();
        if tokio::time::timeout(Duration::from_millis(50), sr.frame()).await.is_ok() {
            break;
        }
    }
    // Drain stray probes.
    while tokio::time::timeout(Duration::from_millis(100), sr.frame()).await.is_ok() {}
    (sr, sw)
}

/// Closed loop: at most `window` published and not yet received.
async fn throughput(pub_addr: SocketAddr, sub_addr: SocketAddr, window: u64, run: Duration) -> f64 {
    let (mut sr, _sw) = subscriber_ready(sub_addr, pub_addr).await;
    let (_pr, mut pw) = login(pub_addr, "pub-k", "p").await;
    let epoch = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < run {
        while sent - received < window {
            pw.write_all(&encode_publish(b"pub-k", CHANNEL.as_bytes(), &payload(sent, epoch))).await.unwrap();
            sent += 1;
        }
        pw.flush().await.unwrap();
        while sent - received >= window / 2 {
            if let Frame::Publish { .. } = sr.frame().await {
                received += 1;
            }
        }
    }
    received as f64 / started.elapsed().as_secs_f64()
}

/// Fixed rate; returns sorted one-way latencies.
async fn latency(pub_addr: SocketAddr, sub_addr: SocketAddr, rate: u64, run: Duration) -> Vec<Duration> {
    let (mut sr, _sw) = subscriber_ready(sub_addr, pub_addr).await;
    let (_pr, mut pw) = login(pub_addr, "pub-k", "p").await;
    let epoch = Instant::now();
    let total = rate * run.as_secs();
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(total as usize);
        while (lat.len() as u64) < total {
            if let Frame::Publish { payload, .. } = sr.frame().await {
                let sent_ns = u64::from_be_bytes(payload[8..16].try_into().unwrap());
                lat.push(Duration::from_nanos(epoch.elapsed().as_nanos() as u64 - sent_ns));
            }
        }
        lat
    });
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    for seq in 0..total {
        tick.tick().await;
        pw.write_all(&encode_publish(b"pub-k", CHANNEL.as_bytes(), &payload(seq, epoch))).await.unwrap();
        pw.flush().await.unwrap();
    }
    let mut lat = tokio::time::timeout(DEADLINE, receiver).await.expect("all messages arrive").unwrap();
    lat.sort();
    lat
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_hpfriends")), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let graph = c.dir.path().join("graph.json");
    std::fs::write(
        &graph,
        r#"{"shares": [{"from": "publisher", "to": "subscriber", "channel": "bench", "kind": "shares"}],
            "keys": [{"ident": "pub-k", "secret": "p", "owner": "publisher", "publish": ["bench"]},
                     {"ident": "sub-k", "secret": "s", "owner": "subscriber", "subscribe": ["bench"]}]}"#,
    )
    .unwrap();
    c.nodes[0].ctl(&["apply", graph.to_str().unwrap()]).unwrap();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    let (n1, n2) = (c.nodes[0].hpfeeds_addr, c.nodes[1].hpfeeds_addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = Duration::from_secs(3);
    println!("1 publisher -> 1 subscriber, {PAYLOAD} B payloads, 3 rounds alternating, medians");
    let (mut same_tp, mut cross_tp, mut same_lat, mut cross_lat) = (vec![], vec![], vec![], vec![]);
    for round in 1..=3 {
        same_tp.push(rt.block_on(throughput(n1, n1, 4096, run)));
        cross_tp.push(rt.block_on(throughput(n1, n2, 4096, run)));
        let s = rt.block_on(latency(n1, n1, 2_000, run));
        let x = rt.block_on(latency(n1, n2, 2_000, run));
        println!(
            "round {round}: closed loop W=4096 same node {:.0} msg/s, cross node {:.0} msg/s; \
             at 2,000 msg/s p50/p99 same {:?}/{:?}, cross {:?}/{:?}",
            same_tp[round - 1],
            cross_tp[round - 1],
            pct(&s, 0.5),
            pct(&s, 0.99),
            pct(&x, 0.5),
            pct(&x, 0.99)
        );
        same_lat.push(pct(&s, 0.99));
        cross_lat.push(pct(&x, 0.99));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (s, x) = (median(&mut same_tp), median(&mut cross_tp));
    same_lat.sort();
    cross_lat.sort();
    println!("median throughput: same node {s:.0} msg/s, cross node {x:.0} msg/s, ratio {:.2}", x / s);
    println!(
        "median p99 at 2,000 msg/s: same node {:?}, cross node {:?}, extra for the hop {:?}",
        same_lat[1],
        cross_lat[1],
        cross_lat[1].saturating_sub(same_lat[1])
    );
}
