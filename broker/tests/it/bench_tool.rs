//! `hpfriends bench` and `hpfriends bench relay` as processes: the load
//! generator's counts are exact against the relay and a real node, and bad
//! input or credentials end with a clear error.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use hpfriends_cluster_tests::{NodeProcess, BENCH_GRAPH};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hpfriends"))
}

fn bench(args: &[&str]) -> Output {
    Command::new(bin()).arg("bench").args(args).output().unwrap()
}

/// Runs the bench with `--json`; returns its report.
fn report(args: &[&str]) -> serde_json::Value {
    let out = bench(&[args, &["--json", "--duration", "0.5"]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON line ({e}): {stdout}"))
}

struct Relay {
    child: Child,
    addr: String,
}

impl Relay {
    fn start() -> Relay {
        let mut child = Command::new(bin())
            .args(["bench", "relay", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("relay listening on ").unwrap_or_else(|| panic!("{line}")).to_string();
        Relay { child, addr }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_every_message_arrived(r: &serde_json::Value, subscribers: u64) {
    let published = r["published"].as_u64().unwrap();
    assert!(published > 0, "{r}");
    assert_eq!(r["delivered"].as_u64(), Some(published * subscribers), "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["out_of_order"], 0, "{r}");
    assert!(r["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn given_relay_when_closed_loop_with_two_publishers_and_three_subscribers_then_counts_exact() {
    let relay = Relay::start();
    let r = report(&["--addr", &relay.addr, "-p", "2", "-s", "3", "--window", "512"]);
    assert_every_message_arrived(&r, 3);
    assert_eq!(r["mode"], "window 512");
    assert_eq!(r["per_subscriber"].as_array().unwrap().len(), 3);
}

#[test]
fn given_node_with_share_when_fixed_rate_then_every_message_arrives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(bin(), &dir.path().join("data"), &[]).unwrap();
    node.apply(BENCH_GRAPH).unwrap();
    let addr = node.hpfeeds_addr.to_string();
    let creds = ["--pub-secret", "p", "--sub-secret", "s"];
    let r = report(&[&["--addr", addr.as_str(), "-s", "2", "--rate", "2000"], &creds[..]].concat());
    assert_every_message_arrived(&r, 2);
    let published = r["published"].as_f64().unwrap();
    assert!((800.0..=1100.0).contains(&published), "about 2000/s for 0.5 s, got {published}");

    // A wrong secret is the broker's own error text, before any run.
    let out = bench(&["--addr", &addr, "--pub-secret", "p", "--sub-secret", "wrong", "--duration", "0.5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("subscriber 0 was closed before the run: Authentication failed for bench-sub"), "{err}");
}

#[test]
fn given_bad_arguments_then_errors_name_them() {
    for (args, expected) in [
        (&["--size", "8"][..], "--size must be at least 21 bytes"),
        (&["--window", "0"][..], "--rate and --window must be at least 1"),
        (&["-s", "0"][..], "--publishers and --subscribers must be at least 1"),
        (&["--rate", "10", "--window", "10"][..], "cannot be used with"),
    ] {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
