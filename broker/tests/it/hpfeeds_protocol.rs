//! The hpfeeds protocol of docs/protocol.md against an in-process node.

use crate::common::{start_node, Client, Node};
use hpfriends_broker::protocol::frame;
use hpfriends_graph::{Command, Target};

const GRAPH: &str = r#"{
  "users": ["jojo", "mark", "eve"],
  "shares": [{"from": "jojo", "to": "mark", "channel": "dionaea.captures", "kind": "shares"}],
  "keys": [
    {"ident": "jojo-sensor", "secret": "s3cret", "owner": "jojo", "publish": ["dionaea.captures"], "subscribe": []},
    {"ident": "jojo-reader", "secret": "r", "owner": "jojo", "publish": [], "subscribe": ["dionaea.captures"]},
    {"ident": "mark-key", "secret": "m", "owner": "mark", "publish": ["dionaea.captures"], "subscribe": ["dionaea.captures"]},
    {"ident": "eve-key", "secret": "e", "owner": "eve", "publish": ["dionaea.captures"], "subscribe": ["dionaea.captures"]}
  ]
}"#;

const CH: &str = "dionaea.captures";

async fn node() -> Node {
    let n = start_node(|_| {}).await;
    n.declare(GRAPH).await;
    n
}

async fn subscriber(n: &Node, ident: &str, secret: &str) -> Client {
    let mut c = Client::login(n.running.hpfeeds_addr, ident, secret).await;
    c.subscribe(CH).await;
    c
}

#[tokio::test]
async fn given_accepted_share_when_jojo_publishes_then_mark_gets_it_and_eve_does_not() {
    let n = node().await;
    let addr = n.running.hpfeeds_addr;
    let mut mark = subscriber(&n, "mark-key", "m").await;
    let mut eve = subscriber(&n, "eve-key", "e").await;
    mark.sync(CH, "mark-ready").await;
    eve.sync(CH, "eve-ready").await;

    let mut jojo = Client::login(addr, "jojo-sensor", "s3cret").await;
    jojo.publish(CH, b"capture-1").await;
    // Delivered unchanged: the publisher's ident and channel.
    assert_eq!(mark.next_publish().await, ("jojo-sensor".into(), CH.into(), b"capture-1".to_vec()));
    // eve was decided in the same routing step; her own marker comes back first.
    eve.sync(CH, "eve-after").await;
    // eve's messages on the channel do not reach mark.
    eve.publish(CH, b"from-eve").await;
    mark.sync(CH, "mark-after").await;
}

#[tokio::test]
async fn given_second_key_of_publisher_then_it_gets_own_messages() {
    let n = node().await;
    let mut reader = subscriber(&n, "jojo-reader", "r").await;
    let mut jojo = Client::login(n.running.hpfeeds_addr, "jojo-sensor", "s3cret").await;
    // No sync possible from a read-only key: retry until the subscription is live.
    let mut got = None;
    for i in 0..50 {
        jojo.publish(CH, format!("own-{i}").as_bytes()).await;
        if let Ok(p) = tokio::time::timeout(std::time::Duration::from_millis(100), reader.next_publish()).await {
            got = Some(p);
            break;
        }
    }
    let (ident, channel, _) = got.expect("jojo's second key never received jojo's messages");
    assert_eq!((ident.as_str(), channel.as_str()), ("jojo-sensor", CH));
}

#[tokio::test]
async fn given_share_removed_then_delivery_stops_at_once() {
    let n = node().await;
    let mut mark = subscriber(&n, "mark-key", "m").await;
    mark.sync(CH, "ready").await;
    let mut jojo = Client::login(n.running.hpfeeds_addr, "jojo-sensor", "s3cret").await;
    jojo.publish(CH, b"before").await;
    assert_eq!(mark.next_publish().await.2, b"before");
    n.write(Command::RemoveShare { from: "jojo".into(), to: Target::User("mark".into()), channel: CH.into() }).await;
    jojo.publish(CH, b"after").await;
    // Publish a second message after it, and prove jojo's connection handled both
    // by having a jojo-owned subscriber see them in order.
    let mut own = subscriber(&n, "jojo-reader", "r").await;
    loop {
        jojo.publish(CH, b"probe").await;
        if tokio::time::timeout(std::time::Duration::from_millis(100), own.next_publish()).await.is_ok() {
            break;
        }
    }
    mark.sync(CH, "mark-after").await;
}

#[tokio::test]
async fn given_subscribe_twice_then_one_copy_and_one_unsubscribe_removes_it() {
    let n = node().await;
    let mut mark = subscriber(&n, "mark-key", "m").await;
    mark.subscribe(CH).await;
    mark.sync(CH, "one").await;
    mark.sync(CH, "two").await; // a duplicate "one" would have failed this
    mark.unsubscribe(CH).await;
    let mut other = subscriber(&n, "mark-key", "m").await;
    other.sync(CH, "x").await; // mark's own second connection gets mark's message
    mark.publish(CH, b"not-for-unsubscribed").await;
    other.sync(CH, "y").await;
    // The unsubscribed connection gets nothing: its next frame is the server closing on drop of `n`.
    assert!(tokio::time::timeout(std::time::Duration::from_millis(300), mark.next()).await.is_err());
}

#[tokio::test]
async fn given_bad_credentials_then_hpfeeds_error_texts() {
    let n = node().await;
    let addr = n.running.hpfeeds_addr;
    Client::login(addr, "jojo-sensor", "wrong").await.expect_error("Authentication failed for jojo-sensor").await;
    Client::login(addr, "nobody", "x").await.expect_error("Authentication failed for nobody").await;

    let mut c = Client::connect(addr).await;
    c.send(&frame::encode_subscribe(b"mark-key", CH.as_bytes())).await;
    c.expect_error("First message was not AUTH").await;
}

#[tokio::test]
async fn given_wrong_ident_or_channel_then_hpfeeds_error_texts() {
    let n = node().await;
    let addr = n.running.hpfeeds_addr;
    let mut c = Client::login(addr, "mark-key", "m").await;
    c.send(&frame::encode_publish(b"eve-key", CH.as_bytes(), b"x")).await;
    c.expect_error("Invalid authkey in message, ident=eve-key").await;

    let mut c = Client::login(addr, "mark-key", "m").await;
    c.send(&frame::encode_subscribe(b"eve-key", CH.as_bytes())).await;
    c.expect_error("Invalid authkey in message, ident=eve-key").await;

    let mut c = Client::login(addr, "mark-key", "m").await;
    c.send(&frame::encode_unsubscribe(b"eve-key", CH.as_bytes())).await;
    c.expect_error("Invalid authkey in message, ident=eve-key").await;

    let mut c = Client::login(addr, "mark-key", "m").await;
    c.publish("other", b"x").await;
    c.expect_error("Authkey not allowed to pub here. ident=mark-key, chan=other").await;

    let mut c = Client::login(addr, "jojo-sensor", "s3cret").await;
    c.subscribe(CH).await;
    c.expect_error("Authkey not allowed to sub here. ident=jojo-sensor, chan=dionaea.captures").await;
}

#[tokio::test]
async fn given_oversized_or_unknown_frames_then_error_names_problem() {
    let n = start_node(|c| c.max_publish_bytes = 1000).await;
    n.declare(GRAPH).await;
    let addr = n.running.hpfeeds_addr;
    let mut c = Client::login(addr, "mark-key", "m").await;
    c.publish(CH, &vec![b'x'; 2000]).await;
    c.expect_error(&format!("frame of {} bytes is too large for PUBLISH (max 1005)", 5 + 2 + 8 + CH.len() + 2000))
        .await;

    let mut c = Client::login(addr, "mark-key", "m").await;
    c.send(&[0, 0, 0, 5, 42]).await;
    c.expect_error("unknown opcode 42").await;

    let mut c = Client::connect(addr).await;
    c.send(&[0, 0, 0, 6, 2, 9]).await;
    c.expect_error("malformed AUTH frame: ident longer than the frame").await;
}

#[tokio::test]
async fn given_no_auth_within_deadline_then_closed() {
    let n = start_node(|c| c.login_timeout_secs = 1).await;
    let mut c = Client::connect(n.running.hpfeeds_addr).await;
    let started = std::time::Instant::now();
    assert_eq!(c.next().await, None);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "closed before the deadline");
}

#[tokio::test]
async fn given_info_then_nonce_is_fresh_per_connection() {
    let n = start_node(|_| {}).await;
    let a = Client::connect(n.running.hpfeeds_addr).await;
    let b = Client::connect(n.running.hpfeeds_addr).await;
    assert_eq!(a.broker_name, b"hpfriends");
    assert_eq!(a.nonce.len(), 4);
    assert_ne!(a.nonce, b.nonce);
}

#[tokio::test]
async fn given_subscriber_that_never_reads_then_closed_as_slow_consumer_and_publisher_unblocked() {
    let n = start_node(|c| c.max_outbound_bytes = 256 * 1024).await;
    n.declare(GRAPH).await;
    let addr = n.running.hpfeeds_addr;
    let mut slow = subscriber(&n, "mark-key", "m").await;
    slow.sync(CH, "ready").await;
    let mut fast = subscriber(&n, "jojo-reader", "r").await;
    let mut jojo = Client::login(addr, "jojo-sensor", "s3cret").await;
    // Far more than the queue bound plus any socket buffers. The publisher runs
    // in step with the reading subscriber (2 in flight, well inside the bound): if the one that never
    // reads could stall it, this loop would hang.
    let payload = vec![b'p'; 60 * 1024];
    let total = 32 * 1024 * 1024 / payload.len();
    let mut received = 0;
    for sent in 1..=total {
        jojo.publish(CH, &payload).await;
        if sent % 2 == 0 || sent == total {
            while received < sent {
                assert_eq!(fast.next_publish().await.2.len(), payload.len());
                received += 1;
            }
        }
    }
    // The reading subscriber received every message.
    assert_eq!(received, total);
    // The slow one finds an ERROR after whatever had been written to it.
    let mut saw_error = None;
    while let Some(f) = slow.next().await {
        if let hpfriends_broker::protocol::Frame::Error { message } = f {
            saw_error = Some(String::from_utf8_lossy(&message).into_owned());
        }
    }
    let msg = saw_error.expect("slow consumer closed without an ERROR");
    assert!(msg.starts_with("Slow consumer"), "{msg}");
}

fn key(ident: &str, secret: &str, owner: &str, channels: &[&str], subscribe: &[&str]) -> hpfriends_graph::AuthKey {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    hpfriends_graph::AuthKey {
        ident: ident.into(),
        secret: secret.into(),
        owner: owner.into(),
        publish: strings(channels),
        subscribe: strings(subscribe),
        resume: false,
    }
}

#[tokio::test]
async fn given_a_connected_subscriber_when_its_key_is_removed_then_error_and_close_at_once() {
    let n = node().await;
    let mut mark = subscriber(&n, "mark-key", "m").await;
    mark.sync(CH, "mark-ready").await;
    n.write(Command::RemoveKey { ident: "mark-key".into() }).await;
    mark.expect_error("Authkey revoked, ident=mark-key").await;
}

#[tokio::test]
async fn given_a_connected_subscriber_when_its_owner_is_removed_then_error_and_close() {
    let n = node().await;
    let mut eve = subscriber(&n, "eve-key", "e").await;
    eve.sync(CH, "eve-ready").await;
    n.write(Command::RemoveUser { name: "eve".into() }).await;
    eve.expect_error("Authkey revoked, ident=eve-key").await;
}

#[tokio::test]
async fn given_a_key_recreated_with_another_secret_then_connections_of_the_old_one_close() {
    let n = node().await;
    let mut mark = subscriber(&n, "mark-key", "m").await;
    mark.sync(CH, "mark-ready").await;
    let replaced = key("mark-key", "another-secret", "mark", &[CH], &[CH]);
    n.write(Command::Batch {
        commands: vec![Command::RemoveKey { ident: "mark-key".into() }, Command::AddKey(replaced)],
    })
    .await;
    mark.expect_error("Authkey revoked, ident=mark-key").await;
}

#[tokio::test]
async fn given_a_key_narrowed_then_the_channel_it_lost_is_unsubscribed_with_an_error_and_the_rest_stays() {
    let n = node().await;
    n.write(Command::AddKey(key("mark-two", "m2", "mark", &[CH, "other"], &[CH, "other"]))).await;
    let mut mark = Client::login(n.running.hpfeeds_addr, "mark-two", "m2").await;
    mark.subscribe(CH).await;
    mark.subscribe("other").await;
    mark.sync(CH, "on-captures").await;
    mark.sync("other", "on-other").await;

    let narrowed = key("mark-two", "m2", "mark", &[CH, "other"], &["other"]);
    n.write(Command::Batch {
        commands: vec![Command::RemoveKey { ident: "mark-two".into() }, Command::AddKey(narrowed)],
    })
    .await;
    match mark.next().await {
        Some(hpfriends_broker::protocol::Frame::Error { message }) => assert_eq!(
            String::from_utf8_lossy(&message),
            format!("Authkey no longer allowed to sub here, unsubscribed. ident=mark-two, chan={CH}")
        ),
        other => panic!("expected the ERROR naming the channel, got {other:?}"),
    }
    // jojo's capture no longer reaches mark; "other" still works on the same connection.
    let mut jojo = Client::login(n.running.hpfeeds_addr, "jojo-sensor", "s3cret").await;
    jojo.publish(CH, b"after-narrowing").await;
    mark.publish(CH, b"own-after-narrowing").await;
    mark.sync("other", "still-here").await;
    // A new SUBSCRIBE to the lost channel is refused with the current key.
    mark.subscribe(CH).await;
    mark.expect_error(&format!("Authkey not allowed to sub here. ident=mark-two, chan={CH}")).await;
}

#[tokio::test]
async fn given_a_large_frame_before_auth_then_refused_at_its_header_without_buffering_it() {
    let n = node().await;
    let mut c = Client::connect(n.running.hpfeeds_addr).await;
    // Only the header of a 1 MiB PUBLISH: the broker must not wait for the rest.
    c.send(&[0, 0x10, 0, 0, 3]).await;
    c.expect_error(&format!("frame of {} bytes is too large for PUBLISH (max {})", 0x10_0000, 5 + 256 + 20)).await;
    // After AUTH the configured limit applies again.
    let mut mark = subscriber(&n, "mark-key", "m").await;
    mark.sync(CH, &"x".repeat(4000)).await;
}

#[tokio::test]
async fn given_many_failed_logins_from_one_address_then_it_is_refused_unchecked_and_counted() {
    let n = node().await;
    let addr = n.running.hpfeeds_addr;
    let mut refused_at = None;
    for attempt in 0..40 {
        let mut c = Client::login(addr, "mark-key", "a-wrong-guess").await;
        match c.next().await {
            Some(hpfriends_broker::protocol::Frame::Error { message }) => {
                let text = String::from_utf8_lossy(&message).into_owned();
                if text == "Too many failed logins, try again later" {
                    refused_at = Some(attempt);
                    break;
                }
                assert_eq!(text, "Authentication failed for mark-key");
            }
            other => panic!("expected an ERROR, got {other:?}"),
        }
    }
    assert_eq!(refused_at, Some(20), "twenty failures, then the address waits");
    // Even the right secret waits now: nothing is checked for this address.
    let mut c = Client::login(addr, "mark-key", "m").await;
    c.expect_error("Too many failed logins, try again later").await;
    let metrics = hpfriends_broker::telemetry::prometheus().render();
    assert!(metrics.contains("hpfeeds_broker_connection_error_total{category=\"auth_rate_limited\"}"), "{metrics}");
}

#[tokio::test]
async fn given_subscriptions_past_the_cap_then_an_error_names_the_limit() {
    let n = start_node(|c| c.max_subscriptions_per_connection = 3).await;
    n.declare(r#"{"keys": [{"ident": "k", "secret": "s", "owner": "u", "subscribe": ["a", "b", "c", "d"]}]}"#).await;
    let mut c = Client::login(n.running.hpfeeds_addr, "k", "s").await;
    for ch in ["a", "b", "c", "a"] {
        c.subscribe(ch).await;
    }
    c.subscribe("d").await;
    c.expect_error("Too many subscriptions on this connection (the limit is 3). ident=k, chan=d").await;
}

#[tokio::test]
async fn given_thirty_thousand_subscribes_on_one_connection_then_each_costs_a_path_not_a_table_copy() {
    let n = start_node(|c| c.max_subscriptions_per_connection = 40_000).await;
    let channels: Vec<String> = (0..30_000).map(|i| format!("ch-{i}")).collect();
    let key = serde_json::json!({"keys": [{"ident": "k", "secret": "s", "owner": "u",
        "publish": ["ch-29999"], "subscribe": channels}]});
    n.declare(&key.to_string()).await;
    let mut c = Client::login(n.running.hpfeeds_addr, "k", "s").await;
    let mut frames = Vec::new();
    for ch in &channels {
        frames.extend_from_slice(&frame::encode_subscribe(b"k", ch.as_bytes()));
    }
    c.send(&frames).await;
    // The whole table was copied per SUBSCRIBE before (24 s of CPU in a release
    // build); within the client's 10 s wait the last one must be live.
    c.sync("ch-29999", "all-subscribed").await;
    assert_eq!(n.running.switchboard.subscription_count(), 30_000);
}
