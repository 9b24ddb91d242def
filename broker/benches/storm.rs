//! A reconnect storm: three release nodes behind a load balancer, a fleet of
//! sensors connected through it, two subscribers on nodes 2 and 3. Ten
//! seconds into publishing node 1 is drained (SIGTERM); its sensors
//! reconnect through the balancer to the other two. Prints how long until
//! every one of them published again, and whether any subscriber was closed
//! meanwhile. The load is `hpfriends bench fleet`'s own.
//!
//! The balancer is HAProxy (deploy/haproxy.cfg) by default, or with
//! `--through nftables` a kernel service address as kube-proxy builds it
//! (cluster-tests' `NftService`: numgen over the ready nodes, a controller
//! following /readyz), which holds no descriptor per client: 30,000 sensors
//! fit, spread over client processes.
//!
//! cargo bench -p hpfriends --bench storm [-- --sensors 9000]
//! cargo bench -p hpfriends --bench storm -- --through nftables [--sensors 30000]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use hpfriends_cluster_tests::{free_port, metric, Cluster, HaProxy, NftService, DEADLINE};

/// Sensors per client process: well inside the 20,000 files a process may open.
const PER_PROCESS: usize = 15_000;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let arg = |name: &str| argv.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let nftables = match arg("--through").as_deref() {
        None | Some("haproxy") => false,
        Some("nftables") => true,
        Some(other) => panic!("--through haproxy|nftables, not {other}"),
    };
    // HAProxy holds two descriptors per client and may open 20,000 files on
    // this machine: about 9,900 clients at most.
    let sensors: usize = arg("--sensors").map_or(if nftables { 30_000 } else { 9_000 }, |s| s.parse().unwrap());
    let bin = Path::new(env!("CARGO_BIN_EXE_hpfriends"));
    let mut c = Cluster::start(bin, 3, &["--max-connections", "18900"]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let (_haproxy, service, addr): (Option<HaProxy>, Option<NftService>, SocketAddr) = if nftables {
        let service =
            NftService::start(&c.nodes, format!("127.0.2.200:{}", free_port().unwrap()).parse().unwrap()).unwrap();
        let addr = service.addr;
        (None, Some(service), addr)
    } else {
        let haproxy = HaProxy::start(&c.nodes, c.dir.path()).unwrap();
        let addr = haproxy.hpfeeds_addr;
        (Some(haproxy), None, addr)
    };
    let api = c.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let pids = c.nodes.iter().map(|n| n.pid().unwrap().to_string()).collect::<Vec<_>>().join(",");
    let subs = format!("{},{}", c.nodes[1].hpfeeds_addr, c.nodes[2].hpfeeds_addr);
    let processes = sensors.div_ceil(PER_PROCESS);
    let through = if nftables { "an nftables service" } else { "HAProxy" };
    println!(
        "{sensors} sensors in {processes} client process(es) through {through} onto 3 nodes, 0.1 msg/s each; \
         node 1 drained 10 s into publishing"
    );
    let mut fleet = Command::new(bin);
    fleet
        .args(["bench", "fleet", "--addr", &addr.to_string(), "--api", &api, "--token", &c.nodes[0].token])
        .args(["--sensors", &sensors.to_string(), "--users", &(sensors / 10).max(1).to_string()])
        .args(["--rate", "0.1", "--duration", "40", "--subscribers", "2", "--sub-addr", &subs])
        .args(["--processes", &processes.to_string(), "--server-pid", &pids])
        .args(["--reconnect", "--drain-pid", &c.nodes[0].pid().unwrap().to_string(), "--drain-after", "10"]);
    if nftables {
        // One local address has ~28,000 ports towards the one service address.
        fleet.args(["--source", "127.0.3.1,127.0.3.2,127.0.3.3"]);
    }
    let status = fleet.status().unwrap();
    assert!(status.success(), "bench fleet failed: {status}");
    assert!(c.node(1).wait_exit(DEADLINE).unwrap().success(), "node 1 drains and exits 0");
    if let Some(service) = service {
        for (at, ready) in service.changes.lock().unwrap().iter() {
            let nodes: Vec<String> = ready.iter().map(|i| (i + 1).to_string()).collect();
            println!("service endpoints at {:.2} s: nodes {}", at.as_secs_f64(), nodes.join(", "));
        }
    }
    for n in &c.nodes[1..] {
        let made = metric(n.http_addr, "hpfeeds_broker_connection_made_total").unwrap();
        println!(
            "node at {}: {made} hpfeeds connections accepted in all (the fleet's share and the storm's)",
            n.hpfeeds_addr
        );
    }
}
