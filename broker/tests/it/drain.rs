//! The drain on SIGTERM (ARCHITECTURE.md, "Drain") on one node.

use std::time::{Duration, Instant};

use crate::common::{start_node, Client, Node};
use hpfriends_broker::protocol::Frame;

const GRACE: Duration = Duration::from_millis(1500);
const WINDOW: Duration = Duration::from_millis(600);

async fn readyz(n: &Node) -> (u16, serde_json::Value) {
    readyz_at(n.running.http_addr).await
}

async fn readyz_at(http_addr: std::net::SocketAddr) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("http://{http_addr}/readyz")).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Reads PUBLISH payloads until the broker closes the connection; keeps the
/// test messages (`m…`), not the other clients' sync markers.
async fn payloads_until_close(c: &mut Client) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match c.next().await {
            Some(Frame::Publish(p)) if p.payload().starts_with(b"m") => got.push(p.payload().to_vec()),
            Some(Frame::Publish(_)) => {}
            Some(other) => panic!("expected PUBLISH or close, got {other:?}"),
            None => return got,
        }
    }
}

#[tokio::test]
async fn given_drain_then_unready_at_once_accepting_through_grace_and_clients_closed_spread_after_delivery() {
    let n = start_node(|c| {
        c.drain_grace_ms = GRACE.as_millis() as u64;
        c.drain_close_window_ms = WINDOW.as_millis() as u64;
    })
    .await;
    n.declare(
        r#"{"users": ["jojo"],
            "keys": [{"ident": "pub", "secret": "s", "owner": "jojo", "publish": ["c"]},
                     {"ident": "sub", "secret": "s", "owner": "jojo", "publish": ["c"], "subscribe": ["c"]}]}"#,
    )
    .await;
    let addr = n.running.hpfeeds_addr;
    let mut subscribers = Vec::new();
    for i in 0..12 {
        let mut s = Client::login(addr, "sub", "s").await;
        s.subscribe("c").await;
        s.sync("c", &format!("ready-{i}")).await;
        subscribers.push(s);
    }
    let mut publisher = Client::login(addr, "pub", "s").await;
    assert_eq!(readyz(&n).await.0, 200);

    let started = Instant::now();
    let Node { running, dir } = n;
    let http_addr = running.http_addr;
    let drain = tokio::spawn(running.drain());

    // Not ready at once; alive until the end.
    let n_http = |path: &'static str| reqwest::get(format!("http://{http_addr}{path}"));
    let resp = n_http("/readyz").await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(n_http("/healthz").await.unwrap().status().as_u16(), 200);

    // Within the grace period the node still accepts and routes.
    let mut late = Client::login(addr, "sub", "s").await;
    late.subscribe("c").await;
    late.sync("c", "late").await;
    for i in 0..100 {
        publisher.publish("c", format!("m{i}").as_bytes()).await;
    }
    let expected: Vec<Vec<u8>> = (0..100).map(|i| format!("m{i}").into_bytes()).collect();
    let (_, body) = readyz_at(http_addr).await;
    assert_eq!(body["accepting_clients"], true, "the publishes were not all sent within the grace period: {body}");

    // Every subscriber gets all it was sent, then the close, spread over the
    // window. Read concurrently, so each close is seen when it happens; at
    // each close the listener must already be shut (closes come after the
    // grace period, never during it).
    let readers: Vec<_> = subscribers
        .into_iter()
        .chain([late])
        .map(|mut s| {
            tokio::spawn(async move {
                let got = payloads_until_close(&mut s).await;
                let listener_shut = tokio::net::TcpStream::connect(addr).await.is_err();
                (got, started.elapsed(), listener_shut)
            })
        })
        .collect();
    let mut closed_at = Vec::new();
    for r in readers {
        let (got, at, listener_shut) = r.await.unwrap();
        assert_eq!(got, expected);
        assert!(listener_shut, "a client was closed while the node still accepted (grace period)");
        closed_at.push(at);
    }
    let first = *closed_at.iter().min().unwrap();
    let last = *closed_at.iter().max().unwrap();
    println!("clients closed between {first:?} and {last:?} after the drain began");
    assert!(last - first >= WINDOW / 6, "closes were not spread over the window: {first:?}..{last:?}");

    // Past the grace period nothing accepts any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener still open after the grace period");
    tokio::time::timeout(Duration::from_secs(20), drain).await.expect("drain finished").unwrap();
    drop(dir);
}

/// At a terminal: the first Ctrl-C starts the drain (5 s grace by default),
/// a second one exits at once.
#[test]
fn given_second_interrupt_during_the_drain_then_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_hpfriends"));
    let mut node = hpfriends_cluster_tests::NodeProcess::start(bin, &dir.path().join("data"), &[]).unwrap();
    node.signal("INT").unwrap();
    hpfriends_cluster_tests::wait_for("the drain to start", Duration::from_secs(10), || {
        (hpfriends_cluster_tests::http_status(node.http_addr, "/readyz").ok() == Some(503)).then_some(())
    })
    .unwrap();
    let started = Instant::now();
    node.signal("INT").unwrap();
    let status = node.wait_exit(Duration::from_secs(10)).unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(3), "took {took:?}; the drain alone would take its 5 s grace");
}
