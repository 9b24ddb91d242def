//! The archive on a three-node cluster (issue 27): what is published on any
//! node is replayed through every node, a node that was down catches up, and
//! killing the publisher's node right after it published loses nothing.
//! Real processes, the real hpfeeds client library, `ctl messages`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hpfriends_cluster_tests::{hpfriends_bin, publish_numbered, wait_for, Cluster, NodeProcess, DEADLINE};

const GRAPH: &str = r#"{
  "users": ["jojo", "mark"],
  "shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
  "keys": [
    {"ident": "jojo-sensor", "secret": "j", "owner": "jojo", "publish": ["c"]},
    {"ident": "mark-key", "secret": "m", "owner": "mark", "subscribe": ["c"]}
  ]
}"#;

fn token(node: &NodeProcess, user: &str) -> String {
    let answer: serde_json::Value = serde_json::from_str(&node.ctl(&["user", "token", user]).unwrap()).unwrap();
    answer["token"].as_str().unwrap().to_string()
}

/// The payloads `ctl messages` gives mark through `node`, in the order given.
fn replay(node: &NodeProcess, token: &str) -> Vec<String> {
    let out = node.ctl_as(token, &["messages", "--channel", "c", "--limit", "100000"]).unwrap();
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"].as_str().unwrap().into())
        .collect()
}

/// Three nodes with GRAPH applied, each ready; and mark's token.
fn three_nodes(extra: &[&str]) -> (Cluster, String) {
    let mut c = Cluster::start(&hpfriends_bin(), 3, extra).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(GRAPH).unwrap();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    let mark = token(&c.nodes[0], "mark");
    (c, mark)
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Waits until `node` replays exactly `want` (as a set, each once); returns how long it took.
fn wait_replayed(node: &NodeProcess, token: &str, want: &BTreeSet<String>) -> Duration {
    let start = Instant::now();
    wait_for("the archive to hold every message", DEADLINE, || {
        let got = replay(node, token);
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(set.len(), got.len(), "no message twice");
        (set == *want).then_some(())
    })
    .unwrap();
    start.elapsed()
}

#[test]
fn given_publishes_on_every_node_then_each_node_replays_all_of_them_in_order_and_a_node_that_was_down_catches_up() {
    let (mut c, mark) = three_nodes(&[]);
    let mut want = BTreeSet::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let prefix = format!("from-node-{}", i + 1);
        publish_numbered(n.hpfeeds_addr, "jojo-sensor", "j", "c", &prefix, 200).unwrap();
        want.extend(numbered(&prefix, 200));
    }
    for (id, n) in (1..).zip(&c.nodes) {
        let took = wait_replayed(n, &mark, &want);
        println!("node {id} held all 600 within {took:?} of the last publish");
    }
    // Each publisher's messages in the order it published them, on every node.
    for (id, n) in (1..).zip(&c.nodes) {
        let got = replay(n, &mark);
        for i in 1..=3 {
            let prefix = format!("from-node-{i}-");
            let mine: Vec<&String> = got.iter().filter(|p| p.starts_with(&prefix)).collect();
            let order: Vec<usize> = mine.iter().map(|p| p[prefix.len()..].parse().unwrap()).collect();
            assert_eq!(order, (0..200).collect::<Vec<_>>(), "node {id}: node {i}'s messages in order");
        }
    }

    // Node 3 is down while node 1 takes more; back, it catches up.
    c.node(3).kill();
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "while-3-was-down", 300).unwrap();
    want.extend(numbered("while-3-was-down", 300));
    c.node(3).restart().unwrap();
    c.node(3).wait_ready().unwrap();
    let took = wait_replayed(&c.nodes[2], &mark, &want);
    println!("node 3 caught up 300 messages within {took:?} of being ready");
}

#[test]
fn given_the_publishers_node_killed_a_second_after_it_published_then_the_others_hold_every_message() {
    let (mut c, mark) = three_nodes(&[]);
    publish_numbered(c.nodes[2].hpfeeds_addr, "jojo-sensor", "j", "c", "before-the-kill", 1000).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.node(3).kill();
    let want: BTreeSet<String> = numbered("before-the-kill", 1000).into_iter().collect();
    for n in &c.nodes[..2] {
        wait_replayed(n, &mark, &want);
    }
}

#[test]
fn given_a_short_retention_then_every_node_lets_the_same_messages_go() {
    let (c, mark) = three_nodes(&["--archive-keep", "3s"]);
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "short-lived", 100).unwrap();
    let want: BTreeSet<String> = numbered("short-lived", 100).into_iter().collect();
    for n in &c.nodes {
        wait_replayed(n, &mark, &want);
    }
    // Timed by the publishing node's clock, the same copies expire on every node.
    for n in &c.nodes {
        wait_replayed(n, &mark, &BTreeSet::new());
        let kept = hpfriends_cluster_tests::metric(n.http_addr, "hpfriends_archive_messages").unwrap();
        assert_eq!(kept, 0.0, "nothing left in the archive");
    }
}

#[test]
fn given_ctl_messages_follow_on_one_node_then_what_is_published_on_another_arrives_once_each() {
    use std::io::BufRead;
    let (c, mark) = three_nodes(&[]);
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "before", 100).unwrap();
    let mut follower = std::process::Command::new(hpfriends_bin())
        .args(["ctl", "--json", "--server", &c.nodes[2].url(), "--token", &mark])
        .args(["messages", "--channel", "c", "--since", "1h", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if tx.send(v["payload"].as_str().unwrap().to_string()).is_err() {
                return;
            }
        }
    });
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "after", 100).unwrap();
    let mut got = Vec::new();
    while got.len() < 200 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => got.push(p),
            Err(_) => break,
        }
    }
    let _ = follower.kill();
    let mut want = numbered("before", 100);
    want.extend(numbered("after", 100));
    assert_eq!(got, want, "node 3 follows node 1's publishes: each once, in order");
}

/// `ctl messages` as mark through `node` (`extra` arguments after the
/// channel): the payloads printed and what it said on stderr.
fn replay_with_warnings(node: &NodeProcess, token: &str, extra: &[&str]) -> (Vec<String>, String) {
    let out = std::process::Command::new(hpfriends_bin())
        .args(["ctl", "--json", "--server", &node.url(), "--token", token])
        .args(["messages", "--channel", "c", "--limit", "100000"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "ctl messages: {}", String::from_utf8_lossy(&out.stderr));
    let payloads = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"].as_str().unwrap().into())
        .collect();
    (payloads, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn given_a_node_back_from_being_down_then_its_first_answer_holds_what_the_others_kept_and_an_unreachable_node_is_named()
{
    let (mut c, mark) = three_nodes(&[]);
    // Mark's token is a Raft entry: a linearizable read makes node 3 apply it
    // before it goes down (asked at once when it is back, it must know it).
    c.nodes[2].ctl(&["--consistent", "user", "list"]).unwrap();
    c.node(3).kill();
    // 50 MB that node 3 copies first (oldest first), then a tail published
    // from a whole second on. In rounds of 12.5 MB, each archived on node 1
    // before the next: a burst past the writer's 16 MiB queue would be
    // dropped from the archive (by design) on a loaded machine.
    let mut want = Vec::new();
    for round in 0..4 {
        let prefix = format!("bulk{round}");
        hpfriends_cluster_tests::publish_numbered_padded(
            c.nodes[0].hpfeeds_addr,
            "jojo-sensor",
            "j",
            "c",
            &prefix,
            12_500,
            1024,
        )
        .unwrap();
        want.extend(numbered(&prefix, 12_500));
        wait_for("node 1 to archive the round", DEADLINE, || {
            let held = hpfriends_cluster_tests::metric(c.nodes[0].http_addr, "hpfriends_archive_messages").ok()?;
            (held >= want.len() as f64).then_some(())
        })
        .unwrap();
    }
    let dropped = hpfriends_cluster_tests::metric(c.nodes[0].http_addr, "hpfriends_archive_dropped_total").unwrap();
    assert_eq!(dropped, 0.0, "node 1 archived every message");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let tail_from = now.as_secs() + 1;
    std::thread::sleep(Duration::from_secs(tail_from) - now);
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "tail", 100).unwrap();
    c.node(3).restart().unwrap();
    c.node(3).wait_ready().unwrap();
    // The first answer, not a retry: node 3 fetched from the others what it
    // lacked, though the tail is the last of what it copies.
    let (got, warnings) = replay_with_warnings(&c.nodes[2], &mark, &["--since", &tail_from.to_string()]);
    assert_eq!(got, numbered("tail", 100), "the tail, at the first ask; stderr: {warnings}");
    assert!(warnings.is_empty(), "nothing lacks: {warnings}");
    let (got, _) = replay_with_warnings(&c.nodes[2], &mark, &[]);
    let got: Vec<String> = got.into_iter().map(|p| p.trim_end_matches('.').to_string()).collect();
    want.extend(numbered("tail", 100));
    assert_eq!(got, want, "everything once, in the order published");

    // Node 2 is down: node 1 answers with what it holds and names node 2.
    c.node(2).kill();
    publish_numbered(c.nodes[0].hpfeeds_addr, "jojo-sensor", "j", "c", "while-2-was-down", 10).unwrap();
    want.extend(numbered("while-2-was-down", 10));
    let (got, warnings) = replay_with_warnings(&c.nodes[0], &mark, &[]);
    assert_eq!(got.len(), want.len());
    assert!(warnings.contains("node 2 did not answer"), "{warnings}");
    assert!(!warnings.contains("node 3"), "node 3 answered: {warnings}");
}
