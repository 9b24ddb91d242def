//! Resume keys on a three-node cluster (issue 27, docs/protocol.md
//! "Resume"): the real hpfeeds command-line client, unmodified, gets what it
//! missed by reconnecting, through any node, exactly once and in order per
//! publisher, then the live stream.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use hpfriends_cluster_tests::{hpfriends_bin, metric, publish_numbered, wait_for, Cluster, Subscriber, DEADLINE};

const GRAPH: &str = r#"{
  "users": ["jojo", "mark"],
  "shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
  "keys": [
    {"ident": "jojo-sensor", "secret": "j", "owner": "jojo", "publish": ["c"]},
    {"ident": "mark-key", "secret": "m", "owner": "mark", "subscribe": ["c"], "resume": true},
    {"ident": "mark-plain", "secret": "p", "owner": "mark", "subscribe": ["c"]}
  ]
}"#;

/// How often a node writes the places of connected resume keys (`resume::CHECKPOINT`).
const CHECKPOINT: Duration = Duration::from_secs(2);

fn three_nodes() -> Cluster {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(GRAPH).unwrap();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    c
}

/// The payloads `hpfeeds subscribe` printed, in order.
fn payloads(sub: &Subscriber) -> Vec<String> {
    sub.lines().iter().filter_map(|l| l.split_once(": b'").map(|(_, p)| p.trim_end_matches('\'').to_string())).collect()
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Waits until `sub` printed `count` payloads; returns them.
fn wait_printed(sub: &Subscriber, count: usize) -> Vec<String> {
    wait_for(&format!("{count} messages"), Duration::from_secs(60), || {
        let got = payloads(sub);
        (got.len() >= count).then_some(got)
    })
    .unwrap()
}

fn subscribe(addr: SocketAddr) -> Subscriber {
    let sub = Subscriber::start(addr, "mark-key", "m", "c").unwrap();
    sub.wait_for_line("connected to").unwrap();
    sub
}

/// Asserts `got` is `want` as a set, each once, each `prefix-N` run in order.
fn exactly_once_in_order(got: &[String], want: &BTreeSet<String>, prefixes: &[&str]) {
    let set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "no message twice");
    let missing: Vec<&String> = want.difference(&set).take(5).collect();
    let extra: Vec<&String> = set.difference(want).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not wanted {extra:?}");
    for prefix in prefixes {
        let mine: Vec<usize> =
            got.iter().filter_map(|p| p.strip_prefix(&format!("{prefix}-"))).map(|n| n.parse().unwrap()).collect();
        assert!(mine.windows(2).all(|w| w[0] + 1 == w[1]), "{prefix}'s messages in the order published");
    }
}

/// Publishes 10,000 messages, a third through each node in `nodes`.
fn publish_meanwhile(c: &Cluster, nodes: &[usize], prefix: &str) -> (BTreeSet<String>, Vec<String>) {
    let (mut want, mut prefixes) = (BTreeSet::new(), Vec::new());
    let each = 10_000 / nodes.len();
    for (k, &i) in nodes.iter().enumerate() {
        let count = if k == 0 { 10_000 - each * (nodes.len() - 1) } else { each };
        let p = format!("{prefix}-via-{}", i + 1);
        publish_numbered(c.nodes[i].hpfeeds_addr, "jojo-sensor", "j", "c", &p, count).unwrap();
        want.extend(numbered(&p, count));
        prefixes.push(p);
    }
    (want, prefixes)
}

/// After the 10,000: 100 more, published live, come next, in order, once.
fn then_live(c: &Cluster, sub: &Subscriber, before: usize) {
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "live", 100).unwrap();
    let got = wait_printed(sub, before + 100);
    assert_eq!(got.len(), before + 100, "nothing else");
    assert_eq!(got[before..], numbered("live", 100), "the live stream right after, no gap, no repeat");
}

/// Kills the subscriber (SIGKILL) connected to node `i`, and waits until
/// that node wrote where it had reached.
fn killed(c: &Cluster, i: usize, sub: Subscriber) {
    let written = || metric(c.nodes[i].http_addr, "hpfriends_resume_places_written_total").unwrap();
    let before = written();
    drop(sub);
    wait_for("the subscriber's place written", DEADLINE, || (written() > before).then_some(())).unwrap();
}

/// 10,000 published through `nodes` while the key is away; then it comes
/// back through node 2: each once, each publisher's in order, then live.
fn missed_through_node_2_then_live(c: &Cluster, nodes: &[usize]) {
    let (want, prefixes) = publish_meanwhile(c, nodes, "meanwhile");
    let again = subscribe(c.nodes[1].hpfeeds_addr);
    let got = wait_printed(&again, 10_000);
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    exactly_once_in_order(&got, &want, &prefixes);
    then_live(c, &again, 10_000);
}

#[test]
fn given_a_resume_subscriber_killed_then_through_another_node_it_gets_what_it_missed_once_then_live() {
    let c = three_nodes();
    let first = subscribe(c.nodes[2].hpfeeds_addr);
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "before", 100).unwrap();
    assert_eq!(wait_printed(&first, 100), numbered("before", 100));
    killed(&c, 2, first);
    missed_through_node_2_then_live(&c, &[0, 1, 2]);
}

#[test]
fn given_the_resume_subscribers_node_killed_then_it_resumes_through_another_node_from_the_last_checkpoint() {
    let mut c = three_nodes();
    let first = subscribe(c.nodes[2].hpfeeds_addr);
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "before", 100).unwrap();
    assert_eq!(wait_printed(&first, 100), numbered("before", 100));
    // A node that dies writes nothing more: what it wrote last is a checkpoint.
    std::thread::sleep(CHECKPOINT * 2);
    c.node(3).kill();
    drop(first);
    missed_through_node_2_then_live(&c, &[0, 1]);
}

#[test]
fn given_the_publishers_node_killed_a_second_after_publishing_then_a_resume_subscriber_still_gets_everything() {
    let mut c = three_nodes();
    let first = subscribe(c.nodes[1].hpfeeds_addr);
    publish_numbered(c.nodes[1].hpfeeds_addr, "jojo-sensor", "j", "c", "before", 10).unwrap();
    assert_eq!(wait_printed(&first, 10), numbered("before", 10));
    killed(&c, 1, first);

    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "doomed-node", 1000).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.node(1).kill();
    let again = subscribe(c.nodes[2].hpfeeds_addr);
    let got = wait_printed(&again, 1000);
    exactly_once_in_order(&got, &numbered("doomed-node", 1000).into_iter().collect(), &["doomed-node"]);
}

#[test]
fn given_the_subscribers_node_cut_off_while_messages_are_published_then_a_resume_subscriber_gets_all_after_the_heal() {
    let mut c = three_nodes();
    let resumed = subscribe(c.nodes[2].hpfeeds_addr);
    let plain = Subscriber::start(c.nodes[2].hpfeeds_addr, "mark-plain", "p", "c").unwrap();
    for (sub, marker) in [(&plain, "plain-live"), (&resumed, "resumed-live")] {
        hpfriends_cluster_tests::sync(c.nodes[0].hpfeeds_addr, sub, "jojo-sensor", "j", "c", marker).unwrap();
    }

    c.partition(3).unwrap();
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "cut-off", 1000).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    c.heal();

    let got = wait_for("the 1,000 after the heal", Duration::from_secs(60), || {
        let got: Vec<String> = payloads(&resumed).into_iter().filter(|p| p.starts_with("cut-off")).collect();
        (got.len() >= 1000).then_some(got)
    })
    .unwrap();
    exactly_once_in_order(&got, &numbered("cut-off", 1000).into_iter().collect(), &["cut-off"]);
    // The plain subscriber's loss is not silent: it was told and closed.
    let plain_count = || payloads(&plain).iter().filter(|p| p.starts_with("cut-off")).count();
    let _ = wait_for("the plain subscriber's fate", DEADLINE, || {
        (plain_count() == 1000 || plain.saw("dropped between nodes") || plain.saw("Error")).then_some(())
    });
    let plain_got = plain_count();
    println!(
        "the plain subscriber got {plain_got} of the 1,000; its last lines: {:?}",
        plain.lines().iter().rev().take(2).collect::<Vec<_>>()
    );
    assert!(plain_got == 1000 || plain.saw("dropped between nodes"), "a plain subscriber either got all or was told");
}
