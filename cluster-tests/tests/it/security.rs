//! Trust holds under attack: what crosses the cluster port, replays of it,
//! nodes that do not belong, weak secrets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use hpfriends_cluster_tests::proxy::{contains, RecordingProxy};
use hpfriends_cluster_tests::{
    hpfriends_bin, make_ca, make_node_cert, metric, publish, sync, wait_for, NodeProcess, Subscriber, CLUSTER_SECRET,
    DEADLINE,
};

/// Loopback addresses of this test process (`127.A.B.x`), apart from the ones `Cluster` uses.
fn net(b: u32) -> String {
    format!("127.{}.{b}", 20 + std::process::id() % 200)
}

/// A port the OS says is free on `ip`.
fn free_addr(ip: &str) -> SocketAddr {
    std::net::TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap()
}

const KEY_SECRET: &str = "jojo-sensor-secret-7e1f0c";
const CHANNEL: &str = "captures-9b2d4a";
const PAYLOAD: &str = "payload-marker-51c6e8";

#[test]
fn given_a_relay_between_two_nodes_then_it_reads_nothing_and_what_it_recorded_is_refused_elsewhere() {
    let bin = hpfriends_bin();
    let dir = tempfile::tempdir().unwrap();
    let net = net(252);
    let secret = ["--cluster-secret", CLUSTER_SECRET];
    // Each node advertises the relay's address, so every byte between them crosses a relay.
    let n1 = NodeProcess::start_at(
        &bin,
        &dir.path().join("n1"),
        format!("{net}.11:0").parse().unwrap(),
        &[&["--node-id", "1", "--advertise-addr", &format!("{net}.111")][..], &secret].concat(),
    )
    .unwrap();
    let relay1 =
        RecordingProxy::start(format!("{net}.111:{}", n1.cluster_addr.port()).parse().unwrap(), n1.cluster_addr)
            .unwrap();
    let n2_addr = free_addr(&format!("{net}.12"));
    let relay2 = RecordingProxy::start(format!("{net}.112:{}", n2_addr.port()).parse().unwrap(), n2_addr).unwrap();
    let join = relay1.addr.to_string();
    let n2 = NodeProcess::start_at(
        &bin,
        &dir.path().join("n2"),
        n2_addr,
        &[&["--node-id", "2", "--advertise-addr", &format!("{net}.112"), "--join", &join][..], &secret].concat(),
    )
    .unwrap();

    let graph = format!(
        r#"{{"shares": [{{"from": "jojo", "to": "mark", "channel": "{CHANNEL}", "kind": "shares"}}],
            "keys": [{{"ident": "jojo-k", "secret": "{KEY_SECRET}", "owner": "jojo", "publish": ["{CHANNEL}"]}},
                     {{"ident": "mark-k", "secret": "mark-secret-0a9d", "owner": "mark",
                       "publish": ["{CHANNEL}"], "subscribe": ["{CHANNEL}"]}}]}}"#
    );
    n1.apply(&graph).unwrap();
    wait_for("the keys on node 2", DEADLINE, || n2.ctl(&["key", "list"]).ok().filter(|k| k.contains("mark-k")))
        .unwrap();
    let sub = Subscriber::start(n2.hpfeeds_addr, "mark-k", "mark-secret-0a9d", CHANNEL).unwrap();
    sync(n1.hpfeeds_addr, &sub, "mark-k", "mark-secret-0a9d", CHANNEL, "mark-ready").unwrap();
    publish(n1.hpfeeds_addr, "jojo-k", KEY_SECRET, CHANNEL, PAYLOAD).unwrap();
    sub.wait_for_line(PAYLOAD).unwrap();

    let wire = [relay1.all_bytes(), relay2.all_bytes()].concat();
    assert!(wire.len() > 1000, "the relays carried the cluster's traffic ({} bytes)", wire.len());
    for secret in [KEY_SECRET, CHANNEL, PAYLOAD, "mark-ready", CLUSTER_SECRET] {
        assert!(!contains(&wire, secret.as_bytes()), "{secret:?} crossed the wire in clear");
    }

    // Node 2's connections to node 1, sent again as they were on a new connection.
    let refused_before = metric(n1.http_addr, "hpfriends_cluster_auth_refused").unwrap();
    let recorded: Vec<Vec<u8>> = relay1.connections().into_iter().map(|c| c.to_target).collect();
    assert!(!recorded.is_empty());
    for bytes in &recorded {
        let answer = send_and_read(n1.cluster_addr, bytes);
        assert!(!contains(&answer, b"hpfriends"), "a replayed connection got an answer in clear");
    }
    // Old-style plaintext HTTP/2 with the node's header.
    send_and_read(n1.cluster_addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    let want = refused_before + recorded.len() as f64 + 1.0;
    wait_for("every replay counted as refused", DEADLINE, || {
        (metric(n1.http_addr, "hpfriends_cluster_auth_refused").ok()? >= want).then_some(())
    })
    .unwrap();
    // The count goes up before the line is logged, and the log reaches us through a pipe.
    wait_for("the refusal in node 1's log", DEADLINE, || {
        n1.log().contains("refused a cluster connection").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", n1.log()));
    // The real link still works.
    publish(n1.hpfeeds_addr, "jojo-k", KEY_SECRET, CHANNEL, "after-the-replays").unwrap();
    sub.wait_for_line("after-the-replays").unwrap();
}

/// Writes `bytes` on a fresh connection and returns what came back before the close.
fn send_and_read(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(12))).unwrap();
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

#[test]
fn given_a_pki_then_nodes_with_its_certificates_form_a_cluster_and_a_node_from_another_ca_is_refused() {
    let bin = hpfriends_bin();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    let net = net(253);
    make_ca(certs, "ca");
    make_ca(certs, "other-ca");
    for (name, ca, ip) in [("n1", "ca", ".11"), ("n2", "ca", ".12"), ("intruder", "other-ca", ".13")] {
        make_node_cert(certs, ca, name, &format!("{net}{ip}"));
    }
    let pki = |name: &str| -> Vec<String> {
        let p = |f: String| certs.join(f).to_string_lossy().into_owned();
        vec![
            "--cluster-tls-ca".into(),
            p("ca.pem".into()),
            "--cluster-tls-cert".into(),
            p(format!("{name}.pem")),
            "--cluster-tls-key".into(),
            p(format!("{name}.key")),
        ]
    };
    let args = |id: &str, name: &str, join: Option<String>| -> Vec<String> {
        let mut a = vec!["--node-id".to_string(), id.to_string()];
        a.extend(pki(name));
        if let Some(j) = join {
            a.extend(["--join".to_string(), j]);
        }
        a
    };
    let start = |name: &str, ip: &str, a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        NodeProcess::start_at(&bin, &dir.path().join(name), format!("{net}{ip}:0").parse().unwrap(), &a)
    };
    let n1 = start("d1", ".11", args("1", "n1", None)).unwrap();
    let n2 = start("d2", ".12", args("2", "n2", Some(n1.cluster_addr.to_string()))).unwrap();
    wait_for("two voters", DEADLINE, || {
        let s = n1.status().ok()?;
        (s["nodes"].as_array()?.iter().filter(|n| n["voter"] == true).count() == 2).then_some(())
    })
    .unwrap();
    n1.ctl(&["user", "add", "written-on-1"]).unwrap();
    wait_for("the write on node 2", DEADLINE, || {
        n2.ctl(&["user", "list"]).ok()?.contains("written-on-1").then_some(())
    })
    .unwrap();

    let err = start("d3", ".13", args("3", "intruder", Some(n1.cluster_addr.to_string()))).err().expect("refused");
    assert!(format!("{err:#}").contains("do not trust each other"), "{err:#}");
    wait_for("node 1 to log the refusal", DEADLINE, || n1.log().contains("refused a cluster connection").then_some(()))
        .unwrap();
    assert_eq!(n1.status().unwrap()["nodes"].as_array().unwrap().len(), 2);
}

#[test]
fn given_subscribers_on_three_nodes_when_their_key_is_removed_then_every_node_closes_them_at_once() {
    let c = hpfriends_cluster_tests::Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.nodes[0]
        .apply(
            r#"{"shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
                "keys": [{"ident": "jojo-k", "secret": "jojo-secret", "owner": "jojo", "publish": ["c"]},
                         {"ident": "mark-k", "secret": "mark-secret", "owner": "mark",
                          "publish": ["c"], "subscribe": ["c"]}]}"#,
        )
        .unwrap();
    for n in &c.nodes {
        wait_for("the keys on every node", DEADLINE, || n.ctl(&["key", "list"]).ok().filter(|k| k.contains("mark-k")))
            .unwrap();
    }
    let subs: Vec<Subscriber> =
        c.nodes.iter().map(|n| Subscriber::start(n.hpfeeds_addr, "mark-k", "mark-secret", "c").unwrap()).collect();
    for (i, sub) in subs.iter().enumerate() {
        sync(c.nodes[0].hpfeeds_addr, sub, "mark-k", "mark-secret", "c", &format!("ready-{i}")).unwrap();
    }
    let sent = std::time::Instant::now();
    c.nodes[0].ctl(&["key", "remove", "mark-k"]).unwrap();
    let api_done = sent.elapsed();
    for sub in &subs {
        sub.wait_for_line("Authkey revoked, ident=mark-k").unwrap();
    }
    let last = sent.elapsed();
    // The subscribers' lines are polled, so this bounds the time from above.
    println!(
        "ctl key remove returned after {api_done:?}; the last of three nodes had closed the key's subscribers \
         {:?} after it returned ({last:?} after the request was sent)",
        last.saturating_sub(api_done)
    );
    // Nothing published after the removal reaches them.
    publish(c.nodes[0].hpfeeds_addr, "jojo-k", "jojo-secret", "c", "after-removal").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(subs.iter().all(|s| !s.saw("after-removal")));
}

#[test]
fn given_an_ident_with_a_newline_then_the_log_shows_it_escaped_and_no_line_is_forged() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("n"), &[]).unwrap();
    let forged = "FORGED-LINE operator logged in";
    let ident = format!("x\n{forged}");
    let mut s = TcpStream::connect(node.hpfeeds_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut info = [0u8; 5];
    s.read_exact(&mut info).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(info[..4].try_into().unwrap()) as usize - 5];
    s.read_exact(&mut rest).unwrap();
    let body = [&[ident.len() as u8][..], ident.as_bytes(), &[0u8; 20]].concat();
    let frame = [&((body.len() + 5) as u32).to_be_bytes()[..], &[2u8], &body].concat();
    s.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(contains(&answer, b"Authentication failed"), "{answer:?}");
    wait_for("the failed login in the log", DEADLINE, || node.log().contains("auth_failed").then_some(())).unwrap();
    let log = node.log();
    assert!(log.lines().all(|l| !l.starts_with(forged)), "a forged log line:\n{log}");
    assert!(log.contains(r"x\nFORGED-LINE"), "the ident is logged escaped:\n{log}");
}

#[test]
fn given_a_user_named_like_an_email_address_then_the_token_issued_to_them_works() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("n"), &[]).unwrap();
    node.ctl(&["user", "add", "alice@example.org"]).unwrap();
    let token: serde_json::Value =
        serde_json::from_str(&node.ctl(&["user", "token", "alice@example.org"]).unwrap()).unwrap();
    let token = token["token"].as_str().unwrap();
    let out = Command::new(hpfriends_bin())
        .args(["ctl", "--json", "--server", &node.url(), "--token", token, "key", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn given_no_quorum_then_consistent_reads_wait_only_for_an_authenticated_api_request() {
    let mut c = hpfriends_cluster_tests::Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.node(2).kill();
    c.node(3).kill();
    // Node 1 cannot confirm a read now: a read barrier would wait its full 10 s.
    let addr = c.nodes[0].http_addr;
    for (path, want) in [("/api/v1/users?consistent=true", 401), ("/healthz?consistent=true", 200)] {
        let started = std::time::Instant::now();
        let (status, _) = hpfriends_cluster_tests::http_get(addr, path).unwrap();
        assert_eq!(status, want, "{path}");
        assert!(started.elapsed() < Duration::from_secs(2), "{path} waited {:?}", started.elapsed());
    }
}

/// `hpfriends serve` with a config file, under `ulimit -n fds`; must exit by itself. Returns (success, output).
fn serve_with_config(config: &str, fds: u32) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, format!("data_dir = {:?}\n{config}", dir.path().join("data"))).unwrap();
    let script = format!(
        "ulimit -n {fds}; exec {} serve --config {} --hpfeeds-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --cluster-addr 127.0.0.1:0",
        hpfriends_bin().display(),
        file.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let (exited, status, text) = hpfriends_cluster_tests::run_to_exit(cmd, Duration::from_secs(15));
    assert!(exited, "the node started:\n{text}");
    (status.success(), text)
}

#[test]
fn given_numeric_settings_out_of_range_or_beyond_the_fd_limit_then_a_named_error_and_no_start() {
    let (ok, out) = serve_with_config("max_connections = 9223372036854775807\n", 4096);
    assert!(!ok && out.contains("max_connections = 9223372036854775807 is more than 1000000"), "{out}");
    let (ok, out) = serve_with_config("max_connections = 5000\n", 2048);
    assert!(!ok && out.contains("max_connections = 5000 needs 6024 file descriptors"), "{out}");
    assert!(out.contains("may open 2048"), "{out}");
}

#[test]
fn given_many_half_sent_http_requests_then_they_are_closed_and_health_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().join("c.toml");
    std::fs::write(&dir_path, "http_header_timeout_ms = 500\n").unwrap();
    let node =
        NodeProcess::start(&hpfriends_bin(), &dir.path().join("n"), &["--config", dir_path.to_str().unwrap()]).unwrap();
    // From one address: past http_max_connections_per_address (64) they are closed at once.
    let mut stuck: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(node.http_addr).unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"); // never finished
            s
        })
        .collect();
    let (status, _) = hpfriends_cluster_tests::http_get_from([127, 0, 0, 2], node.http_addr, "/healthz").unwrap();
    assert_eq!(status, 200, "another address is answered");
    std::thread::sleep(Duration::from_millis(1500));
    for s in &mut stuck {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        // Closed by the header timeout (EOF), or at once by the cap (a reset: the request was unread).
        let closed = match s.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "a half-sent request is still open after the header timeout");
    }
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn given_no_file_descriptors_left_then_no_accept_loop_spins_and_every_port_serves_again_once_some_are_free() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("n"), &[]).unwrap();
    let pid = node.pid().unwrap();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let limit = format!("--nofile={0}:{0}", open + 30);
    let status = Command::new("prlimit").args(["--pid", &pid.to_string(), &limit]).status().unwrap();
    assert!(status.success(), "prlimit failed");

    // Idle connections take the last descriptors; the rest wait in every port's backlog. Each
    // port gets more than the 30 spare, so each must fail to accept whichever port's loop runs first.
    let mut flood: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(node.http_addr).unwrap()).collect();
    flood.extend((0..60).map(|_| TcpStream::connect(node.hpfeeds_addr).unwrap()));
    flood.extend((0..60).map(|_| TcpStream::connect(node.cluster_addr).unwrap()));
    wait_for("the node to run out of descriptors", DEADLINE, || {
        let log = node.log();
        (log.contains("HTTP accept failed") && log.contains("cluster port: accept failed")).then_some(())
    })
    .unwrap();

    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    // A spinning accept loop uses a whole core: 300 ticks in 3 s.
    assert!(used < 60, "the node used {used} ticks of CPU in 3 s while out of descriptors");

    drop(flood);
    wait_for("health to answer again", DEADLINE, || {
        hpfriends_cluster_tests::http_status(node.http_addr, "/healthz").ok().filter(|s| *s == 200)
    })
    .unwrap();
    let mut client = TcpStream::connect(node.hpfeeds_addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut header = [0u8; 5];
    client.read_exact(&mut header).unwrap();
    assert_eq!(header[4], 1, "the first frame on a new hpfeeds connection is INFO");
}

/// Publishes `count` messages `prefix-N` at 10 a second on one connection with the real hpfeeds client.
fn publish_at_ten_per_second(addr: SocketAddr, ident: &str, secret: &str, channel: &str, prefix: &str, count: u32) {
    let script = format!(
        "import time, hpfeeds\n\
         c = hpfeeds.new('{}', {}, '{ident}', '{secret}')\n\
         for i in range({count}):\n    c.publish('{channel}', '{prefix}-%d' % i)\n    time.sleep(0.1)\n\
         time.sleep(0.5)\nc.close()\n",
        addr.ip(),
        addr.port()
    );
    let out = Command::new(hpfriends_cluster_tests::hpfeeds_python().unwrap()).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn subscriptions(node: &NodeProcess) -> f64 {
    metric(node.http_addr, "hpfeeds_broker_subscriptions").unwrap_or(0.0)
}

#[test]
fn given_a_node_restarted_after_six_seconds_then_nothing_is_lost_after_it_is_ready_in_either_direction() {
    let mut c = hpfriends_cluster_tests::Cluster::start(&hpfriends_bin(), 2, &[]).unwrap();
    c.nodes[0]
        .apply(
            r#"{"shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
                "keys": [{"ident": "jojo-k", "secret": "jojo-secret", "owner": "jojo", "publish": ["c"]},
                         {"ident": "mark-k", "secret": "mark-secret", "owner": "mark", "subscribe": ["c"]}]}"#,
        )
        .unwrap();
    wait_for("the keys on node 2", DEADLINE, || c.nodes[1].ctl(&["key", "list"]).ok().filter(|k| k.contains("mark-k")))
        .unwrap();
    // (publisher's node, subscriber's node): from the restarted node, then to it.
    for (round, (publisher, subscriber)) in [(1u64, 2u64), (2, 1)].into_iter().enumerate() {
        c.node(1).kill();
        std::thread::sleep(Duration::from_secs(6)); // node 2's link to node 1 is deep in its backoff
        c.node(1).restart().unwrap(); // returns once /readyz is 200
        let sub_node = &c.nodes[subscriber as usize - 1];
        let before = subscriptions(sub_node);
        let sub = Subscriber::start(sub_node.hpfeeds_addr, "mark-k", "mark-secret", "c").unwrap();
        wait_for("the subscription", DEADLINE, || (subscriptions(sub_node) > before).then_some(())).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let prefix = format!("round{round}");
        publish_at_ten_per_second(
            c.nodes[publisher as usize - 1].hpfeeds_addr,
            "jojo-k",
            "jojo-secret",
            "c",
            &prefix,
            30,
        );
        let got = wait_for("every message", Duration::from_secs(5), || {
            let n = (0..30).filter(|i| sub.saw(&format!("b'{prefix}-{i}'"))).count();
            (n == 30).then_some(n)
        });
        let n = (0..30).filter(|i| sub.saw(&format!("b'{prefix}-{i}'"))).count();
        assert!(got.is_ok(), "node {publisher} -> node {subscriber} after node 1 restarted: {n} of 30 arrived");
    }
}
