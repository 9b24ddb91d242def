//! A reconnect storm: three release nodes behind HAProxy (deploy/haproxy.cfg,
//! the production drain settings), a fleet of sensors connected through it,
//! two subscribers on nodes 2 and 3. Ten seconds into publishing node 1 is
//! drained (SIGTERM); its sensors reconnect through HAProxy to the other two.
//! Prints how long until every one of them published again, and whether any
//! subscriber was closed meanwhile. The load is `hpfriends bench fleet`'s own.
//!
//! cargo bench -p hpfriends --bench storm [-- --sensors 9000]

use std::path::Path;

use clap::Parser;
use hpfriends_broker::bench::{fleet, FleetArgs};
use hpfriends_cluster_tests::{metric, Cluster, HaProxy, DEADLINE};

#[derive(Parser)]
struct Fleet {
    #[command(flatten)]
    args: FleetArgs,
}

/// HAProxy holds two descriptors per client (client side and node side) and
/// may open 20,000 files on this machine: about 9,900 clients at most.
const DEFAULT_SENSORS: &str = "9000";

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let sensors = argv.windows(2).find(|w| w[0] == "--sensors").map_or(DEFAULT_SENSORS, |w| &w[1]).to_string();
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_hpfriends")), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let haproxy = HaProxy::start(&c.nodes, c.dir.path()).unwrap();
    let hp = haproxy.hpfeeds_addr.to_string();
    let api = c.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let subs = format!("{},{}", c.nodes[1].hpfeeds_addr, c.nodes[2].hpfeeds_addr);
    let pid = c.nodes[0].pid().unwrap().to_string();
    let users = (sensors.parse::<usize>().unwrap() / 10).max(1).to_string();
    let args = Fleet::parse_from([
        "fleet",
        "--addr",
        &hp,
        "--api",
        &api,
        "--token",
        &c.nodes[0].token,
        "--sensors",
        &sensors,
        "--users",
        &users,
        "--rate",
        "0.1",
        "--duration",
        "40",
        "--subscribers",
        "2",
        "--sub-addr",
        &subs,
        "--reconnect",
        "--drain-pid",
        &pid,
        "--drain-after",
        "10",
    ])
    .args;
    println!("{sensors} sensors through HAProxy onto 3 nodes, 0.1 msg/s each; node 1 drained 10 s into publishing");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(fleet(&args)).unwrap();
    print!("{}", report.table());
    assert!(c.node(1).wait_exit(DEADLINE).unwrap().success(), "node 1 drains and exits 0");
    for n in &c.nodes[1..] {
        let made = metric(n.http_addr, "hpfeeds_broker_connection_made_total").unwrap();
        println!(
            "node at {}: {made} hpfeeds connections accepted in all (the fleet's share and the storm's)",
            n.hpfeeds_addr
        );
    }
}
