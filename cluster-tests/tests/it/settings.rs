//! Every setting of `serve` reaches the running node. Nodes are started with
//! each setting at a value other than its default, given alternately as a
//! flag and as its `HPFRIENDS_*` variable, and each is observed where it
//! acts: an address answers, a limit refuses, a timeout closes, a page or
//! metric shows it. Two nodes: one joins a seed (hpfeeds over TLS, every
//! limit, the drain), one bootstraps alone with an operator's PKI, the web
//! app over TLS and the previous command version.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hpfriends_cluster_tests::{
    connect_from, hpfeeds_python, hpfriends_bin, http_get, make_ca, make_node_cert, metric, publish,
    publish_numbered_padded, wait_for, NodeProcess, Service, Subscriber, CLUSTER_SECRET, DEADLINE,
};

const CLI_MD: &str = include_str!("../../../docs/cli.md");
/// The loopback address this test's nodes listen on, so that no other test's
/// port 0 takes a port picked here before the node binds it.
const HOST: &str = "127.250.0.1";
const TOKEN: &str = "settings-test-operator-token-0123456789";
/// Key secrets: longer than the `min_key_secret_len` the node is given.
const SECRET: &str = "a-secret-of-twenty-five-c";

/// The file keys of docs/cli.md's table (a unit test holds it to the settings).
fn every_setting() -> BTreeSet<String> {
    let table = &CLI_MD[CLI_MD.find("| flag | file key | default | what |").expect("serve's table")..];
    table[..table.find("\n\n").expect("the table's end")]
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .filter_map(|l| l.split('|').nth(2))
        .map(|key| key.trim().trim_matches('`').to_string())
        .filter(|key| !key.is_empty())
        .collect()
}

/// A port free on every address, below the ephemeral range.
fn port_below_ephemeral() -> u16 {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (start..32_000).chain(20_000..start).find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok()).unwrap()
}

/// `hpfriends serve` with `settings`, every other one as a flag, the rest as
/// variables; returns the node's service once it printed its addresses.
fn serve(settings: &BTreeMap<&'static str, String>) -> Service {
    let mut cmd = Command::new(hpfriends_bin());
    cmd.arg("serve").env("HPFRIENDS_LOG", "info,openraft=warn");
    for (i, (name, value)) in settings.iter().enumerate() {
        if i % 2 == 0 {
            cmd.arg(format!("--{}", name.replace('_', "-"))).arg(value);
        } else {
            cmd.env(format!("HPFRIENDS_{}", name.to_uppercase()), value);
        }
    }
    let mut node = Service::start("hpfriends serve", cmd).unwrap();
    node.wait_for_line(" listening: ", DEADLINE).unwrap();
    node
}

fn addr(settings: &BTreeMap<&'static str, String>, name: &str) -> SocketAddr {
    settings[name].replace("0.0.0.0", HOST).parse().unwrap()
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-s", "-S", "--max-time", "20"]).args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn api(http: SocketAddr, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
    let url = format!("http://{http}{path}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let mut args = vec!["-X", method, "-H", &auth, "-H", "Content-Type: application/json", &url];
    if let Some(b) = body {
        args.extend(["-d", b]);
    }
    serde_json::from_str(&curl(&args)).unwrap()
}

/// The subject of the certificate a TLS server at `addr` presents.
fn served_certificate(addr: SocketAddr) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-brief"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Connects, reads INFO, and waits for the node to close the connection:
/// (the broker name INFO carried, how long the node waited).
fn info_then_close(hpfeeds: SocketAddr) -> (String, Duration) {
    let mut s = TcpStream::connect(hpfeeds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut head = [0u8; 6];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[4], 1, "the first frame is INFO");
    let mut name = vec![0u8; head[5] as usize];
    s.read_exact(&mut name).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    (String::from_utf8(name).unwrap(), start.elapsed())
}

/// How long the node lets an HTTP connection that sends nothing stay open.
fn silent_http_closed_after(http: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    start.elapsed()
}

/// A subscriber that logs in and subscribes, then never reads (its receive
/// buffer kept small), so what is sent to it piles up in its queue.
const STALLED_SUBSCRIBER: &str = r#"
import hashlib, socket, struct, sys, time
host, port, ident, secret, chan = sys.argv[1:6]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, int(port)))
def read(n):
    b = b''
    while len(b) < n:
        b += s.recv(n - len(b))
    return b
size, op = struct.unpack('!IB', read(5))
body = read(size - 5)
rand = body[1 + body[0]:]
def send(op, payload):
    s.sendall(struct.pack('!IB', 5 + len(payload), op) + payload)
str8 = lambda b: bytes([len(b)]) + b
send(2, str8(ident.encode()) + hashlib.sha1(rand + secret.encode()).digest())
send(4, str8(ident.encode()) + chan.encode())
print('subscribed', flush=True)
time.sleep(120)
"#;

/// Publishes COUNT messages of SIZE bytes as fast as the client can.
const BURST: &str = r#"
import sys, hpfeeds
host, port, ident, secret, chan, count, size = sys.argv[1:8]
c = hpfeeds.new(host, int(port), ident, secret)
for i in range(int(count)):
    c.publish(chan, b'x' * int(size))
c.close()
print('published', flush=True)
"#;

fn python(script: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(hpfeeds_python().unwrap());
    cmd.arg("-c").arg(script).args(args).env("PYTHONUNBUFFERED", "1");
    cmd
}

fn burst(hpfeeds: SocketAddr, ident: &str, channel: &str, count: usize, size: usize) {
    let args: Vec<String> = [
        hpfeeds.ip().to_string(),
        hpfeeds.port().to_string(),
        ident.into(),
        SECRET.into(),
        channel.into(),
        count.to_string(),
        size.to_string(),
    ]
    .into();
    let out = python(BURST, &args).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("published"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The sum of a counter's labelled series in `/metrics`.
fn counter(http: SocketAddr, name: &str, label: &str) -> f64 {
    let (_, body) = http_get(http, "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn given_every_setting_changed_then_the_running_node_uses_each() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    make_ca(certs, "ca");
    make_node_cert(certs, "ca", "hpfeeds-tls", HOST);
    let seed_dir = dir.path().join("seed");
    let seed = NodeProcess::start(&hpfriends_bin(), &seed_dir, &["--cluster-secret", CLUSTER_SECRET]).unwrap();
    let port = || {
        let probe = std::net::TcpListener::bind((HOST, 0)).unwrap();
        format!("{HOST}:{}", probe.local_addr().unwrap().port())
    };
    let path = |name: &str| certs.join(name).display().to_string();
    let s: BTreeMap<&'static str, String> = [
        ("node_id", "7".to_string()),
        ("data_dir", path("node7")),
        // A 0.0.0.0 bind takes the port on every address: one below the
        // ephemeral range (32768 up), which port-0 binds and connections of
        // other tests draw from, so none of theirs can be the same.
        ("hpfeeds_addr", format!("0.0.0.0:{}", port_below_ephemeral())),
        ("http_addr", port()),
        ("cluster_addr", port()),
        ("advertise_addr", HOST.into()),
        ("join", seed.cluster_addr.to_string()),
        ("operator_token", TOKEN.into()),
        ("cluster_secret", CLUSTER_SECRET.into()),
        ("tls_cert", path("hpfeeds-tls.pem")),
        ("tls_key", path("hpfeeds-tls.key")),
        ("tls_addr", port()),
        ("broker_name", "settings-broker".into()),
        ("login_timeout_secs", "2".into()),
        ("http_header_timeout_ms", "700".into()),
        ("http_max_connections", "5".into()),
        ("http_max_connections_per_address", "3".into()),
        ("proxy_protocol_from", "127.250.1.9".into()),
        ("max_publish_bytes", "65536".into()),
        ("max_outbound_bytes", "1048576".into()),
        ("max_connections", "8".into()),
        ("max_subscriptions_per_connection", "2".into()),
        ("min_key_secret_len", "20".into()),
        ("max_channels_per_key", "5".into()),
        ("peer_queue_messages", "4".into()),
        ("snapshot_every_logs", "3".into()),
        ("drain_grace_ms", "1500".into()),
        ("drain_close_window_ms", "300".into()),
        ("metrics_per_ident", "true".into()),
        ("signup", "open".into()),
        ("invite_ttl_hours", "2".into()),
        ("session_ttl_hours", "3".into()),
        ("web_url", "https://hpfriends.example.org".into()),
        ("archive_max_bytes", "2000000".into()),
        ("resume_max_messages", "5".into()),
        ("resume_max_bytes", "1000".into()),
    ]
    .into();
    let mut seen = BTreeSet::new();
    let mut node = serve(&s);
    let (hpfeeds, http) = (addr(&s, "hpfeeds_addr"), addr(&s, "http_addr"));
    wait_for("node 7 to be ready", Duration::from_secs(60), || {
        http_get(http, "/readyz").ok().filter(|(code, _)| *code == 200)
    })
    .unwrap();
    assert!(std::fs::metadata(dir.path().join("node7/raft")).is_ok());
    seen.insert("data_dir");

    // Identity, addresses, token, the join and the secret it needed.
    let status = api(http, "GET", "/api/v1/cluster/status", None);
    assert_eq!(status["node_id"], 7, "{status}");
    let me = status["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 7).cloned().unwrap();
    assert_eq!(me["hpfeeds_addr"], format!("{HOST}:{}", hpfeeds.port()), "advertised, not 0.0.0.0: {me}");
    assert_eq!(me["cluster_addr"], s["cluster_addr"], "{me}");
    assert_eq!(status["nodes"].as_array().unwrap().len(), 2, "node 7 joined the seed's cluster: {status}");
    seen.extend(["node_id", "http_addr", "hpfeeds_addr", "cluster_addr", "advertise_addr", "operator_token"]);
    seen.extend(["join", "cluster_secret"]);

    // A third node reads the cluster secret from a file and joins too.
    std::fs::write(certs.join("cluster-secret"), format!("{CLUSTER_SECRET}\n")).unwrap();
    let third: BTreeMap<&'static str, String> = [
        ("node_id", "8".to_string()),
        ("data_dir", path("node8")),
        ("http_addr", port()),
        ("hpfeeds_addr", port()),
        ("cluster_addr", port()),
        ("join", seed.cluster_addr.to_string()),
        ("cluster_secret_file", path("cluster-secret")),
        ("archive_keep", "4s".into()),
    ]
    .into();
    let _third = serve(&third);
    wait_for("node 8 to join", Duration::from_secs(60), || {
        let nodes = seed.status().ok()?["nodes"].as_array()?.len();
        (nodes == 3).then_some(())
    })
    .unwrap();
    seen.insert("cluster_secret_file");

    // hpfeeds over TLS with the given certificate.
    let tls = served_certificate(addr(&s, "tls_addr"));
    assert!(tls.contains("hpfeeds-tls"), "the TLS listener serves the given certificate:\n{tls}");
    seen.extend(["tls_cert", "tls_key", "tls_addr"]);

    // INFO's name, and the login deadline (10 s by default).
    let (name, waited) = info_then_close(hpfeeds);
    assert_eq!(name, "settings-broker");
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6), "closed after {waited:?}");
    seen.extend(["broker_name", "login_timeout_secs"]);
    let waited = silent_http_closed_after(http);
    assert!(waited < Duration::from_secs(5), "a silent HTTP client is closed after {waited:?} (default 10 s)");
    seen.insert("http_header_timeout_ms");

    // HTTP connections: 3 from one address, 5 in all; past either the next is
    // closed at once (made well within the 700 ms a silent one is given).
    let mut held: Vec<TcpStream> =
        [1, 1, 1, 1, 2, 2, 3].iter().map(|&last| connect_from([127, 250, 1, last], http).unwrap()).collect();
    for closed in [3, 6] {
        held[closed].set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        assert_eq!(held[closed].read(&mut [0u8; 1]).unwrap(), 0, "connection {closed} is closed at once");
    }
    drop(held);
    wait_for("the node to see the held HTTP connections close", DEADLINE, || http_get(http, "/metrics").ok()).unwrap();
    let refused =
        |limit: &str| counter(http, "hpfriends_http_connections_refused_total", &format!("limit=\"{limit}\""));
    // The 4th from one address, the 6th in all (and any /metrics asked before the node saw the others close).
    assert_eq!(refused("address"), 1.0);
    assert!(refused("node") >= 1.0);
    seen.extend(["http_max_connections", "http_max_connections_per_address"]);

    // A PROXY protocol v2 header from the balancer named is taken; the request after it is served.
    let mut balancer = connect_from([127, 250, 1, 9], http).unwrap();
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&[203, 0, 113, 7, 127, 250, 0, 1, 0x11, 0x5c, 0, 80]);
    balancer.write_all(&header).unwrap();
    balancer.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    balancer.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    seen.insert("proxy_protocol_from");

    // Connections: 8 at most (one more gets the connection-limit ERROR).
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(hpfeeds).unwrap()).collect();
    assert!(refused_at_once(hpfeeds), "the ninth connection is refused");
    drop(held);
    seen.insert("max_connections");

    // Keys: a secret shorter than 20 is refused; then the keys of the test.
    api(http, "POST", "/api/v1/users", Some(r#"{"name": "u"}"#));
    let short = api(http, "POST", "/api/v1/keys", Some(r#"{"ident": "k", "owner": "u", "secret": "twelve-chars"}"#));
    assert!(short["error"]["message"].as_str().unwrap().contains("shorter than 20"), "{short}");
    seen.insert("min_key_secret_len");
    let six =
        format!(r#"{{"ident": "k", "owner": "u", "secret": "{SECRET}", "subscribe": ["1", "2", "3", "4", "5", "6"]}}"#);
    let wide = api(http, "POST", "/api/v1/keys", Some(&six));
    assert!(wide["error"]["message"].as_str().unwrap().contains("at most 5 each"), "{wide}");
    seen.insert("max_channels_per_key");
    for (ident, body) in [
        ("pub", r#""publish": ["c", "p"], "subscribe": []"#),
        ("sub", r#""publish": [], "subscribe": ["c", "p", "a", "b", "z"]"#),
    ] {
        let key = format!(r#"{{"ident": "{ident}", "owner": "u", "secret": "{SECRET}", {body}}}"#);
        assert!(api(http, "POST", "/api/v1/keys", Some(&key))["key"].is_object());
    }

    // Snapshots after 3 entries (5,000 by default).
    wait_for("a snapshot", DEADLINE, || api(http, "GET", "/api/v1/cluster/status", None)["snapshot_index"].as_u64())
        .unwrap();
    seen.insert("snapshot_every_logs");

    // Two subscriptions per connection: a third is refused.
    let mut three = Command::new(hpfriends_cluster_tests::hpfeeds_cli().unwrap());
    three
        .args(["subscribe", "--host", HOST, "-p", &hpfeeds.port().to_string(), "-i", "sub", "-s", SECRET])
        .args(["-c", "a", "-c", "b", "-c", "z"])
        .env("PYTHONUNBUFFERED", "1");
    let three = Subscriber::start_command(three).unwrap();
    three.wait_for_line("Error message from broker").unwrap();
    seen.insert("max_subscriptions_per_connection");

    // Payloads up to 64 KiB (1 MiB by default).
    let (ok, big) = ("x".repeat(60_000), "x".repeat(70_000));
    let reader = Subscriber::start(hpfeeds, "sub", SECRET, "c").unwrap();
    hpfriends_cluster_tests::sync(hpfeeds, &reader, "pub", SECRET, "c", "ready").unwrap();
    assert!(!publish(hpfeeds, "pub", SECRET, "c", &ok).unwrap().contains("error"));
    let refused = publish(hpfeeds, "pub", SECRET, "c", &big).unwrap();
    assert!(refused.contains("error"), "a 70,000-byte publish is refused: {refused}");
    seen.insert("max_publish_bytes");

    // Series per ident.
    let (_, metrics) = http_get(http, "/metrics").unwrap();
    assert!(metrics.contains("ident=\"pub\""), "the hpfeeds series carry the ident");
    seen.insert("metrics_per_ident");

    // 1 MiB queued for a subscriber that does not read closes it (16 MiB by default).
    let slow_before = counter(http, "hpfeeds_broker_connection_error_total", "slow_consumer");
    let stalled_args: Vec<String> =
        [HOST.into(), hpfeeds.port().to_string(), "sub".into(), SECRET.into(), "c".into()].into();
    let subscriptions = || metric(http, "hpfeeds_broker_subscriptions").unwrap();
    let before = subscriptions();
    let stalled = Service::start("stalled subscriber", python(STALLED_SUBSCRIBER, &stalled_args)).unwrap();
    wait_for("the stalled subscriber's subscription", DEADLINE, || (subscriptions() > before).then_some(())).unwrap();
    burst(hpfeeds, "pub", "c", 140, 60_000);
    wait_for("the stalled subscriber to be closed", DEADLINE, || {
        (counter(http, "hpfeeds_broker_connection_error_total", "slow_consumer") > slow_before).then_some(())
    })
    .unwrap();
    seen.insert("max_outbound_bytes");
    // The burst was 8.4 MB: the archive keeps 2 MB of it (1 GiB by default).
    let archived = wait_for("the burst archived", DEADLINE, || {
        Some(metric(http, "hpfriends_archive_bytes").unwrap()).filter(|b| *b >= 1_000_000.0)
    })
    .unwrap();
    assert!(archived <= 2_000_000.0, "the archive holds {archived} bytes");
    seen.insert("archive_max_bytes");
    // Node 8 keeps its archive for 4 s (7 days by default).
    let (third_hpfeeds, third_http) = (third["hpfeeds_addr"].parse().unwrap(), third["http_addr"].parse().unwrap());
    assert!(!publish(third_hpfeeds, "pub", SECRET, "c", "kept-a-second").unwrap().contains("error"));
    wait_for("node 8 to archive", DEADLINE, || {
        (metric(third_http, "hpfriends_archive_messages").ok()? >= 1.0).then_some(())
    })
    .unwrap();
    wait_for("node 8 to let it go", DEADLINE, || {
        (metric(third_http, "hpfriends_archive_messages").ok()? == 0.0).then_some(())
    })
    .unwrap();
    seen.insert("archive_keep");

    // A resume key that comes back gets the 5 newest of what it missed (1,000,000
    // by default), and of big messages what fits in 1,000 bytes (256 MiB).
    for (ident, body) in [("rpub", r#""publish": ["r"]"#), ("rsub", r#""subscribe": ["r"], "resume": true"#)] {
        let key = format!(r#"{{"ident": "{ident}", "owner": "u", "secret": "{SECRET}", {body}}}"#);
        assert!(api(http, "POST", "/api/v1/keys", Some(&key))["key"].is_object());
    }
    let places = || metric(http, "hpfriends_resume_places_written_total").unwrap_or(0.0);
    let mut resumed = Vec::new();
    for (round, size, count) in [("small", 0, 5), ("big", 300, 2)] {
        let reader = Subscriber::start(hpfeeds, "rsub", SECRET, "r").unwrap();
        reader.wait_for_line("connected to").unwrap();
        hpfriends_cluster_tests::sync(hpfeeds, &reader, "rpub", SECRET, "r", &format!("{round}-ready")).unwrap();
        let written = places();
        drop(reader);
        wait_for("the reader's place", DEADLINE, || (places() > written).then_some(())).unwrap();
        publish_numbered_padded(hpfeeds, "rpub", SECRET, "r", round, 20, size).unwrap();
        let again = Subscriber::start(hpfeeds, "rsub", SECRET, "r").unwrap();
        let printed = || -> Vec<String> {
            let payload = |l: &String| {
                l.split_once(": b'").map(|(_, p)| p.trim_end_matches('\'').trim_end_matches('.').to_string())
            };
            again.lines().iter().filter_map(payload).collect()
        };
        // What it resumes with, then (published only now) a live marker: nothing else between.
        wait_for("the resumed messages", DEADLINE, || (printed().len() >= count).then_some(())).unwrap();
        hpfriends_cluster_tests::sync(hpfeeds, &again, "rpub", SECRET, "r", &format!("{round}-live")).unwrap();
        resumed.push(printed().into_iter().take_while(|p| !p.ends_with("live")).collect::<Vec<_>>());
    }
    assert_eq!(resumed[0], (15..20).map(|i| format!("small-{i}")).collect::<Vec<_>>(), "the 5 newest");
    // 300-byte payloads count 300 + ident + 41 bytes each: two fit in 1,000.
    assert_eq!(resumed[1], ["big-18", "big-19"], "what fits in 1,000 bytes");
    seen.extend(["resume_max_messages", "resume_max_bytes"]);

    // Four publishes queued for a peer at most: a burst toward the seed drops.
    let remote = Subscriber::start(seed.hpfeeds_addr, "sub", SECRET, "p").unwrap();
    hpfriends_cluster_tests::sync(hpfeeds, &remote, "pub", SECRET, "p", "over-the-link").unwrap();
    burst(hpfeeds, "pub", "p", 3_000, 1_000);
    wait_for("publishes dropped for the seed", DEADLINE, || {
        (counter(http, "hpfriends_fanout_dropped_total", "peer") > 0.0).then_some(())
    })
    .unwrap();
    seen.insert("peer_queue_messages");

    // The web app: open sign-up, links at web_url that last 2 h, sign-ins of 3 h.
    assert!(curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("http://{http}/sign-up")]) == "200");
    seen.insert("signup");
    let invite = api(http, "POST", "/api/v1/users/newcomer/invite", None);
    assert!(invite["link"].as_str().unwrap().starts_with("https://hpfriends.example.org/invite/"), "{invite}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let ttl = invite["expires_at"].as_u64().unwrap() - now;
    assert!((7_100..=7_200).contains(&ttl), "the link lasts 2 hours: {ttl} s");
    seen.extend(["web_url", "invite_ttl_hours"]);
    // The cookies are Secure (web_url is https): read and sent by hand.
    let page = curl(&["-D", "-", "-o", "/dev/null", &format!("http://{http}/sign-in")]);
    let form_cookie = page
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").filter(|c| c.starts_with("hpfriends_form=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("the sign-in page sets its form cookie:\n{page}"))
        .to_string();
    let csrf = form_cookie.split_once('=').unwrap().1.to_string();
    let headers = curl(&[
        "-b",
        &form_cookie,
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--data",
        &format!("csrf={csrf}&token={TOKEN}"),
        &format!("http://{http}/sign-in/operator"),
    ]);
    assert!(headers.contains("Max-Age=10800"), "the sign-in lasts 3 hours:\n{headers}");
    seen.insert("session_ttl_hours");

    // The drain: not ready at once, accepting for 1.5 s, every client closed
    // within 0.3 s after (5 s and 5 s by default).
    let subscriber = Subscriber::start(hpfeeds, "sub", SECRET, "c").unwrap();
    hpfriends_cluster_tests::sync(hpfeeds, &subscriber, "pub", SECRET, "c", "before-the-drain").unwrap();
    let during = std::thread::spawn(move || {
        let not_ready = wait_for("/readyz to answer 503", Duration::from_secs(2), || {
            http_get(http, "/readyz").ok().filter(|(c, _)| *c == 503)
        });
        (not_ready.is_ok(), TcpStream::connect(hpfeeds).is_ok())
    });
    let start = Instant::now();
    let exited = node.terminate().unwrap();
    let took = start.elapsed();
    let (not_ready, accepting) = during.join().unwrap();
    assert!(exited.success() && not_ready && accepting, "not ready at once, still accepting in the grace");
    assert!(took < Duration::from_millis(5_500), "drained in {took:?} (grace 1.5 s, window 0.3 s)");
    assert!(took > Duration::from_millis(1_400), "the grace was kept: {took:?}");
    seen.extend(["drain_grace_ms", "drain_close_window_ms"]);
    drop((three, reader, remote, stalled, subscriber));

    // The second node: an operator's PKI on the cluster port, the web app over
    // TLS, and the previous command version (an account entry needs version 2).
    std::fs::write(certs.join("operator-token"), TOKEN).unwrap();
    make_node_cert(certs, "ca", "settings-node", HOST);
    make_node_cert(certs, "ca", "web-tls", HOST);
    let s: BTreeMap<&'static str, String> = [
        ("data_dir", path("solo")),
        ("http_addr", port()),
        ("hpfeeds_addr", port()),
        ("cluster_addr", port()),
        ("operator_token_file", path("operator-token")),
        ("cluster_tls_ca", path("ca.pem")),
        ("cluster_tls_cert", path("settings-node.pem")),
        ("cluster_tls_key", path("settings-node.key")),
        ("web_tls_cert", path("web-tls.pem")),
        ("web_tls_key", path("web-tls.key")),
        ("command_version", "1".into()),
        ("archive", "false".into()),
    ]
    .into();
    let _solo = serve(&s);
    let cluster = served_certificate(addr(&s, "cluster_addr"));
    assert!(cluster.contains("settings-node"), "the cluster port serves the node's certificate:\n{cluster}");
    seen.extend(["cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key"]);
    let url = |path: &str| format!("https://{}{path}", addr(&s, "http_addr"));
    let ca = path("ca.pem");
    wait_for("the node to be ready over https", DEADLINE, || {
        let out = Command::new("curl").args(["-s", "--cacert", &ca, &url("/readyz")]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).contains("\"ready\":true").then_some(())
    })
    .unwrap();
    seen.extend(["web_tls_cert", "web_tls_key"]);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let refused = curl(&["--cacert", &ca, "-H", &auth, "-X", "POST", &url("/api/v1/users/x/invite")]);
    assert!(refused.contains("needs_upgrade"), "version 1 cannot take an account entry: {refused}");
    seen.extend(["command_version", "operator_token_file"]);
    assert!(!certs.join("solo/archive").exists(), "no archive on disk with archive = false");
    assert!(certs.join("node7/archive").exists());
    seen.insert("archive");

    let seen: BTreeSet<String> = seen.into_iter().map(String::from).collect();
    let missing: Vec<String> = every_setting().into_iter().filter(|k| !seen.contains(k)).collect();
    assert!(missing.is_empty(), "settings this test does not observe: {missing:?}");
}

/// Whether a new connection is answered with an ERROR (the connection
/// limit) instead of INFO.
fn refused_at_once(hpfeeds: SocketAddr) -> bool {
    let mut s = TcpStream::connect(hpfeeds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && head[4] == 0
}
