//! Reading the archive back: one node in this process, a million messages of
//! 256 B published to it over hpfeeds while a resume key is away; then that
//! key's catch-up over hpfeeds (the process's resident memory before and at
//! its peak, sampled every 20 ms, and the rate); then `GET /api/v1/messages`
//! page by page (10,000 a page, following `Link`) as the reader, five rounds;
//! prints messages per second per round and their median, and the archive's
//! bytes on disk per message. Last, what an owner's keep costs: one purge
//! pass over a channel of a million messages, five rounds.
//!
//! cargo bench -p hpfriends --bench archive

use std::time::{Duration, Instant};

use hpfriends_broker::config::Config;
use hpfriends_broker::protocol::frame::{auth_hash, encode_auth, encode_publish, encode_subscribe};
use hpfriends_broker::server::start;
use hpfriends_cluster_tests::median;
use hpfriends_graph::{Actor, AuthKey, Command, ShareKind, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MESSAGES: usize = 1_000_000;
const ROUNDS: usize = 5;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            hpfeeds_addr: "127.0.0.1:0".into(),
            http_addr: "127.0.0.1:0".into(),
            cluster_addr: "127.0.0.1:0".into(),
            min_key_secret_len: 1,
            ..Config::default()
        };
        let running = start(&config).await.unwrap();
        running.node.wait_ready(Duration::from_secs(30)).await.unwrap();
        let key = |ident: &str, owner: &str, publish: bool| {
            let channels = vec!["bench".to_string()];
            Command::AddKey(AuthKey {
                ident: ident.into(),
                secret: ident.into(),
                owner: owner.into(),
                publish: if publish { channels.clone() } else { vec![] },
                subscribe: if publish { vec![] } else { channels },
                resume: !publish,
            })
        };
        let to = Target::User("analyst".into());
        let commands = vec![
            Command::AddUser { name: "sensors".into() },
            Command::AddUser { name: "analyst".into() },
            key("pub", "sensors", true),
            key("sub", "analyst", false),
            Command::AddShare {
                from: "sensors".into(),
                to: to.clone(),
                channel: "bench".into(),
                kind: ShareKind::Shares,
                with_history: false,
            },
            Command::AcceptShare { from: "sensors".into(), to, channel: "bench".into() },
        ];
        running.node.write(Actor::Operator, Command::Batch { commands }).await.unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://{}", running.http_addr);
        let token: serde_json::Value = http
            .post(format!("{base}/api/v1/users/analyst/token"))
            .bearer_auth(&running.operator_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["token"].as_str().unwrap().to_string();

        // The resume key subscribes once and leaves: its place is before everything.
        let mut reader = login(running.hpfeeds_addr, "sub").await;
        reader.write_all(&encode_subscribe(b"sub", b"bench")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(reader);
        let analyst = running.node.read_graph(|g| g.user_id("analyst")).unwrap();
        while running.node.read_graph(|g| g.resume_position("sub", analyst, "bench").is_none()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Publish, at the pace the archive keeps up with (a pause when it lags).
        let written_before = written_to_storage();
        let mut s = login(running.hpfeeds_addr, "pub").await;
        let payload = vec![b'x'; 256];
        for i in 0..MESSAGES / 1000 {
            let mut burst = Vec::with_capacity(1000 * 280);
            for j in 0..1000 {
                let mut p = payload.clone();
                p[..8].copy_from_slice(&((i * 1000 + j) as u64).to_be_bytes());
                burst.extend_from_slice(&encode_publish(b"pub", b"bench", &p));
            }
            s.write_all(&burst).await.unwrap();
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let archived = loop {
            let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
            let value =
                |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
            let (archived, dropped) = (value("hpfriends_archive_messages "), value("hpfriends_archive_dropped_total "));
            if archived + dropped >= MESSAGES as f64 {
                println!(
                    "published {MESSAGES} messages of 256 B: {archived} archived, {dropped} dropped from the archive"
                );
                break archived as usize;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let disk: u64 = walk(&dir.path().join("data/archive"));
        println!("archive on disk: {disk} bytes, {:.1} B per message", disk as f64 / archived as f64);

        // The resume key comes back: everything it missed, as fast as it reads.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // What the process wrote to storage (WAL, flushes, compactions; the Raft
        // store is idle) for what was archived: ident, channel and payload.
        let written = written_to_storage() - written_before;
        let logical = archived as u64 * (3 + 5 + 256);
        println!(
            "written to storage while archiving: {written} bytes for {logical} of messages: {:.2}× write amplification",
            written as f64 / logical as f64
        );
        let idle = resident_kib();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(idle));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(resident_kib(), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let start = Instant::now();
        let mut reader = login(running.hpfeeds_addr, "sub").await;
        reader.write_all(&encode_subscribe(b"sub", b"bench")).await.unwrap();
        let frame_len = encode_publish(b"pub", b"bench", &payload).len();
        let (mut got, mut buf) = (0usize, vec![0u8; 1 << 20]);
        while got < archived * frame_len {
            match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got += n,
                _ => panic!("the catch-up stopped after {} of {archived} messages", got / frame_len),
            }
        }
        let took = start.elapsed();
        sampler.abort();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "resume catch-up of {archived} messages: {took:.2?}, {:.0} messages/s; resident memory idle {} MiB, peak {} MiB (+{} MiB)",
            archived as f64 / took.as_secs_f64(),
            idle / 1024,
            peak / 1024,
            peak.saturating_sub(idle) / 1024
        );
        drop(reader);

        let mut rates = Vec::new();
        for round in 1..=ROUNDS {
            let start = Instant::now();
            let mut path = "/api/v1/messages?channel=bench&limit=10000".to_string();
            let mut read = 0;
            loop {
                let r = http.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap();
                assert!(r.status().is_success());
                let next = r
                    .headers()
                    .get("link")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Some(v.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0.to_string()));
                let body = r.bytes().await.unwrap();
                read += body.iter().filter(|b| **b == b'\n').count();
                match next {
                    Some(p) => path = p,
                    None => break,
                }
            }
            let took = start.elapsed();
            assert_eq!(read, archived, "every archived message read once");
            let rate = read as f64 / took.as_secs_f64();
            println!("round {round}: {read} messages in {took:.2?}: {rate:.0} messages/s");
            rates.push(rate);
        }
        println!("replay to one reader, median of {ROUNDS} rounds: {:.0} messages/s", median(rates));
        running.stop().await;
    });
    purge();
}

/// What an owner's keep costs the writer on a busy channel: one purge pass
/// (`Store::purge`, at most once a minute per channel) over 1,000,000
/// messages of two owners, one of whom keeps for less than the node.
fn purge() {
    use bytes::Bytes;
    use hpfriends_broker::archive::store::{Id, Message, Store};
    let mut times = Vec::new();
    for round in 1..=ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Ten minutes of a channel at 1,667 messages a second, in the writer's batches.
        let batch: Vec<Message> = (0..4096u64)
            .map(|i| Message {
                id: Id { time_us: 0, node: 1, seq: i },
                owner: 1 + (i % 2) as u32,
                position: 0,
                ident: Bytes::from_static(b"sensor"),
                channel: Bytes::from_static(b"busy"),
                payload: Bytes::from(vec![b'x'; 256]),
            })
            .collect();
        let mut seq = 0;
        while seq < MESSAGES as u64 {
            let messages: Vec<Message> = batch
                .iter()
                .take(MESSAGES - seq as usize)
                .map(|m| {
                    let n = seq + m.id.seq;
                    Message { id: Id { time_us: 1_000_000 + n * 600, node: 1, seq: n }, ..m.clone() }
                })
                .collect();
            seq += messages.len() as u64;
            store.append(&messages).unwrap();
        }
        // Owner 2 keeps five minutes: half of their messages go.
        let keep_from = 1_000_000 + 300_000_000;
        let start = Instant::now();
        let gone = store.purge(b"busy", 0, u64::MAX, |m| m.owner != 2 || m.id.time_us >= keep_from).unwrap();
        let took = start.elapsed();
        assert_eq!(gone, 250_000, "half of owner 2's messages");
        println!("purge round {round}: {MESSAGES} messages looked at, {gone} deleted, in {took:.2?}");
        times.push(took.as_secs_f64());
    }
    let t = median(times);
    println!(
        "purge of a channel with {MESSAGES} messages, median of {ROUNDS}: {:.2} s ({:.0} messages looked at a second)",
        t,
        MESSAGES as f64 / t
    );
}

/// A logged-in hpfeeds connection of `ident` (its secret is its ident).
async fn login(addr: std::net::SocketAddr, ident: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut info = [0u8; 256];
    let n = s.read(&mut info).await.unwrap();
    let nonce = &info[6 + info[5] as usize..n];
    s.write_all(&encode_auth(ident.as_bytes(), &auth_hash(nonce, ident.as_bytes()))).await.unwrap();
    s
}

/// Bytes this process caused to be written to storage (`/proc/self/io`).
fn written_to_storage() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// This process's resident memory (VmRSS), in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes of the files under `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
