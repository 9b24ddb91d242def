//! Cross-node fan-out with the real hpfeeds client: a publisher on node 1
//! reaches subscribers on nodes 2 and 3 exactly as the graph says
//! (scenarios 1, 2 and 3 of docs/sharing.md).

use std::time::Instant;

use hpfriends_cluster_tests::{hpfriends_bin, http_get, publish, sync, wait_for, Cluster, Subscriber, DEADLINE};

const CH: &str = "dionaea.captures";
const GEO: &str = "geoloc.events";

const GRAPH: &str = r#"{
  "users": ["jojo", "mark", "alice", "eve", "bob"],
  "groups": [{"name": "honeynet", "admins": ["mark"], "members": ["mark", "alice"]}],
  "shares": [
    {"from": "jojo", "to": "mark",  "channel": "dionaea.captures", "kind": "shares"},
    {"from": "mark", "to": "alice", "channel": "dionaea.captures", "kind": "shares_all"},
    {"from": "jojo", "to": "group:honeynet", "channel": "geoloc.events", "kind": "shares"}
  ],
  "keys": [
    {"ident": "jojo-sensor", "secret": "j", "owner": "jojo", "publish": ["dionaea.captures", "geoloc.events"]},
    {"ident": "mark-key",  "secret": "m", "owner": "mark",  "publish": ["dionaea.captures"], "subscribe": ["dionaea.captures"]},
    {"ident": "alice-key", "secret": "a", "owner": "alice", "publish": ["dionaea.captures", "geoloc.events"], "subscribe": ["dionaea.captures", "geoloc.events"]},
    {"ident": "eve-key",   "secret": "e", "owner": "eve",   "publish": ["dionaea.captures"], "subscribe": ["dionaea.captures"]},
    {"ident": "bob-key",   "secret": "b", "owner": "bob",   "publish": ["geoloc.events"], "subscribe": ["geoloc.events"]}
  ]
}"#;

/// Three nodes with GRAPH applied.
fn cluster() -> Cluster {
    cluster_with(&[])
}

fn cluster_with(args: &[&str]) -> Cluster {
    let mut c = Cluster::start(&hpfriends_bin(), 3, args).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(GRAPH).unwrap();
    c
}

fn delivered(channel: &str, payload: &str) -> String {
    format!("publish to {channel} by jojo-sensor: b'{payload}'")
}

#[test]
fn given_publisher_on_node1_then_subscribers_on_nodes_2_and_3_get_exactly_what_the_graph_allows() {
    let c = cluster();
    // Invited but not accepted: bob gets nothing from the group share.
    c.nodes[0].ctl(&["group", "invite", "honeynet", "bob"]).unwrap();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    let (n1, n2, n3) = (c.nodes[0].hpfeeds_addr, c.nodes[1].hpfeeds_addr, c.nodes[2].hpfeeds_addr);

    let mark = Subscriber::start(n2, "mark-key", "m", CH).unwrap();
    let eve = Subscriber::start(n3, "eve-key", "e", CH).unwrap();
    let alice = Subscriber::start(n3, "alice-key", "a", GEO).unwrap();
    let alice_relayed = Subscriber::start(n3, "alice-key", "a", CH).unwrap();
    let bob = Subscriber::start(n2, "bob-key", "b", GEO).unwrap();
    // Each marker is published on node 1 by the subscriber's own key: once it
    // arrives, the subscription is known on node 1 too.
    sync(n1, &mark, "mark-key", "m", CH, "mark-ready").unwrap();
    sync(n1, &eve, "eve-key", "e", CH, "eve-ready").unwrap();
    sync(n1, &alice, "alice-key", "a", GEO, "alice-ready").unwrap();
    sync(n1, &alice_relayed, "alice-key", "a", CH, "alice-ch-ready").unwrap();
    sync(n1, &bob, "bob-key", "b", GEO, "bob-ready").unwrap();

    publish(n1, "jojo-sensor", "j", CH, "capture-1").unwrap();
    publish(n1, "jojo-sensor", "j", GEO, "geo-1").unwrap();
    mark.wait_for_line(&delivered(CH, "capture-1")).unwrap();
    // Scenario 2 across nodes: mark (node 2) relays to alice (node 3) with shares_all.
    alice_relayed.wait_for_line(&delivered(CH, "capture-1")).unwrap();
    alice.wait_for_line(&delivered(GEO, "geo-1")).unwrap();
    // Markers published after jojo's messages come back; jojo's never did.
    sync(n1, &eve, "eve-key", "e", CH, "eve-after").unwrap();
    sync(n1, &bob, "bob-key", "b", GEO, "bob-after").unwrap();
    assert!(!eve.saw(&delivered(CH, "capture-1")), "eve has no share");
    assert!(!bob.saw(&delivered(GEO, "geo-1")), "bob never accepted the invitation");

    // Removing a share through node 3 stops delivery on every node.
    let removed = Instant::now();
    c.nodes[2].ctl(&["share", "remove", "--from", "jojo", "--to", "mark", "--channel", CH]).unwrap();
    let answered = removed.elapsed();
    let applied_everywhere = wait_for("every node to apply the removal", DEADLINE, || {
        let index: Vec<u64> = c.nodes.iter().filter_map(|n| n.status().ok()?["last_applied"].as_u64()).collect();
        (index.len() == 3 && index.windows(2).all(|w| w[0] == w[1])).then(|| removed.elapsed())
    })
    .unwrap();
    println!("share removal: API answered after {answered:?}; all three nodes applied it by {applied_everywhere:?}");
    publish(n1, "jojo-sensor", "j", CH, "after-removal").unwrap();
    sync(n1, &mark, "mark-key", "m", CH, "mark-after-removal").unwrap();
    assert!(!mark.saw(&delivered(CH, "after-removal")));
}

#[test]
fn given_restarted_node_when_ready_then_its_new_subscriber_gets_messages_from_other_nodes() {
    let mut c = cluster();
    c.node(3).kill();
    c.node(3).restart().unwrap(); // returns once /readyz says ready
    let n1 = c.nodes[0].hpfeeds_addr;
    let mark = Subscriber::start(c.nodes[2].hpfeeds_addr, "mark-key", "m", CH).unwrap();
    // The subscription itself travels as an interest change; wait for it to be live.
    sync(n1, &mark, "mark-key", "m", CH, "mark-on-restarted-node").unwrap();
    publish(n1, "jojo-sensor", "j", CH, "to-restarted").unwrap();
    mark.wait_for_line(&delivered(CH, "to-restarted")).unwrap();
}

#[test]
fn given_leader_killed_then_pub_sub_between_survivors_keeps_working() {
    let mut c = cluster();
    let leader = c.wait_leader(DEADLINE).unwrap();
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (a, b) = (c.node(survivors[0]).hpfeeds_addr, c.node(survivors[1]).hpfeeds_addr);
    let mark = Subscriber::start(b, "mark-key", "m", CH).unwrap();
    sync(a, &mark, "mark-key", "m", CH, "before-kill").unwrap();

    c.node(leader).kill();
    // Right away, before any new leader is elected: routing needs no leader.
    publish(a, "jojo-sensor", "j", CH, "during-election").unwrap();
    mark.wait_for_line(&delivered(CH, "during-election")).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    publish(a, "jojo-sensor", "j", CH, "after-election").unwrap();
    mark.wait_for_line(&delivered(CH, "after-election")).unwrap();
}

/// Runs `hpfriends bench --json ARGS` from jojo-sensor on node 1 to mark-key
/// on node 2; returns the report.
fn bench_across(c: &Cluster, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(hpfriends_bin())
        .args(["bench", "--json"])
        .args(["--addr", &c.nodes[0].hpfeeds_addr.to_string(), "--sub-addr", &c.nodes[1].hpfeeds_addr.to_string()])
        .args(["--pub-ident", "jojo-sensor", "--pub-secret", "j", "--sub-ident", "mark-key", "--sub-secret", "m"])
        .args(["--channel", CH])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap()
}

/// Publishers at full speed outrun a link between nodes with a tiny queue;
/// what the link drops is never silent: the subscribers that would have got
/// it are closed with a slow-consumer ERROR, and the others lose nothing.
#[test]
fn given_link_queue_overflows_then_affected_subscribers_are_closed_not_silently_starved() {
    let c = cluster_with(&["--peer-queue-messages", "8"]);
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    let r = bench_across(&c, &["--duration", "1", "-p", "4", "-s", "2"]);
    println!("open loop across nodes, peer queue of 8: {r}");
    let mut closed_for_loss = 0;
    for s in r["per_subscriber"].as_array().unwrap() {
        match s["closed"].as_str() {
            Some(why) => {
                assert!(why.starts_with("Slow consumer:"), "{r}");
                closed_for_loss += why.contains("dropped between nodes") as usize;
            }
            None => assert_eq!(s["lost"], 0, "silent loss: {r}"),
        }
    }
    assert!(closed_for_loss > 0, "a queue of 8 under four full-speed publishers must overflow: {r}");
    let (_, metrics) = http_get(c.nodes[0].http_addr, "/metrics").unwrap();
    assert!(metrics.contains("hpfriends_fanout_dropped_total{peer=\"2\"}"), "{metrics}");
}

/// Many large messages at once cross the hop intact: a busy link batches
/// publishes, and a batch must stay within what the peer accepts.
#[test]
fn given_burst_of_64_kib_messages_then_all_cross_to_the_other_node() {
    let c = cluster();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    // 128 in flight: 8 MiB, well under the subscriber's 16 MiB outbound bound (256 × 64 KiB
    // plus framing is just over it, and the TLS hop delivers in bursts).
    let r = bench_across(&c, &["--duration", "1", "--size", "65536", "--window", "128"]);
    println!("64 KiB across the hop: {r}");
    // More than one batch's worth (1 MiB) went through, and nothing was lost.
    assert!(r["published"].as_u64().unwrap() > 64, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["delivered"], r["published"], "{r}");
}
