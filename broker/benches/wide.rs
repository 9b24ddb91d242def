//! Wide fan-out across nodes: one publisher on node 1, 1,000 subscribers,
//! each a different user (500 reading through a share to their group, 500
//! through a share of their own), spread over the three nodes of a real
//! cluster, against the same 1,000 all on node 1, alternating in one run.
//! Lossless capacity (closed loop) and each node's CPU per delivered message.
//! The load is `hpfriends bench`'s own.
//!
//! cargo bench -p hpfriends --bench wide

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use hpfriends_broker::bench::{load, process_usage, LoadArgs, Report};
use hpfriends_cluster_tests::{median, Cluster, DEADLINE};

const READERS: usize = 1_000;

#[derive(Parser)]
struct Load {
    #[command(flatten)]
    args: LoadArgs,
}

/// The publisher's user shares `wide` with a group of half the readers and
/// with each of the other half directly; every reader has its own key.
fn graph() -> String {
    let reader = |i: usize| format!("reader-{i}");
    let mut users = vec!["source".to_string()];
    users.extend((0..READERS).map(reader));
    let mut shares =
        vec![serde_json::json!({"from": "source", "to": "group:wide-readers", "channel": "wide", "kind": "shares"})];
    shares.extend(
        (READERS / 2..READERS)
            .map(|i| serde_json::json!({"from": "source", "to": reader(i), "channel": "wide", "kind": "shares"})),
    );
    let mut keys =
        vec![serde_json::json!({"ident": "wide-pub", "secret": "wide-pub", "owner": "source", "publish": ["wide"]})];
    keys.extend((0..READERS).map(|i| {
        serde_json::json!({"ident": format!("wide-sub-{i}"), "secret": format!("wide-sub-{i}"), "owner": reader(i),
                           "subscribe": ["wide"]})
    }));
    serde_json::json!({
        "users": users,
        "groups": [{"name": "wide-readers", "admins": [reader(0)], "members": (0..READERS / 2).map(reader).collect::<Vec<_>>()}],
        "shares": shares,
        "keys": keys,
    })
    .to_string()
}

/// One closed-loop run; the report and each node's CPU seconds during it.
fn run(rt: &tokio::runtime::Runtime, c: &Cluster, subscribers_on: &[SocketAddr]) -> (Report, Vec<f64>) {
    let (p, s) =
        (c.nodes[0].hpfeeds_addr.to_string(), subscribers_on.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    let subs = s.join(",");
    let argv = [
        "bench",
        "--addr",
        &p,
        "--sub-addr",
        &subs,
        "--subscribers",
        "1000",
        "--sub-keys",
        "1000",
        "--pub-ident",
        "wide-pub",
        "--pub-secret",
        "wide-pub",
        "--sub-ident",
        "wide-sub",
        "--sub-secret",
        "wide-sub",
        "--channel",
        "wide",
        "--window",
        "4096",
        "--duration",
        "3",
        "--settle",
        "1",
    ];
    let cpu = || -> Vec<f64> { c.nodes.iter().map(|n| process_usage(n.pid().unwrap()).unwrap().1).collect() };
    let before = cpu();
    let report = rt.block_on(load(&Load::parse_from(argv).args)).unwrap();
    let used = cpu().iter().zip(before).map(|(after, before)| after - before).collect();
    (report, used)
}

fn main() {
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_hpfriends")), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(&graph()).unwrap();
    for n in &c.nodes {
        n.ctl(&["--consistent", "user", "list"]).unwrap(); // each node has applied the graph
    }
    let all: Vec<SocketAddr> = c.nodes.iter().map(|n| n.hpfeeds_addr).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("1 publisher on node 1 -> {READERS} subscribers (different users), 256 B, closed loop W=4096, 3 rounds");
    let (mut spread, mut single) = (vec![], vec![]);
    for round in 1..=3 {
        for (name, on, results) in [("three nodes", &all[..], &mut spread), ("node 1 only", &all[..1], &mut single)] {
            let (r, cpu) = run(&rt, &c, on);
            assert_eq!(r.lost, 0, "a closed loop loses nothing");
            let closed: Vec<_> = r.per_subscriber.iter().filter_map(|s| s.closed.as_ref()).collect();
            assert!(closed.is_empty(), "subscribers closed: {closed:?}");
            let per_message: Vec<String> = cpu.iter().map(|s| format!("{:.2}", s / r.delivered as f64 * 1e6)).collect();
            println!(
                "round {round}, {name}: {:.0} deliveries/s ({:.0} msg/s published); CPU s per node {:.2?}; \
                 CPU µs per delivered message per node {per_message:?}",
                r.delivered_per_s, r.published_per_s, cpu
            );
            results.push((r.delivered_per_s, cpu.iter().sum::<f64>() / r.delivered as f64 * 1e6));
        }
    }
    let summary = |v: &[(f64, f64)]| (median(v.iter().map(|x| x.0).collect()), median(v.iter().map(|x| x.1).collect()));
    let ((s_rate, s_cpu), (o_rate, o_cpu)) = (summary(&spread), summary(&single));
    println!("median deliveries/s: three nodes {s_rate:.0}, one node {o_rate:.0}, ratio {:.2}", s_rate / o_rate);
    println!("median CPU µs per delivered message, all nodes summed: three nodes {s_cpu:.2}, one node {o_cpu:.2}");
}
