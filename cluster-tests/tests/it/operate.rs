//! Operating a cluster with the real components: Prometheus (Debian package)
//! scraping with deploy/prometheus.yml; a rolling restart under load through
//! HAProxy (Debian package) with deploy/haproxy.cfg and reconnecting hpfeeds
//! 3.1.0 clients; the drain's leadership hand-off; mixed command versions.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hpfriends_cluster_tests::{
    deploy_file, free_port, hpfeeds_python, hpfriends_bin, http_get, http_post, http_status, publish, wait_for,
    Cluster, HaProxy, Service, DEADLINE,
};

/// Drain settings for the test nodes: long enough for HAProxy (checks every
/// 500 ms, out after 2 failures) to see the node go unready first.
const DRAIN_ARGS: &[&str] = &["--drain-grace-ms", "2000", "--drain-close-window-ms", "1000"];

const GRAPH: &str = r#"{
  "users": ["sensors", "analyst"],
  "shares": [{"from": "sensors", "to": "analyst", "channel": "roll", "kind": "shares"}],
  "keys": [
    {"ident": "roll-pub", "secret": "r", "owner": "sensors", "publish": ["roll"]},
    {"ident": "roll-sub", "secret": "r", "owner": "analyst", "subscribe": ["roll"]}
  ]
}"#;

fn cluster() -> Cluster {
    let mut c = Cluster::start(&hpfriends_bin(), 3, DRAIN_ARGS).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(GRAPH).unwrap();
    c
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn given_shipped_prometheus_config_then_every_node_is_scraped_and_the_publish_counter_moves() {
    let c = cluster();
    let mut config = std::fs::read_to_string(deploy_file("prometheus.yml")).unwrap();
    for (i, n) in c.nodes.iter().enumerate() {
        config = config.replace(&format!("node{}:8080", i + 1), &n.http_addr.to_string());
    }
    config = config.replace("scrape_interval: 5s", "scrape_interval: 500ms");
    let path = c.dir.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let port = free_port().unwrap();
    let prom_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", path.display()))
        .arg(format!("--storage.tsdb.path={}", c.dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={prom_addr}"));
    let mut prom = Service::start("prometheus", cmd).unwrap();
    prom.wait_for_line("Server is ready to receive web requests", DEADLINE).unwrap();

    let targets = wait_for("Prometheus to see all three targets up", DEADLINE, || {
        let (_, body) = http_get(prom_addr, "/api/v1/targets").ok()?;
        let v = json(&body);
        let active = v["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 3 && active.iter().all(|t| t["health"] == "up")).then_some(active)
    })
    .unwrap();
    let scraped: Vec<&str> = targets.iter().filter_map(|t| t["labels"]["instance"].as_str()).collect();
    println!("prometheus scrapes {scraped:?}");

    for i in 0..5 {
        publish(c.nodes[1].hpfeeds_addr, "roll-pub", "r", "roll", &format!("counted-{i}")).unwrap();
    }
    let total = wait_for("Prometheus to record the publishes", DEADLINE, || {
        let (_, body) =
            http_get(prom_addr, "/api/v1/query?query=sum(hpfeeds_broker_receive_publish_count_total)").ok()?;
        let value: f64 = json(&body)["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (value >= 5.0).then_some(value)
    })
    .unwrap();
    println!("hpfeeds_broker_receive_publish_count_total summed over the cluster: {total}");

    // Every metric the shipped Grafana dashboard plots exists.
    let dashboard = std::fs::read_to_string(deploy_file("grafana/hpfriends-dashboard.json")).unwrap();
    let (_, exposed) = http_get(c.nodes[1].http_addr, "/metrics").unwrap();
    let plotted: Vec<&str> = dashboard
        .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
        .filter(|w| w.starts_with("hpfeeds_broker_") || w.starts_with("hpfriends_"))
        .collect();
    assert!(plotted.len() >= 10, "dashboard names too few metrics: {plotted:?}");
    for name in plotted {
        assert!(exposed.lines().any(|l| l.starts_with(name)), "the dashboard plots {name}, which /metrics lacks");
    }
}

#[test]
fn given_leader_gets_sigterm_then_it_hands_leadership_over_before_exiting_0() {
    let mut c = cluster();
    let leader = c.wait_leader(DEADLINE).unwrap();
    let status = c.node(leader).terminate().unwrap();
    assert!(status.success(), "drain must exit 0, got {status}");
    let log = c.node(leader).log();
    assert!(log.contains("handed Raft leadership over"), "no hand-off in the log:\n{log}");
    let next = c.wait_leader(DEADLINE).unwrap();
    assert_ne!(next, leader);
    // A stopped peer must not make the others unready, or the load balancer
    // would have nowhere to send clients.
    for (i, n) in c.nodes.iter().enumerate().filter(|(i, _)| *i as u64 + 1 != leader) {
        n.wait_ready().unwrap_or_else(|e| panic!("node {}: {e:#}", i + 1));
        let (_, body) = http_get(n.http_addr, "/readyz").unwrap();
        assert_eq!(json(&body)["unreachable_peers"], serde_json::json!([leader]), "{body}");
    }
    c.node(leader).restart().unwrap();
    c.node(leader).wait_ready().unwrap();
}

#[test]
fn given_a_cluster_of_the_previous_release_then_account_entries_wait_until_every_voter_runs_this_one() {
    let previous = (hpfriends_graph::COMMAND_VERSION - 1).to_string();
    let args: Vec<&str> = DRAIN_ARGS.iter().copied().chain(["--command-version", previous.as_str()]).collect();
    let mut c = Cluster::start(&hpfriends_bin(), 3, &args).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    for upgraded in 1..=3usize {
        let node = c.node(upgraded as u64);
        assert!(node.terminate().unwrap().success());
        node.remove_flag("--command-version");
        node.restart().unwrap();
        node.wait_ready().unwrap();
        let n = &c.nodes[upgraded - 1];
        if upgraded < 3 {
            let (status, body) = http_post(n.http_addr, "/api/v1/users/newcomer/invite", &n.token, "{}").unwrap();
            assert_eq!(status, 409, "{body}");
            assert_eq!(json(&body)["error"]["code"], "needs_upgrade", "{body}");
            for old in upgraded + 1..=3 {
                assert!(body.contains(&format!("node {old} runs version {previous}")), "{body}");
            }
        } else {
            // Every voter runs this release now; the last one through ctl, as an operator would.
            let link = json(&n.ctl(&["user", "invite", "newcomer"]).unwrap());
            assert!(link["link"].as_str().unwrap().contains("/invite/"), "{link}");
        }
    }
    // Every node applied it, and only once: one user, invited.
    for n in &c.nodes {
        let users = json(&n.ctl(&["--consistent", "user", "list"]).unwrap());
        let newcomers: Vec<&serde_json::Value> =
            users["users"].as_array().unwrap().iter().filter(|u| u["name"] == "newcomer").collect();
        assert_eq!(newcomers.len(), 1, "node {}: {users}", n.http_addr);
        assert_eq!(newcomers[0]["invited"], true, "node {}: {users}", n.http_addr);
    }
}

#[test]
fn given_rolling_restart_through_haproxy_under_load_then_writes_succeed_and_clients_barely_notice() {
    // deploy/haproxy.cfg sends the PROXY protocol to the web backend.
    let args = [DRAIN_ARGS, &["--proxy-protocol-from", "127.0.0.1"]].concat();
    let mut c = Cluster::start(&hpfriends_bin(), 3, &args).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(GRAPH).unwrap();
    let mut haproxy = HaProxy::start(&c.nodes, c.dir.path()).unwrap();
    let (hp_port, web_addr) = (haproxy.hpfeeds_addr.port(), haproxy.web_addr);
    // The web app is served through the same HAProxy (deploy/README.md).
    let (status, page) = haproxy
        .service
        .wait_for("the web app", DEADLINE, || http_get(web_addr, "/sign-in").ok().filter(|(s, _)| *s == 200))
        .unwrap();
    assert!(status == 200 && page.contains("Sign in"), "{page}");

    let mut client_cmd = Command::new(hpfeeds_python().unwrap());
    client_cmd
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/roll_clients.py"))
        .args(["--host", "127.0.0.1", "--port", &hp_port.to_string()])
        .args(["--pub-ident", "roll-pub", "--sub-ident", "roll-sub", "--secret", "r", "--channel", "roll"])
        .args(["--subscribers", "3", "--rate", &RATE.to_string()])
        .env("PYTHONUNBUFFERED", "1");
    let mut clients = Service::start("roll clients", client_cmd).unwrap();
    clients.wait_for_line("ready", DEADLINE).unwrap();

    // Graph writes every 100 ms, each through a node that is ready right now.
    let stop = Arc::new(AtomicBool::new(false));
    let http: Vec<(SocketAddr, String)> = c.nodes.iter().map(|n| (n.http_addr, n.token.clone())).collect();
    let written = Arc::new(Mutex::new(Vec::<(String, Duration)>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, written, failed) = (stop.clone(), written.clone(), failed.clone());
        std::thread::spawn(move || {
            let next = AtomicUsize::new(0);
            let mut handles = Vec::new();
            let mut tick = Instant::now();
            while !stop.load(Ordering::Acquire) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (http, written, failed) = (http.clone(), written.clone(), failed.clone());
                handles.push(std::thread::spawn(move || {
                    let name = format!("roll-user-{i}");
                    match write_through_ready_node(&http, i, &name) {
                        Ok(took) => written.lock().unwrap().push((name, took)),
                        Err(e) => failed.lock().unwrap().push(format!("{name}: {e}")),
                    }
                }));
                tick += Duration::from_millis(100);
                std::thread::sleep(tick.saturating_duration_since(Instant::now()));
            }
            for h in handles {
                h.join().unwrap();
            }
        })
    };

    for id in 1..=3u64 {
        let started = Instant::now();
        let node = c.node(id);
        let status = node.terminate().unwrap();
        assert!(status.success(), "node {id} drain exited with {status}");
        let drained = started.elapsed();
        node.restart().unwrap();
        node.wait_ready().unwrap();
        println!("node {id}: drained in {drained:?}, ready again after {:?}", started.elapsed());
        // HAProxy takes it back into rotation before the next one goes.
        haproxy.wait_all_up().unwrap();
    }
    // Keep publishing for a while with all nodes back.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
    clients.terminate().unwrap();
    let line = clients.wait_for_line("\"published\"", DEADLINE).unwrap();
    let report = json(&line);
    let written = written.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    let slowest = written.iter().map(|(_, took)| *took).max().unwrap_or_default();
    println!(
        "graph writes: {} succeeded (slowest {slowest:?}), {} failed; clients: {report}",
        written.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "graph writes failed: {failed:?}");
    // Every write is present on every node afterwards.
    for n in &c.nodes {
        let users = json(&n.ctl(&["--consistent", "user", "list"]).unwrap());
        let names: Vec<&str> = users["users"].as_array().unwrap().iter().filter_map(|u| u["name"].as_str()).collect();
        let missing: Vec<&String> = written.iter().map(|(w, _)| w).filter(|w| !names.contains(&w.as_str())).collect();
        assert!(missing.is_empty(), "node {} lacks {missing:?}", n.http_addr);
    }

    let r = &report;
    let pub_gap = r["publisher_longest_gap_s"].as_f64().unwrap();
    assert!(pub_gap <= 2.0, "publishing stopped for {pub_gap} s");
    let published = r["published"].as_u64().unwrap();
    for (i, s) in r["subscribers"].as_array().unwrap().iter().enumerate() {
        let (lost, gap, conns) =
            (s["lost"].as_u64().unwrap(), s["longest_gap_s"].as_f64().unwrap(), s["connections"].as_u64().unwrap());
        println!("subscriber {i}: longest delivery gap {gap} s, lost {lost} of {published}, {conns} connections");
        // Bound: each time the subscriber or the publisher reconnects, what
        // is published during one reconnect (up to 1 s at RATE) may be lost.
        let reconnects = conns.saturating_sub(1) + r["publisher_connections"].as_u64().unwrap().saturating_sub(1);
        let bound = reconnects * RATE;
        assert!(lost <= bound, "subscriber {i} lost {lost} > {bound} ({reconnects} reconnects x {RATE} msg/s x 1 s)");
        assert_eq!(s["duplicates"], 0, "subscriber {i} got duplicates");
    }
}

/// `Some` when HAProxy's stats page shows every node of the `brokers`
/// backend UP (CSV: proxy name, server name, ..., status in column 18).
/// Messages per second the publisher sends during the roll.
const RATE: u64 = 200;

/// How long one graph write may keep looking for a ready node: a leader
/// change leaves every node briefly without a known leader, hence unready.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// One graph write through a ready node, starting at a different node each
/// time; returns how long it took. Only a node that is not ready or cannot be
/// reached at all (it stopped between the check and the request) makes it try
/// the next; any HTTP answer counts.
fn write_through_ready_node(http: &[(SocketAddr, String)], start: usize, name: &str) -> Result<Duration, String> {
    let body = format!(r#"{{"name": "{name}"}}"#);
    let started = Instant::now();
    for k in 0.. {
        let (addr, token) = &http[(start + k) % http.len()];
        if http_status(*addr, "/readyz").ok() == Some(200) {
            match http_post(*addr, "/api/v1/users", token, &body) {
                Ok((200, _)) => return Ok(started.elapsed()),
                Ok((status, body)) => return Err(format!("{addr} answered {status} {body}")),
                Err(_) => {}
            }
        }
        if started.elapsed() > WRITE_DEADLINE {
            break;
        }
        if k % http.len() == http.len() - 1 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(format!("no node was ready for {WRITE_DEADLINE:?}"))
}
