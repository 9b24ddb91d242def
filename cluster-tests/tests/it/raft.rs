//! Real three-node clusters: replication, writes through any node, leader
//! loss, joining, and peer authentication.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hpfriends_cluster_tests::{
    hpfriends_bin, http_request, metric, publish, sync, wait_for, Cluster, NodeProcess, Subscriber, DEADLINE,
};

fn users(node: &NodeProcess) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&node.ctl(&["user", "list"]).unwrap()).unwrap();
    v["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_string()).collect()
}

fn wait_users(node: &NodeProcess, want: &[&str]) {
    wait_for(&format!("{want:?} on {}", node.url()), DEADLINE, || {
        let have = users(node);
        want.iter().all(|w| have.iter().any(|h| h == w)).then_some(())
    })
    .unwrap();
}

#[test]
fn given_three_nodes_when_writing_through_each_then_every_node_has_every_write() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    for (i, n) in c.nodes.iter().enumerate() {
        n.ctl(&["user", "add", &format!("user{i}")]).unwrap();
    }
    for n in &c.nodes {
        wait_users(n, &["user0", "user1", "user2"]);
    }
    let status = c.nodes[2].status().unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3, "{status}");
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["voter"] == true), "{status}");
    // A consistent read on a follower sees a write just made through another node.
    c.nodes[0].ctl(&["user", "add", "fresh"]).unwrap();
    let seen = c.nodes[2].ctl(&["--consistent", "user", "list"]).unwrap();
    assert!(seen.contains("\"fresh\""), "{seen}");
    // A rejected write through a follower says why, and changes nothing.
    let err = c.nodes[1].ctl(&["user", "add", "user0"]).unwrap_err().to_string();
    assert!(err.contains("409") && err.contains("already exists"), "{err}");
}

#[test]
fn given_leader_killed_then_new_leader_quickly_writes_succeed_and_old_leader_catches_up() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    let old = c.wait_leader(DEADLINE).unwrap();
    c.node(old).ctl(&["user", "add", "before"]).unwrap();
    c.node(old).kill();
    let killed = Instant::now();
    let new = c.wait_leader(DEADLINE).unwrap();
    let elected = killed.elapsed();
    println!("new leader {new} after {elected:?}");
    assert_ne!(new, old);
    assert!(elected < Duration::from_secs(2), "election took {elected:?}");

    let survivor = (1..=3).find(|id| *id != old && *id != new).unwrap();
    c.node(survivor).ctl(&["user", "add", "after"]).unwrap();
    c.node(new).ctl(&["user", "add", "after2"]).unwrap();

    c.node(old).restart().unwrap();
    wait_users(c.node(old), &["before", "after", "after2"]);
    c.node(old).ctl(&["user", "add", "from-old"]).unwrap();
    wait_users(c.node(new), &["from-old"]);
}

#[test]
fn given_fourth_node_after_compaction_when_it_joins_then_it_gets_the_whole_graph() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small-snapshots.toml");
    std::fs::write(&config, "snapshot_every_logs = 10\n").unwrap();
    let cfg = config.to_str().unwrap();
    let mut c = Cluster::start(&hpfriends_bin(), 3, &["--config", cfg]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    for n in &names {
        c.nodes[0].ctl(&["user", "add", n]).unwrap();
    }
    // The log was compacted: the first entries exist only in a snapshot now.
    let leader = c.wait_leader(DEADLINE).unwrap();
    let purged = wait_for("log compaction on the leader", DEADLINE, || {
        c.node(leader).status().ok()?["purged_index"].as_u64().filter(|p| *p > 0)
    })
    .unwrap();
    let node4 = c.add_node(&["--config", cfg]).unwrap();
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_users(node4, &want);
    let status = node4.status().unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 4, "{status}");
    let installed = status["snapshot_index"].as_u64().expect("node 4 holds a snapshot");
    assert!(installed >= purged, "snapshot {installed} does not cover the purged log up to {purged}: {status}");

    // And it takes part in fan-out: its subscriber gets a message published on node 1.
    let graph = c.dir.path().join("graph.json");
    std::fs::write(
        &graph,
        r#"{"shares": [{"from": "u0", "to": "u1", "channel": "c", "kind": "shares"}],
            "keys": [{"ident": "u0-k", "secret": "a", "owner": "u0", "publish": ["c"]},
                     {"ident": "u1-k", "secret": "b", "owner": "u1", "publish": ["c"], "subscribe": ["c"]}]}"#,
    )
    .unwrap();
    c.nodes[0].ctl(&["apply", graph.to_str().unwrap()]).unwrap();
    let (n1, n4) = (c.nodes[0].hpfeeds_addr, c.nodes[3].hpfeeds_addr);
    wait_for("the keys on node 4", DEADLINE, || c.nodes[3].ctl(&["key", "list"]).ok().filter(|k| k.contains("u1-k")))
        .unwrap();
    let sub = Subscriber::start(n4, "u1-k", "b", "c").unwrap();
    sync(n1, &sub, "u1-k", "b", "c", "u1-ready").unwrap();
    publish(n1, "u0-k", "a", "c", "to-node-4").unwrap();
    sub.wait_for_line("by u0-k: b'to-node-4'").unwrap();
}

#[test]
fn given_wrong_cluster_secret_when_joining_then_refused_with_reason() {
    let mut c = Cluster::start(&hpfriends_bin(), 1, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let member = c.nodes[0].cluster_addr.to_string();
    let err = NodeProcess::start(
        &hpfriends_bin(),
        &dir.path().join("intruder"),
        &["--node-id", "9", "--cluster-secret", "not-the-right-secret-of-this-cluster", "--join", &member],
    )
    .err()
    .expect("a node with the wrong secret must not join");
    assert!(format!("{err:#}").contains("do not trust each other"), "{err:#}");
    wait_for("node 1 to log the refusal", DEADLINE, || {
        c.nodes[0].log().contains("refused a cluster connection").then_some(())
    })
    .unwrap();
    let status = c.nodes[0].status().unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 1);
}

#[test]
fn given_one_node_partitioned_then_majority_writes_minority_refuses_and_catches_up_after_healing() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    let leader = c.wait_leader(DEADLINE).unwrap();
    let cut = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != cut).unwrap();
    c.node(leader).ctl(&["user", "add", "before"]).unwrap();
    let graph = c.dir.path().join("graph.json");
    std::fs::write(
        &graph,
        r#"{"shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
            "keys": [{"ident": "jojo-k", "secret": "j", "owner": "jojo", "publish": ["c"]},
                     {"ident": "mark-k", "secret": "m", "owner": "mark", "publish": ["c"], "subscribe": ["c"]}]}"#,
    )
    .unwrap();
    c.node(leader).ctl(&["apply", graph.to_str().unwrap()]).unwrap();
    wait_users(c.node(cut), &["before", "jojo", "mark"]);
    let cut_hpfeeds = c.node(cut).hpfeeds_addr;
    let mark = Subscriber::start(cut_hpfeeds, "mark-k", "m", "c").unwrap();
    sync(cut_hpfeeds, &mark, "mark-k", "m", "c", "mark-ready").unwrap();

    c.partition(cut).unwrap();
    // The cut-off node keeps delivering with the index it has.
    publish(cut_hpfeeds, "jojo-k", "j", "c", "while-cut-off").unwrap();
    mark.wait_for_line("by jojo-k: b'while-cut-off'").unwrap();
    // The majority keeps writing, through the leader and through the other follower.
    c.node(leader).ctl(&["user", "add", "during-1"]).unwrap();
    c.node(other).ctl(&["user", "add", "during-2"]).unwrap();
    // The cut-off node answers writes with a clear error, and still serves reads from its last state.
    let started = Instant::now();
    let err = c.node(cut).ctl(&["user", "add", "lost"]).unwrap_err().to_string();
    println!("minority write refused after {:?}: {err}", started.elapsed());
    assert!(err.contains("503") && err.contains("no quorum"), "{err}");
    assert!(users(c.node(cut)).contains(&"before".to_string()));
    // A consistent read there says it is a read that cannot be confirmed.
    let err = c.node(cut).ctl(&["--consistent", "user", "list"]).unwrap_err().to_string();
    assert!(err.contains("503") && err.contains("cannot confirm a consistent read"), "{err}");

    c.heal();
    wait_users(c.node(cut), &["before", "during-1", "during-2"]);
    assert!(!users(c.node(cut)).contains(&"lost".to_string()), "the refused write must not appear later");
    c.node(cut).ctl(&["user", "add", "after-heal"]).unwrap();
    wait_users(c.node(leader), &["after-heal"]);
}

fn term(node: &NodeProcess) -> u64 {
    node.status().unwrap()["term"].as_u64().unwrap()
}

/// Writes users through `node` until `stop`; returns when each was acknowledged.
fn write_until(node: &NodeProcess, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Instant>> {
    let (addr, token) = (node.http_addr, node.token.clone());
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let body = format!(r#"{{"name": "writer-{i}"}}"#);
            if let Ok((200, _)) = http_request(addr, "POST", "/api/v1/users", &token, &body, DEADLINE) {
                acked.push(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        acked
    })
}

/// Pre-Vote: a follower cut off for seconds never starts an election, so
/// when it is back the leader keeps leading in the same term.
#[test]
fn given_a_follower_cut_off_for_seconds_when_it_is_back_then_no_election_happens_and_writes_go_on() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    let leader = c.wait_leader(DEADLINE).unwrap();
    let cut = (1..=3).find(|id| *id != leader).unwrap();
    let before = term(c.node(leader));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_until(c.node(leader), stop.clone());

    std::thread::sleep(Duration::from_secs(1));
    c.partition(cut).unwrap();
    // Long enough for several election timeouts of the cut-off node.
    std::thread::sleep(Duration::from_secs(4));
    let cut_term = term(c.node(cut));
    let healed = Instant::now();
    c.heal();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    let acked = writer.join().unwrap();

    let after_heal: Vec<Instant> =
        std::iter::once(healed).chain(acked.into_iter().filter(|t| *t > healed)).chain([stopped]).collect();
    let longest = after_heal.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    println!("{} writes acknowledged after the heal; longest stretch without one: {longest:?}", after_heal.len() - 2);
    // Calls that timed out while the link was cut are not delivered in a
    // burst when it heals (which HTTP/2 answers with a GOAWAY).
    for n in &c.nodes {
        let log = n.log();
        assert!(!log.contains("pending-accept"), "{log}");
    }
    assert_eq!(cut_term, before, "the cut-off node raised its term");
    assert_eq!(c.wait_leader(DEADLINE).unwrap(), leader, "the leader changed");
    assert_eq!(term(c.node(leader)), before, "an election happened");
    assert!(longest < Duration::from_millis(300), "writes stopped for {longest:?} after the heal");
    // The node that was cut off follows the leader again.
    c.node(cut).ctl(&["user", "add", "back"]).unwrap();
    wait_users(c.node(leader), &["back"]);
    assert_eq!(term(c.node(cut)), before);
}

/// A change built from what the node holds (a key's other fields, whether a
/// user is a member) catches up before it refuses: the key or the membership
/// may have been made through another node.
#[test]
fn given_changes_made_while_a_node_was_cut_off_when_built_on_through_it_then_it_catches_up_instead_of_refusing() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    let leader = c.wait_leader(DEADLINE).unwrap();
    let cut = (1..=3).find(|id| *id != leader).unwrap();
    let leader_addr = c.node(leader).http_addr;
    let on_leader = |method: &str, path: &str, token: &str, body: &str| {
        let (status, body) = http_request(leader_addr, method, path, token, body, DEADLINE).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let operator = c.node(leader).token.clone();
    on_leader("POST", "/api/v1/users", &operator, r#"{"name": "late"}"#);
    on_leader("POST", "/api/v1/users", &operator, r#"{"name": "lead"}"#);
    on_leader("POST", "/api/v1/groups", &operator, r#"{"name": "crew", "admin": "lead"}"#);
    on_leader("POST", "/api/v1/groups/crew/invite", &operator, r#"{"user": "late"}"#);
    let issued = on_leader("POST", "/api/v1/users/late/token", &operator, "");
    let late: serde_json::Value = serde_json::from_str(&issued).unwrap();
    let late = late["token"].as_str().unwrap().to_string();
    wait_users(c.node(cut), &["late", "lead"]);
    // The cut-off node knows the invitation, not yet that it was accepted.
    wait_for("the invitation on the node to cut off", DEADLINE, || {
        c.node(cut).ctl(&["group", "list"]).ok().filter(|g| g.contains("crew") && g.contains("late"))
    })
    .unwrap();

    c.partition(cut).unwrap();
    c.node(leader).ctl(&["key", "add", "--owner", "late", "--ident", "late-k", "--publish", "a"]).unwrap();
    on_leader("POST", "/api/v1/groups/crew/join", &late, "{}");
    // Both asked of the cut-off node at once, each waiting for it to catch up.
    let (addr, token) = (c.node(cut).http_addr, c.node(cut).token.clone());
    let ask = |method: &'static str, path: &'static str, body: &'static str| {
        let token = token.clone();
        std::thread::spawn(move || http_request(addr, method, path, &token, body, DEADLINE).unwrap())
    };
    let key = ask("PUT", "/api/v1/keys/late-k", r#"{"publish": ["b"]}"#);
    let admin = ask("POST", "/api/v1/groups/crew/admins", r#"{"user": "late"}"#);
    std::thread::sleep(Duration::from_secs(1));
    c.heal();
    let (status, body) = key.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let keys = c.node(leader).ctl(&["--consistent", "key", "list"]).unwrap();
    assert!(keys.contains(r#""publish":["b"]"#), "{keys}");
    let (admin_status, admin_body) = admin.join().unwrap();
    assert_eq!(admin_status, 200, "{admin_body}");
}

#[test]
fn given_four_nodes_started_at_once_with_join_then_all_become_voters_without_a_restart() {
    let c = Cluster::start(&hpfriends_bin(), 1, &[]).unwrap();
    let member = c.nodes[0].cluster_addr.to_string();
    let net = c.nodes[0].cluster_addr.ip().to_string();
    let net = net.rsplit_once('.').unwrap().0.to_string();
    let started = Instant::now();
    let joiners: Vec<_> = (2..=5)
        .map(|id| {
            let (dir, member, net) = (c.dir.path().join(format!("node{id}")), member.clone(), net.clone());
            std::thread::spawn(move || {
                let id = id.to_string();
                let args =
                    ["--node-id", &id, "--cluster-secret", hpfriends_cluster_tests::CLUSTER_SECRET, "--join", &member];
                NodeProcess::start_on(
                    &hpfriends_bin(),
                    &dir,
                    &format!("{net}.{}", 10 + id.parse::<u32>().unwrap()),
                    &args,
                )
            })
        })
        .collect();
    let nodes: Vec<NodeProcess> = joiners.into_iter().map(|j| j.join().unwrap().expect("every node joins")).collect();
    println!("four concurrent joins done in {:?}", started.elapsed());
    let status = c.nodes[0].status().unwrap();
    let voters = status["nodes"].as_array().unwrap().iter().filter(|n| n["voter"] == true).count();
    assert_eq!(voters, 5, "{status}");
    for n in &nodes {
        assert!(!n.log().contains("membership_refused"), "{}", n.log());
    }
}

#[test]
fn given_an_apply_of_megabytes_then_each_follower_is_sent_its_entry_once() {
    // One Raft entry of about 5 MB: more than openraft's 100 ms per
    // AppendEntries lets a node encode, send and store, so every try used
    // to start over (an apply took 4.7-10 s on three nodes against 1.9 s
    // on one). Now a try that runs out waits for the send in flight.
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    let leader = c.wait_leader(DEADLINE).unwrap();
    let keys: Vec<serde_json::Value> = (0..60_000)
        .map(|i| serde_json::json!({"ident": format!("big-{i}"), "secret": format!("big-secret-{i}"), "owner": "big", "publish": ["c"]}))
        .collect();
    let declaration = serde_json::json!({"users": ["big"], "keys": keys}).to_string();
    let sent = |c: &mut Cluster| metric(c.node(leader).http_addr, "hpfriends_raft_entries_sent_bytes").unwrap();
    let before = sent(&mut c);
    c.node(leader).apply(&declaration).unwrap();
    for n in &c.nodes {
        let keys = n.ctl(&["--consistent", "key", "list"]).unwrap();
        assert!(keys.contains("big-59999"), "node at {} has the apply", n.http_addr);
    }
    let sent = sent(&mut c) - before;
    println!("declaration {} bytes; entries sent to the two followers {sent} bytes", declaration.len());
    // The entry is the declaration's keys in the log's JSON (about 1.4 times
    // its size): each follower got it at least once and at most twice, where
    // starting over every 100 ms sent it dozens of times.
    let entries = sent / declaration.len() as f64;
    assert!((2.0..6.0).contains(&entries), "{sent} bytes sent: {entries:.1} times the declaration");
}
