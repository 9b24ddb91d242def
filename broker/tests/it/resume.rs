//! Resume keys on one node (issue 27, docs/protocol.md "Resume"): a reader
//! that dies gets, on its next connection, exactly what its kernel had not
//! taken; nothing it had read comes twice.

use hpfriends_broker::protocol::Frame;

use crate::common::{start_node, wait_for, Client, Node};

const GRAPH: &str = r#"{
  "users": ["jojo", "mark"],
  "shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
  "keys": [
    {"ident": "jojo-sensor", "secret": "j", "owner": "jojo", "publish": ["c"]},
    {"ident": "mark-key", "secret": "m", "owner": "mark", "subscribe": ["c"], "resume": true}
  ]
}"#;

/// Payloads of one size, numbered: `m-00042` and padding.
fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("m-{i:05}-").into_bytes();
    p.resize(200, b'.');
    p
}

fn number(payload: &[u8]) -> usize {
    std::str::from_utf8(&payload[2..7]).unwrap().parse().unwrap()
}

async fn node_with_graph(tweak: impl FnOnce(&mut hpfriends_broker::config::Config)) -> Node {
    let n = start_node(tweak).await;
    n.declare(GRAPH).await;
    n.write(hpfriends_graph::Command::AcceptShare {
        from: "jojo".into(),
        to: hpfriends_graph::Target::User("mark".into()),
        channel: "c".into(),
    })
    .await;
    n
}

/// Where mark-key's subscription to c had reached, for this node's messages.
fn place(n: &Node) -> Option<u64> {
    n.running.node.read_graph(|g| {
        let mark = g.user_id("mark")?;
        g.resume_position("mark-key", mark, "c")?.get(&n.running.node.id()).copied()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_resume_reader_that_dies_with_frames_unread_then_its_next_connection_starts_where_its_kernel_stopped() {
    let n = node_with_graph(|_| {}).await;
    let addr = n.running.hpfeeds_addr;
    // A reader with a small receive buffer that reads 100 messages, then stops reading.
    let mut reader = Client::connect_with_receive_buffer(addr, 4096).await.auth("mark-key", "m").await;
    reader.subscribe("c").await;
    let mut sensor = Client::login(addr, "jojo-sensor", "j").await;
    const TOTAL: usize = 3000;
    for i in 0..TOTAL {
        sensor.publish("c", &payload(i)).await;
    }
    for i in 0..100 {
        let (_, _, p) = reader.next_publish().await;
        assert_eq!(number(&p), i);
    }
    // Its window closes: what it holds unread stops growing.
    let mut last = 0;
    let held = wait_for(|| {
        let now = reader.unread();
        let stable = now > 0 && now == last;
        last = now;
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            stable.then_some(now)
        }
    })
    .await;
    let frame_len = hpfriends_broker::protocol::frame::encode_publish(b"jojo-sensor", b"c", &payload(0)).len();
    // It dies: what its kernel had taken (`held`) is lost with it; the rest
    // sat unacknowledged in the broker's queue.
    drop(reader);
    wait_for(|| async { place(&n).filter(|p| *p >= 100) }).await;

    let mut again = Client::login(addr, "mark-key", "m").await;
    again.subscribe("c").await;
    let (_, _, p) = again.next_publish().await;
    let first = number(&p);
    let most = 100 + held.div_ceil(frame_len);
    assert!(
        (100..=most).contains(&first),
        "the first message again is {first}: not one it had read (< 100), nor past what its kernel held (> {most})"
    );
    for i in first + 1..TOTAL {
        let (_, _, p) = again.next_publish().await;
        assert_eq!(number(&p), i, "every message after it, once, in order");
    }
    println!("read 100, held {held} bytes unread ({} frames), resumed at {first}", held / frame_len);

    // Then live: a message published now comes next, and nothing else.
    sensor.publish("c", &payload(TOTAL)).await;
    let (_, _, p) = again.next_publish().await;
    assert_eq!(number(&p), TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_resume_reader_that_leaves_then_what_was_published_meanwhile_comes_first_and_a_plain_key_gets_none() {
    let n = node_with_graph(|_| {}).await;
    let addr = n.running.hpfeeds_addr;
    let mut reader = Client::login(addr, "mark-key", "m").await;
    reader.subscribe("c").await;
    let mut sensor = Client::login(addr, "jojo-sensor", "j").await;
    for i in 0..10 {
        sensor.publish("c", &payload(i)).await;
    }
    for i in 0..10 {
        assert_eq!(number(&reader.next_publish().await.2), i);
    }
    assert_eq!(n.metric("hpfeeds_broker_subscriptions").await, 1.0, "a resume subscription counts");
    drop(reader);
    wait_for(|| async { place(&n).filter(|p| *p >= 10) }).await;
    assert_eq!(n.metric("hpfeeds_broker_subscriptions").await, 0.0, "and stops counting when it ends");
    for i in 10..500 {
        sensor.publish("c", &payload(i)).await;
    }
    let mut again = Client::login(addr, "mark-key", "m").await;
    again.subscribe("c").await;
    for i in 10..500 {
        assert_eq!(number(&again.next_publish().await.2), i);
    }
    // Unsubscribed and gone: its next connection starts from there too.
    again.unsubscribe("c").await;
    sensor.publish("c", &payload(500)).await;
    drop(again);
    wait_for(|| async { place(&n).filter(|p| *p >= 500) }).await;
    let mut third = Client::login(addr, "mark-key", "m").await;
    third.subscribe("c").await;
    sensor.publish("c", &payload(501)).await;
    for i in [500, 501] {
        assert_eq!(number(&third.next_publish().await.2), i, "from where it unsubscribed, nothing twice");
    }
    // A key without resume starts live: nothing of the past.
    n.write(hpfriends_graph::Command::AddKey(hpfriends_graph::AuthKey {
        ident: "mark-plain".into(),
        secret: "p".into(),
        owner: "mark".into(),
        publish: vec![],
        subscribe: vec!["c".into()],
        resume: false,
    }))
    .await;
    let mut plain = Client::login(addr, "mark-plain", "p").await;
    plain.subscribe("c").await;
    wait_for(|| async {
        let subscribed = n.running.switchboard.subscription_count() > 0;
        subscribed.then_some(())
    })
    .await;
    sensor.publish("c", &payload(502)).await;
    match plain.next().await {
        Some(Frame::Publish(p)) => assert_eq!(number(p.payload()), 502, "live only"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_resume_reader_that_stops_reading_then_its_queue_stays_bounded_and_it_is_not_closed() {
    // 256 KiB queued closes a plain reader; 20 MB are published.
    let n = node_with_graph(|c| c.max_outbound_bytes = 256 * 1024).await;
    let addr = n.running.hpfeeds_addr;
    let mut stalled = Client::connect_with_receive_buffer(addr, 4096).await.auth("mark-key", "m").await;
    stalled.subscribe("c").await;
    let mut sensor = Client::login(addr, "jojo-sensor", "j").await;
    const TOTAL: usize = 100_000;
    for i in 0..TOTAL {
        sensor.publish("c", &payload(i)).await;
    }
    // Everything archived while the reader reads nothing: it is still connected.
    wait_for(|| async { (n.metric("hpfriends_archive_messages").await >= TOTAL as f64).then_some(()) }).await;
    for i in 0..TOTAL {
        let (_, _, p) = stalled.next_publish().await;
        assert_eq!(number(&p), i, "all of them, in order, once it reads again");
    }
}
