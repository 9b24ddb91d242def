//! The sensor-fleet load generator (`hpfriends bench fleet`) in a small
//! version, so the mode keeps working: the large runs are benchmarks
//! (docs/BENCHMARKS.md), not tests.

use std::process::Command;

use hpfriends_cluster_tests::{hpfriends_bin, NodeProcess};

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
