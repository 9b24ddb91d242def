//! A big graph on the path: a publisher whose channel reaches 10,000 users,
//! each with a subscriber connected, on a node that also holds the synthetic
//! graph of 100,000 users and 1,000,000 shares (`Shape::large`), against a
//! node holding only those 10,000 readers. Both nodes run in this process
//! (subscribers connect to one at a time); the load is `hpfriends bench`
//! run as a child process, alternating nodes over three rounds: lossless
//! capacity (closed loop) and latency at a fixed rate.
//!
//! cargo bench -p hpfriends --bench biggraph

use std::process::Command as Process;
use std::time::{Duration, Instant};

use hpfriends_broker::config::Config;
use hpfriends_broker::server::{start, Running};
use hpfriends_cluster_tests::median;
use hpfriends_graph::synthetic::{self, Shape};
use hpfriends_graph::{Actor, AuthKey, Command, ShareKind, Target};

const READERS: usize = 10_000;
const BATCH: usize = 20_000;

async fn node(dir: &std::path::Path) -> Running {
    let config = Config {
        data_dir: dir.to_path_buf(),
        hpfeeds_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        cluster_addr: "127.0.0.1:0".into(),
        min_key_secret_len: 1,
        max_connections: READERS + 100,
        ..Config::default()
    };
    let running = start(&config).await.unwrap();
    running.node.wait_ready(Duration::from_secs(30)).await.unwrap();
    running
}

async fn write(running: &Running, commands: Vec<Command>) {
    for chunk in commands.chunks(BATCH) {
        running.node.write(Actor::Operator, Command::Batch { commands: chunk.to_vec() }).await.unwrap();
    }
}

/// The publisher's user shares `wide` with the first 10,000 synthetic users;
/// each of them gets a subscribing key.
fn wide(add_users: bool) -> Vec<Command> {
    let mut cmds = vec![
        Command::AddUser { name: "source".into() },
        Command::AddKey(AuthKey {
            ident: "big-pub".into(),
            secret: "big-pub".into(),
            owner: "source".into(),
            publish: vec!["wide".into()],
            subscribe: vec![],
            resume: false,
        }),
    ];
    for i in 0..READERS {
        let user = synthetic::user_name(i);
        if add_users {
            cmds.push(Command::AddUser { name: user.clone() });
        }
        let (to, channel) = (Target::User(user.clone()), "wide".to_string());
        cmds.push(Command::AddShare {
            from: "source".into(),
            to: to.clone(),
            channel: channel.clone(),
            kind: ShareKind::Shares,
            with_history: false,
        });
        cmds.push(Command::AcceptShare { from: "source".into(), to, channel });
        cmds.push(Command::AddKey(AuthKey {
            ident: format!("big-sub-{i}"),
            secret: format!("big-sub-{i}"),
            owner: user,
            publish: vec![],
            subscribe: vec!["wide".into()],
            resume: false,
        }));
    }
    cmds
}

/// `hpfriends bench` against one node; its JSON report.
async fn bench(running: &Running, mode: &[&str]) -> serde_json::Value {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_hpfriends"));
    cmd.args(["bench", "--json", "--addr", &running.hpfeeds_addr.to_string(), "--subscribers", &READERS.to_string()])
        .args(["--sub-keys", &READERS.to_string(), "--sub-ident", "big-sub", "--sub-secret", "big-sub"])
        .args(["--pub-ident", "big-pub", "--pub-secret", "big-pub", "--channel", "wide"])
        .args(["--duration", "3", "--settle", "1"])
        .args(mode);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    assert!(out.status.success(), "hpfriends bench: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["lost"], 0, "nothing is lost at these loads: {report}");
    report
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let empty = node(&dir.path().join("empty")).await;
        write(&empty, wide(true)).await;
        let big = node(&dir.path().join("big")).await;
        let (local, commands) = synthetic::applied(&Shape::large());
        let started = Instant::now();
        write(&big, commands).await;
        write(&big, wide(false)).await;
        println!(
            "big node: {} users and {} shares loaded through Raft in {:.1} s, plus the 10,000 readers",
            local.users().count(),
            local.share_count(),
            started.elapsed().as_secs_f64()
        );
        drop(local);
        println!("1 publisher -> {READERS} subscribers (one per reader), 256 B; 3 rounds, alternating nodes");
        let closed = ["--window", "64"];
        let rate = ["--rate", "20"];
        let mut figures: [Vec<(f64, f64, f64)>; 2] = [vec![], vec![]];
        for round in 1..=3 {
            for (i, (name, running)) in [("empty graph", &empty), ("big graph", &big)].into_iter().enumerate() {
                let capacity = bench(running, &closed).await;
                let latency = bench(running, &rate).await;
                let (deliveries, p50, p99) = (
                    capacity["delivered_per_s"].as_f64().unwrap(),
                    latency["latency_us"]["p50"].as_f64().unwrap(),
                    latency["latency_us"]["p99"].as_f64().unwrap(),
                );
                println!(
                    "round {round}, {name}: closed loop W=64 {deliveries:.0} deliveries/s; \
                     at 20 msg/s (200,000 deliveries/s) p50 {p50:.0} µs, p99 {p99:.0} µs"
                );
                figures[i].push((deliveries, p50, p99));
            }
        }
        for (name, f) in ["empty graph", "big graph"].iter().zip(&figures) {
            println!(
                "median, {name}: {:.0} deliveries/s, p50 {:.0} µs, p99 {:.0} µs",
                median(f.iter().map(|x| x.0).collect()),
                median(f.iter().map(|x| x.1).collect()),
                median(f.iter().map(|x| x.2).collect())
            );
        }
    });
}
