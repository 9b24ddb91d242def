//! The web app's pages on the large synthetic graph (100,000 users,
//! 1,000,000 shares): a real node in this process, loaded through Raft, and
//! each page of its busiest user fetched over HTTP many times; plus the
//! Audience page of a user whose channel has 10,000 readers. Prints
//! p50/p99/max per page.
//!
//! cargo bench -p hpfriends --bench pages

use std::time::{Duration, Instant};

use hpfriends_broker::config::Config;
use hpfriends_broker::server::start;
use hpfriends_graph::synthetic::{self, Shape};
use hpfriends_graph::{Actor, Command, Graph, ShareKind, Target};
use sha2::{Digest, Sha256};

const ROUNDS: usize = 200;
const BATCH: usize = 20_000;
/// A well-formed argon2id hash: the bench signs in by a session entry, not a password.
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

/// The synthetic commands that apply, in order (the generator makes a few
/// duplicates, and a batch is all or nothing).
fn busiest(g: &Graph) -> String {
    let mut count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for s in g.all_shares() {
        *count.entry(g.user_name(g.user_id(&s.from).unwrap()).unwrap()).or_default() += 1;
        if let Target::User(u) = &s.to {
            if let Some(id) = g.user_id(u) {
                *count.entry(g.user_name(id).unwrap()).or_default() += 1;
            }
        }
    }
    count.into_iter().max_by_key(|(u, n)| (*n, std::cmp::Reverse(*u))).map(|(u, _)| u.to_string()).unwrap()
}

fn session_for(user: &str, cookie: &str) -> Vec<Command> {
    vec![
        Command::SetPassword { name: user.into(), password_hash: PASSWORD_HASH.into(), invitation: None, at: 1 },
        Command::StartSession {
            actor: Actor::User(user.into()),
            session_hash: hex::encode(Sha256::digest(cookie.as_bytes())),
            expires_at: u64::MAX / 2,
            at: hpfriends_broker::app::accounts::now(),
        },
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn measure(http: &reqwest::Client, url: &str, cookie: &str) -> (Duration, Duration, Duration, usize) {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut size = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let resp = http.get(url).header("cookie", format!("hpfriends_session={cookie}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        size = resp.bytes().await.unwrap().len();
        times.push(started.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), *times.last().unwrap(), size)
}

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
        let shape = Shape::large();
        let (local, commands) = synthetic::applied(&shape);
        let started = Instant::now();
        for chunk in commands.chunks(BATCH) {
            running.node.write(Actor::Operator, Command::Batch { commands: chunk.to_vec() }).await.unwrap();
        }
        println!(
            "loaded {} users and {} shares through Raft in {:.1} s",
            local.users().count(),
            local.share_count(),
            started.elapsed().as_secs_f64()
        );

        // A user whose one channel has 10,000 readers.
        let wide = "audience-10k";
        let mut cmds = vec![Command::AddUser { name: wide.into() }];
        for i in 0..10_000 {
            let to = Target::User(synthetic::user_name(i));
            let channel = "wide".to_string();
            cmds.push(Command::AddShare {
                from: wide.into(),
                to: to.clone(),
                channel: channel.clone(),
                kind: ShareKind::Shares,
                with_history: false,
            });
            cmds.push(Command::AcceptShare { from: wide.into(), to, channel });
        }
        running.node.write(Actor::Operator, Command::Batch { commands: cmds }).await.unwrap();

        let busy = busiest(&local);
        let (busy_cookie, wide_cookie) = ("b".repeat(64), "c".repeat(64));
        let mut sessions = session_for(&busy, &busy_cookie);
        sessions.extend(session_for(wide, &wide_cookie));
        running.node.write(Actor::Operator, Command::Batch { commands: sessions }).await.unwrap();
        let (out, inbound) = local.all_shares().fold((0, 0), |(o, i), s| {
            (o + usize::from(s.from == busy), i + usize::from(s.to == Target::User(busy.clone())))
        });
        println!("busiest user {busy}: {out} shares out, {inbound} in; {ROUNDS} GETs per page, one at a time");

        let http = reqwest::Client::new();
        let base = format!("http://{}", running.http_addr);
        for page in ["/keys", "/shares", "/shared-with-you", "/groups", "/audience", "/graph", "/account"] {
            let (p50, p99, max, size) = measure(&http, &format!("{base}{page}"), &busy_cookie).await;
            println!(
                "{page:18} p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms  ({} KiB)",
                ms(p50),
                ms(p99),
                ms(max),
                size / 1024
            );
        }
        let (p50, p99, max, size) = measure(&http, &format!("{base}/audience"), &wide_cookie).await;
        println!(
            "/audience, 10,000 readers on one channel: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} KiB)",
            ms(p50),
            ms(p99),
            ms(max),
            size / 1024
        );
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
