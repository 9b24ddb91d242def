//! The sensor-fleet load generator (`hpfriends bench fleet`) in a small
//! version, so the mode keeps working: the large runs are benchmarks
//! (docs/BENCHMARKS.md), not tests. The reconnect storm runs the same mode
//! through HAProxy in front of three nodes while one of them drains.

use std::process::Command;

use hpfriends_cluster_tests::{free_port, hpfriends_bin, Cluster, HaProxy, NftService, NodeProcess, DEADLINE};

#[test]
fn given_a_fleet_of_500_sensors_then_every_event_arrives_and_the_broker_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("node"), &[]).unwrap();
    node.wait_ready().unwrap();
    let out = Command::new(hpfriends_bin())
        .args(["bench", "fleet", "--json", "--sensors", "500", "--users", "20", "--rate", "2", "--duration", "3"])
        .args(["--addr", &node.hpfeeds_addr.to_string(), "--api", &node.url(), "--token", &node.token])
        .args(["--server-pid", &node.pid().unwrap().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "bench fleet failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let published = report["published"].as_u64().unwrap();
    // 500 sensors × 2/s × 3 s, each starting at a random point of its period, ±10 % jitter.
    assert!((2_000..=3_500).contains(&published), "{report}");
    assert_eq!(report["delivered"], published, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["connect_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["latency_p99_ms"].as_f64().unwrap() > 0.0, "{report}");
    let per_connection = report["server_rss_per_connection"].as_f64().unwrap();
    assert!(per_connection > 0.0, "the broker's memory grew with the fleet: {report}");
    assert!(report["server_cpu_per_message_us"].as_f64().unwrap() > 0.0, "{report}");

    // Too many sensors for this process's file descriptors: said plainly, before connecting.
    let out = Command::new(hpfriends_bin())
        .args(["bench", "fleet", "--sensors", "100000000", "--addr", &node.hpfeeds_addr.to_string()])
        .args(["--api", &node.url(), "--token", &node.token])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot hold 100000000 sensors and 1 subscribers"), "{err}");
}

#[test]
fn given_a_node_then_its_listeners_hold_4096_connections_for_accept() {
    // A restarted node's sensors reconnect at once: the accept queue must not overflow at 128.
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("node"), &[]).unwrap();
    for addr in [node.hpfeeds_addr, node.http_addr, node.cluster_addr] {
        let out = Command::new("ss").args(["-ltnH", &format!("sport = :{}", addr.port())]).output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let backlog: u32 =
            line.split_whitespace().nth(2).and_then(|b| b.parse().ok()).unwrap_or_else(|| panic!("ss: {line:?}"));
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
        assert_eq!(backlog, somaxconn.min(4096), "{addr}: {line}");
    }
}

#[test]
fn given_a_fleet_behind_haproxy_when_a_node_drains_then_its_sensors_reconnect_and_no_subscriber_is_closed() {
    // Short drain, so the storm fits a test: unready for 2 s (HAProxy takes
    // the node out), then its clients are closed over 1 s.
    let mut c =
        Cluster::start(&hpfriends_bin(), 3, &["--drain-grace-ms", "2000", "--drain-close-window-ms", "1000"]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let haproxy = HaProxy::start(&c.nodes, c.dir.path()).unwrap();
    let subscribers = format!("{},{}", c.nodes[1].hpfeeds_addr, c.nodes[2].hpfeeds_addr);
    let apis = c.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let out = Command::new(hpfriends_bin())
        .args(["bench", "fleet", "--json", "--sensors", "300", "--users", "10", "--rate", "2", "--duration", "10"])
        .args(["--addr", &haproxy.hpfeeds_addr.to_string(), "--api", &apis, "--token", &c.nodes[0].token])
        .args(["--subscribers", "2", "--sub-addr", &subscribers, "--reconnect"])
        .args(["--drain-pid", &c.nodes[0].pid().unwrap().to_string(), "--drain-after", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "bench fleet failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{report}");
    let drained = c.node(1).wait_exit(DEADLINE).unwrap();
    assert!(drained.success(), "node 1 drained and exited 0: {drained}");

    // HAProxy spread the fleet (least connections): node 1's third was closed and came back through the others.
    let disconnects = report["disconnects"].as_u64().unwrap();
    assert!((60..=140).contains(&disconnects), "{report}");
    assert_eq!(report["sensors_not_back"], 0, "{report}");
    let storm = report["reconnect_seconds"].as_f64().unwrap();
    assert!(storm > 0.0 && storm < 8.0, "{report}");
    assert_eq!(report["subscribers_closed"], serde_json::json!([]), "{report}");
    // At most the event a sensor had in flight when its node closed it is lost.
    let (published, delivered) = (report["published"].as_u64().unwrap(), report["delivered"].as_u64().unwrap());
    assert!(published > 4_000, "{report}");
    assert!(delivered + 2 * disconnects >= 2 * published, "{report}");
}

#[test]
fn given_a_fleet_in_two_processes_behind_an_nftables_service_when_a_node_drains_then_it_leaves_the_map_and_its_sensors_come_back(
) {
    // The kube-proxy path: one service address, numgen over the ready nodes,
    // a controller following /readyz. Short drain, as in the HAProxy test.
    let mut c =
        Cluster::start(&hpfriends_bin(), 3, &["--drain-grace-ms", "2000", "--drain-close-window-ms", "1000"]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let service_addr = format!("127.0.2.{}:{}", 1 + std::process::id() % 250, free_port().unwrap()).parse().unwrap();
    let service = NftService::start(&c.nodes, service_addr).unwrap();
    let subscribers = format!("{},{}", c.nodes[1].hpfeeds_addr, c.nodes[2].hpfeeds_addr);
    let apis = c.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let pids = c.nodes.iter().map(|n| n.pid().unwrap().to_string()).collect::<Vec<_>>().join(",");
    let out = Command::new(hpfriends_bin())
        .args(["bench", "fleet", "--json", "--sensors", "600", "--users", "20", "--rate", "2", "--duration", "10"])
        .args(["--addr", &service.addr.to_string(), "--api", &apis, "--token", &c.nodes[0].token])
        .args(["--processes", "2", "--source", "127.0.3.1,127.0.3.2", "--server-pid", &pids])
        .args(["--subscribers", "2", "--sub-addr", &subscribers, "--reconnect"])
        .args(["--drain-pid", &c.nodes[0].pid().unwrap().to_string(), "--drain-after", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "bench fleet failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{report}");
    assert!(c.node(1).wait_exit(DEADLINE).unwrap().success(), "node 1 drained and exited 0");
    assert_eq!(report["processes"], 2, "{report}");

    // The service spread the idle fleet over all three (600 sensors + 1 subscriber each on nodes 2 and 3).
    let per_node: Vec<u64> = (0..3).map(|i| report["nodes"][i]["connections"].as_u64().unwrap()).collect();
    assert_eq!(per_node.iter().sum::<u64>(), 602, "{report}");
    assert!(per_node.iter().all(|&n| n >= 120), "{per_node:?}");
    // The controller took node 1 out when its /readyz turned 503, and did not put it back.
    let changes = service.changes.lock().unwrap().clone();
    assert_eq!(changes.last().unwrap().1, vec![1, 2], "{changes:?}");
    // Node 1's sensors were closed and came back through the other two; nobody else noticed.
    let disconnects = report["disconnects"].as_u64().unwrap();
    assert_eq!(disconnects, per_node[0], "{report}");
    assert_eq!(report["sensors_not_back"], 0, "{report}");
    let storm = report["reconnect_seconds"].as_f64().unwrap();
    assert!(storm > 0.0 && storm < 8.0, "{report}");
    assert_eq!(report["subscribers_closed"], serde_json::json!([]), "{report}");
    let (published, delivered) = (report["published"].as_u64().unwrap(), report["delivered"].as_u64().unwrap());
    assert!(published > 8_000, "{report}");
    assert!(delivered + 2 * disconnects >= 2 * published, "{report}");
}
