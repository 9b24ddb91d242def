//! The cost of the node-to-node hop, on a real three-node cluster (release
//! processes on loopback): throughput and latency with publisher and
//! subscriber on the same node vs on different nodes, in one run. The load
//! is `hpfriends bench`'s own (bench::load), so figures match the CLI's.
//!
//! cargo bench -p hpfriends --bench hop

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use hpfriends_broker::bench::{load, LoadArgs, Report};
use hpfriends_cluster_tests::{median, Cluster, BENCH_GRAPH, DEADLINE};

#[derive(Parser)]
struct Load {
    #[command(flatten)]
    args: LoadArgs,
}

fn run(rt: &tokio::runtime::Runtime, publisher: SocketAddr, subscriber: SocketAddr, mode: &[&str]) -> Report {
    let (p, s) = (publisher.to_string(), subscriber.to_string());
    let mut argv = vec!["bench", "--addr", &p, "--sub-addr", &s, "--duration", "3", "--settle", "1"];
    argv.extend_from_slice(&["--pub-secret", "p", "--sub-secret", "s"]);
    argv.extend_from_slice(mode);
    rt.block_on(load(&Load::parse_from(argv).args)).unwrap()
}

fn main() {
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_hpfriends")), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(BENCH_GRAPH).unwrap();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    let (n1, n2) = (c.nodes[0].hpfeeds_addr, c.nodes[1].hpfeeds_addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("1 publisher -> 1 subscriber, 256 B payloads, 3 rounds alternating, medians");
    let closed = ["--window", "4096"];
    let rate = ["--rate", "10000"];
    let (mut same_tp, mut cross_tp, mut same_p99, mut cross_p99) = (vec![], vec![], vec![], vec![]);
    for round in 1..=3 {
        let (s, x) = (run(&rt, n1, n1, &closed), run(&rt, n1, n2, &closed));
        let (sl, xl) = (run(&rt, n1, n1, &rate), run(&rt, n1, n2, &rate));
        for r in [&s, &x, &sl, &xl] {
            assert_eq!(r.lost, 0, "a closed loop or a moderate rate must lose nothing");
        }
        println!(
            "round {round}: closed loop W=4096 same node {:.0} msg/s, cross node {:.0} msg/s; \
             at 10,000 msg/s p50/p99 same {:.0}/{:.0} µs, cross {:.0}/{:.0} µs",
            s.delivered_per_s,
            x.delivered_per_s,
            sl.latency_us.p50,
            sl.latency_us.p99,
            xl.latency_us.p50,
            xl.latency_us.p99
        );
        same_tp.push(s.delivered_per_s);
        cross_tp.push(x.delivered_per_s);
        same_p99.push(sl.latency_us.p99);
        cross_p99.push(xl.latency_us.p99);
    }
    let (s, x) = (median(same_tp), median(cross_tp));
    println!("median throughput: same node {s:.0} msg/s, cross node {x:.0} msg/s, ratio {:.2}", x / s);
    let (sl, xl) = (median(same_p99), median(cross_p99));
    println!(
        "median p99 at 10,000 msg/s: same node {sl:.0} µs, cross node {xl:.0} µs, extra for the hop {:.0} µs",
        xl - sl
    );
}
