//! The real hpfeeds 3.1.0 client (PyPI) against a real `hpfriends serve`
//! process: scenarios 1, 2 and 4, the documented auth ERROR, and a SIGKILL
//! restart that keeps graph and keys.

use std::path::Path;

use hpfriends_cluster_tests::{publish, publish_with, sync, NodeProcess, Subscriber};

const CH: &str = "dionaea.captures";

const GRAPH: &str = r#"{
  "users": ["jojo", "mark", "alice", "eve"],
  "shares": [
    {"from": "jojo", "to": "mark",  "channel": "dionaea.captures", "kind": "shares"},
    {"from": "mark", "to": "alice", "channel": "dionaea.captures", "kind": "shares_all"}
  ],
  "keys": [
    {"ident": "jojo-sensor", "secret": "s3cret", "owner": "jojo", "publish": ["dionaea.captures"]},
    {"ident": "mark-key",  "secret": "m", "owner": "mark",  "publish": ["dionaea.captures"], "subscribe": ["dionaea.captures"]},
    {"ident": "alice-key", "secret": "a", "owner": "alice", "publish": ["dionaea.captures"], "subscribe": ["dionaea.captures"]},
    {"ident": "eve-key",   "secret": "e", "owner": "eve",   "publish": ["dionaea.captures"], "subscribe": ["dionaea.captures"]}
  ]
}"#;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hpfriends"))
}

fn node_with_graph(dir: &Path) -> NodeProcess {
    let node = NodeProcess::start(bin(), &dir.join("data"), &[]).unwrap();
    let file = dir.join("graph.json");
    std::fs::write(&file, GRAPH).unwrap();
    node.ctl(&["apply", file.to_str().unwrap()]).unwrap();
    node
}

/// Starts a subscriber for `who` and waits until its subscription is live.
fn live_subscriber(node: &NodeProcess, who: &str, secret: &str) -> Subscriber {
    let ident = format!("{who}-key");
    let sub = Subscriber::start(node.hpfeeds_addr, &ident, secret, CH).unwrap();
    sync(node.hpfeeds_addr, &sub, &ident, secret, CH, &format!("{who}-ready")).unwrap();
    sub
}

fn delivered(payload: &str) -> String {
    // The client prints payloads as Python bytes literals.
    format!("publish to {CH} by jojo-sensor: b'{payload}'")
}

#[test]
fn given_real_hpfeeds_clients_then_scenarios_1_2_and_4_hold() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_graph(dir.path());
    let addr = node.hpfeeds_addr;
    let mark = live_subscriber(&node, "mark", "m");
    let alice = live_subscriber(&node, "alice", "a");
    let eve = live_subscriber(&node, "eve", "e");

    // Scenario 1 and 2: mark gets jojo's data by share, alice by mark's shares_all.
    publish(addr, "jojo-sensor", "s3cret", CH, "capture-1").unwrap();
    mark.wait_for_line(&delivered("capture-1")).unwrap();
    alice.wait_for_line(&delivered("capture-1")).unwrap();
    // eve's own marker, published after jojo's message was routed, arrives; jojo's did not.
    sync(addr, &eve, "eve-key", "e", CH, "eve-after-1").unwrap();
    assert!(!eve.saw(&delivered("capture-1")), "eve has no share but got jojo's message");
    // eve's messages do not reach mark.
    publish(addr, "eve-key", "e", CH, "from-eve").unwrap();
    sync(addr, &mark, "mark-key", "m", CH, "mark-after-eve").unwrap();
    assert!(!mark.saw("by eve-key: b'from-eve'"));

    // Scenario 4: once removal returns, nothing more reaches mark (nor alice through mark).
    node.ctl(&["share", "remove", "--from", "jojo", "--to", "mark", "--channel", CH]).unwrap();
    publish(addr, "jojo-sensor", "s3cret", CH, "after-removal").unwrap();
    sync(addr, &mark, "mark-key", "m", CH, "mark-after-removal").unwrap();
    sync(addr, &alice, "alice-key", "a", CH, "alice-after-removal").unwrap();
    assert!(!mark.saw(&delivered("after-removal")));
    assert!(!alice.saw(&delivered("after-removal")));

    // The hpfeeds 3.x metric names move with the traffic.
    let (status, text) = hpfriends_cluster_tests::http_get(node.http_addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    assert!(value("hpfeeds_broker_receive_publish_count_total") >= 3.0);
    assert!(value("hpfeeds_broker_connection_made_total") >= 3.0);
    assert!(value("hpfeeds_broker_client_connections") >= 3.0, "three subscribers are connected");
}

#[test]
fn given_wrong_secret_then_client_sees_documented_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_graph(dir.path());
    let out = publish(node.hpfeeds_addr, "jojo-sensor", "wrong", CH, "x").unwrap();
    assert!(out.contains("Authentication failed for jojo-sensor"), "client printed:\n{out}");
}

#[test]
fn given_sigkill_when_restarted_on_same_data_dir_then_graph_and_keys_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_with_graph(dir.path());
    let shares = node.ctl(&["share", "list"]).unwrap();
    let keys = node.ctl(&["key", "list"]).unwrap();
    let users = node.ctl(&["user", "list"]).unwrap();
    assert!(shares.contains("shares_all") && keys.contains("jojo-sensor"));

    node.kill();
    node.restart().unwrap();
    assert_eq!(node.ctl(&["share", "list"]).unwrap(), shares);
    assert_eq!(node.ctl(&["key", "list"]).unwrap(), keys);
    assert_eq!(node.ctl(&["user", "list"]).unwrap(), users);

    // And the restarted node routes with the recovered index.
    let mark = live_subscriber(&node, "mark", "m");
    publish(node.hpfeeds_addr, "jojo-sensor", "s3cret", CH, "after-restart").unwrap();
    mark.wait_for_line(&delivered("after-restart")).unwrap();
}

#[test]
fn given_sigterm_then_node_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(bin(), &dir.path().join("data"), &[]).unwrap();
    let status = node.terminate().unwrap();
    assert!(status.success(), "exit status {status}; log:\n{}", node.log());
}

#[test]
fn given_tls_listener_then_hpfeeds_tls_client_publishes_and_subscribes() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let node = NodeProcess::start(
        bin(),
        &dir.path().join("data"),
        &["--tls-cert", c, "--tls-key", k, "--tls-addr", "127.0.0.1:0"],
    )
    .unwrap();
    let file = dir.path().join("graph.json");
    std::fs::write(&file, GRAPH).unwrap();
    node.ctl(&["apply", file.to_str().unwrap()]).unwrap();
    let tls = node.tls_addr.expect("the node reports its TLS address");
    let opts = ["--tls", "--tlscert", c];

    let mark = Subscriber::start_with(tls, "mark-key", "m", CH, &opts).unwrap();
    hpfriends_cluster_tests::wait_for("marker over TLS", hpfriends_cluster_tests::DEADLINE, || {
        publish_with(tls, "mark-key", "m", CH, "tls-ready", &opts).ok()?;
        mark.saw("tls-ready").then_some(())
    })
    .unwrap();
    publish_with(tls, "jojo-sensor", "s3cret", CH, "over-tls", &opts).unwrap();
    mark.wait_for_line(&delivered("over-tls")).unwrap();
}

#[test]
fn given_hpfeeds_auth_file_when_imported_then_old_channel_delivery_holds() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(bin(), &dir.path().join("data"), &[]).unwrap();
    let auth = dir.path().join("auth.json");
    std::fs::write(
        &auth,
        r#"{
          "sensor": {"owner": "honeypot-op", "secret": "s", "pubchans": ["dionaea.captures"], "subchans": []},
          "reader": {"owner": "analyst", "secret": "r", "pubchans": ["dionaea.captures"], "subchans": ["dionaea.captures"]},
          "other":  {"owner": "outsider", "secret": "o", "pubchans": ["other"], "subchans": ["other", "dionaea.captures"]}
        }"#,
    )
    .unwrap();
    let out = node.ctl(&["import-hpfeeds", auth.to_str().unwrap()]).unwrap();
    assert!(out.contains("\"changes\""), "{out}");
    // Importing again changes nothing.
    let again: serde_json::Value =
        serde_json::from_str(&node.ctl(&["import-hpfeeds", auth.to_str().unwrap()]).unwrap()).unwrap();
    assert_eq!(again["changes"], 0);

    let addr = node.hpfeeds_addr;
    let reader = Subscriber::start(addr, "reader", "r", CH).unwrap();
    sync(addr, &reader, "reader", "r", CH, "reader-ready").unwrap();
    let outsider = Subscriber::start(addr, "other", "o", CH).unwrap();
    // As in hpfeeds 3.x, every subscriber of the channel gets every publisher's messages.
    hpfriends_cluster_tests::wait_for("the outsider's subscription", hpfriends_cluster_tests::DEADLINE, || {
        publish(addr, "sensor", "s", CH, "imported").ok()?;
        (reader.saw("by sensor: b'imported'") && outsider.saw("by sensor: b'imported'")).then_some(())
    })
    .unwrap();
}

/// The classic recipe: `openssl x509 -req -signkey` makes an X.509 v1 certificate.
fn v1_certificate(dir: &std::path::Path, cn: &str) -> (String, String) {
    let (key, csr, cert) = (dir.join("key.pem"), dir.join("csr.pem"), dir.join("cert.pem"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let subj = format!("/CN={cn}");
    run(&["genrsa", "-out", "key.pem.new", "2048"]);
    run(&["req", "-new", "-key", "key.pem.new", "-subj", &subj, "-out", "csr.pem"]);
    run(&["x509", "-req", "-days", "2", "-in", "csr.pem", "-signkey", "key.pem.new", "-out", "cert.pem.new"]);
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.join("cert.pem.new"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("Version: 1"), "a v1 certificate");
    // Replace both at once, as an operator's renewal does.
    std::fs::rename(dir.join("key.pem.new"), &key).unwrap();
    std::fs::rename(dir.join("cert.pem.new"), &cert).unwrap();
    let _ = std::fs::remove_file(csr);
    (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned())
}

/// The subject the TLS listener presents to a new handshake.
fn presented_subject(addr: std::net::SocketAddr) -> String {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -subject"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn given_a_v1_certificate_then_tls_clients_connect_and_a_renewed_one_is_served_without_dropping_them() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = v1_certificate(dir.path(), "localhost");
    let node = NodeProcess::start(
        bin(),
        &dir.path().join("data"),
        &["--tls-cert", &c, "--tls-key", &k, "--tls-addr", "127.0.0.1:0"],
    )
    .unwrap();
    let file = dir.path().join("graph.json");
    std::fs::write(&file, GRAPH).unwrap();
    node.ctl(&["apply", file.to_str().unwrap()]).unwrap();
    let tls = node.tls_addr.expect("the node reports its TLS address");
    assert!(presented_subject(tls).contains("CN = localhost"), "{}", presented_subject(tls));

    // The real client verifies the certificate against itself (it is its own CA) and the host name.
    let ca = dir.path().join("ca.pem");
    std::fs::copy(&c, &ca).unwrap();
    let hpfeeds = |action: &str, ident: &str, secret: &str| {
        let mut cmd = std::process::Command::new(hpfriends_cluster_tests::hpfeeds_cli().unwrap());
        cmd.args([action, "--host", "localhost", "-p", &tls.port().to_string(), "-i", ident, "-s", secret, "-c", CH])
            .args(["--tls", "--tlscert", ca.to_str().unwrap()])
            .env("PYTHONUNBUFFERED", "1");
        cmd
    };
    let mark = Subscriber::start_command(hpfeeds("subscribe", "mark-key", "m")).unwrap();
    let publish_once = |ident: &str, secret: &str, payload: &str| {
        let out = hpfeeds("publish", ident, secret).arg(payload).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    hpfriends_cluster_tests::wait_for("a v1-certificate TLS session", hpfriends_cluster_tests::DEADLINE, || {
        publish_once("mark-key", "m", "v1-ready");
        mark.saw("v1-ready").then_some(())
    })
    .unwrap();

    // Renewed files: new handshakes get the new certificate, the connected subscriber stays.
    v1_certificate(dir.path(), "renewed.example");
    hpfriends_cluster_tests::wait_for("the renewed certificate", hpfriends_cluster_tests::DEADLINE, || {
        presented_subject(tls).contains("CN = renewed.example").then_some(())
    })
    .unwrap();
    assert!(node.log().contains("TLS certificate reloaded"), "{}", node.log());
    // The subscriber trusts only the old certificate: had it been dropped, its
    // reconnect would fail verification and this would never arrive.
    publish(node.hpfeeds_addr, "jojo-sensor", "s3cret", CH, "after-renewal").unwrap();
    mark.wait_for_line(&delivered("after-renewal")).unwrap();
}
