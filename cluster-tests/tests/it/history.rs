//! The audit trail on a three-node cluster: scenarios 1–3 of docs/sharing.md
//! and a revocation, made by the operator and by users through different
//! nodes, recorded alike on every node, through snapshots, log compaction,
//! a restart and a node that joins afterwards.

use std::time::{SystemTime, UNIX_EPOCH};

use hpfriends_cluster_tests::{hpfriends_bin, wait_for, Cluster, NodeProcess, DEADLINE};
use serde_json::Value;

const CH: &str = "dionaea.captures";
const GEO: &str = "geoloc.events";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(node: &NodeProcess, user: &str) -> String {
    let issued: Value = serde_json::from_str(&node.ctl(&["user", "token", user]).unwrap()).unwrap();
    issued["token"].as_str().unwrap().to_string()
}

/// Waits until `node` accepts `token`: a token written through another node
/// is known here once this node has applied that entry (every request, a
/// consistent read too, checks the token first: docs/cli.md, `--consistent`).
fn known_on(node: &NodeProcess, token: &str) {
    wait_for("the token on another node", DEADLINE, || node.ctl_as(token, &["history", "--limit", "1"]).ok()).unwrap();
}

/// `ctl history` as JSON, oldest first, read after everything committed so far.
fn history(node: &NodeProcess, token: Option<&str>, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["--consistent", "history", "--limit", "10000"];
    args.extend(filters);
    let out = match token {
        Some(t) => node.ctl_as(t, &args),
        None => node.ctl(&args),
    }
    .unwrap();
    let page: Value = serde_json::from_str(&out).unwrap();
    let mut events = page["events"].as_array().unwrap().clone();
    events.reverse();
    events
}

/// (actor, node, what) of each event: what the history must say.
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let change = &e["change"];
            let fields =
                ["name", "group", "user", "creator", "from", "to", "channel", "ident", "owner", "publish", "subscribe"];
            let args: Vec<String> = fields
                .iter()
                .filter_map(|f| change.get(f))
                .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                .collect();
            let (actor, op) = (e["actor"].as_str().unwrap_or("operator"), change["op"].as_str().unwrap());
            format!("{actor} @{} {op} {}", e["node"], args.join(" "))
        })
        .collect()
}

#[test]
fn given_scenarios_and_a_revocation_then_every_node_records_the_same_history_through_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small-snapshots.toml");
    std::fs::write(&config, "snapshot_every_logs = 5\n").unwrap();
    let cfg = config.to_str().unwrap();
    let mut c = Cluster::start(&hpfriends_bin(), 3, &["--config", cfg]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let started = now();

    for user in ["jojo", "mark", "alice", "eve"] {
        c.nodes[0].ctl(&["user", "add", user]).unwrap();
    }
    let (jojo, mark, alice) = (token(&c.nodes[0], "jojo"), token(&c.nodes[0], "mark"), token(&c.nodes[0], "alice"));
    for (node, token) in [(1, &jojo), (2, &mark), (0, &alice)] {
        known_on(&c.nodes[node], token);
    }
    let share =
        |from: &str, to: &str, channel: &str| ["--from", from, "--to", to, "--channel", channel].map(String::from);
    let run = |node: usize, token: &str, verb: &[&str], args: &[String]| {
        let mut all: Vec<&str> = verb.to_vec();
        all.extend(args.iter().map(String::as_str));
        c.nodes[node].ctl_as(token, &all).unwrap();
    };
    // Scenario 1 (jojo through node 2, mark through node 3), 2 (relay to alice), 3 (a group).
    run(1, &jojo, &["share", "add", "--kind", "shares"], &share("jojo", "mark", CH));
    run(2, &mark, &["share", "accept"], &share("jojo", "mark", CH));
    run(2, &mark, &["share", "add", "--kind", "shares_all"], &share("mark", "alice", CH));
    run(0, &alice, &["share", "accept"], &share("mark", "alice", CH));
    run(2, &mark, &["group", "add", "honeynet"], &[]);
    run(2, &mark, &["group", "invite", "honeynet", "alice"], &[]);
    run(0, &alice, &["group", "join", "honeynet"], &[]);
    run(1, &jojo, &["share", "add", "--kind", "shares"], &share("jojo", "group:honeynet", GEO));
    run(2, &mark, &["share", "accept"], &share("jojo", "group:honeynet", GEO));
    run(
        1,
        &jojo,
        &[
            "key",
            "add",
            "--owner",
            "jojo",
            "--ident",
            "jojo-sensor",
            "--secret",
            "a-long-sensor-secret",
            "--publish",
            CH,
        ],
        &[],
    );
    // The revocation.
    run(1, &jojo, &["share", "remove"], &share("jojo", "mark", CH));

    let expected = [
        "operator @1 add_user jojo",
        "operator @1 add_user mark",
        "operator @1 add_user alice",
        "operator @1 add_user eve",
        "operator @1 set_user_token jojo",
        "operator @1 set_user_token mark",
        "operator @1 set_user_token alice",
        "jojo @2 add_share jojo mark dionaea.captures",
        "mark @3 accept_share jojo mark dionaea.captures",
        "mark @3 add_share mark alice dionaea.captures",
        "alice @1 accept_share mark alice dionaea.captures",
        "mark @3 add_group honeynet mark",
        "mark @3 invite_member honeynet alice",
        "alice @1 accept_membership honeynet alice",
        "jojo @2 add_share jojo group:honeynet geoloc.events",
        "mark @3 accept_share jojo group:honeynet geoloc.events",
        "jojo @2 add_key jojo-sensor jojo [\"dionaea.captures\"] []",
        "jojo @2 remove_share jojo mark dionaea.captures",
    ];
    let on_node1 = history(&c.nodes[0], None, &[]);
    assert_eq!(summary(&on_node1), expected);
    let finished = now();
    for e in &on_node1 {
        let at = e["at"].as_u64().unwrap();
        assert!((started..=finished).contains(&at), "{e}: not between {started} and {finished}");
    }
    assert!(!serde_json::to_string(&on_node1).unwrap().contains("a-long-sensor-secret"), "a secret was recorded");
    for (i, node) in c.nodes.iter().enumerate().skip(1) {
        assert_eq!(history(node, None, &[]), on_node1, "node {} records another history", i + 1);
    }

    // The log was compacted on every node: the history is not.
    for id in 1..=3 {
        wait_for("log compaction", DEADLINE, || c.node(id).status().ok()?["purged_index"].as_u64().filter(|p| *p > 5))
            .unwrap();
    }
    c.node(3).restart().unwrap();
    c.node(3).wait_ready().unwrap();
    assert_eq!(history(&c.nodes[2], None, &[]), on_node1, "after a restart from the snapshot");
    let node4 = c.add_node(&["--config", cfg]).unwrap();
    node4.wait_ready().unwrap();
    assert_eq!(history(node4, None, &[]), on_node1, "a node that joined after compaction (installed snapshot)");

    // What a user sees: only what touches them.
    let eve = token(&c.nodes[0], "eve");
    known_on(&c.nodes[1], &eve);
    assert_eq!(
        summary(&history(&c.nodes[1], Some(&eve), &[])),
        ["operator @1 add_user eve", "operator @1 set_user_token eve"]
    );
    let seen_by_alice = summary(&history(&c.nodes[2], Some(&alice), &[]));
    assert_eq!(
        seen_by_alice,
        [
            "operator @1 add_user alice",
            "operator @1 set_user_token alice",
            "mark @3 add_share mark alice dionaea.captures",
            "alice @1 accept_share mark alice dionaea.captures",
            "mark @3 add_group honeynet mark",
            "mark @3 invite_member honeynet alice",
            "alice @1 accept_membership honeynet alice",
            "jojo @2 add_share jojo group:honeynet geoloc.events",
            "mark @3 accept_share jojo group:honeynet geoloc.events",
        ]
    );
    // Filters: a channel; a user (the operator's view of jojo); a time window.
    let geo = summary(&history(&c.nodes[0], None, &["--channel", GEO]));
    assert_eq!(geo, &expected[14..16]);
    let about_mark = history(&c.nodes[0], Some(&alice), &["--user", "mark"]);
    assert!(
        summary(&about_mark).iter().all(|line| seen_by_alice.contains(line)),
        "a filter never widens a user's view"
    );
    let future = (finished + 3600).to_string();
    assert!(history(&c.nodes[0], None, &["--since", &future]).is_empty());
    let err = c.nodes[0].ctl(&["history", "--since", "yesterday"]).unwrap_err().to_string();
    assert!(err.contains("since must be a time like"), "{err}");
}

#[test]
fn given_a_retention_of_three_changes_then_every_node_keeps_the_same_newest_three() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    let err = c.nodes[0].ctl(&["history", "retention", "--max-events", "0"]).unwrap_err().to_string();
    assert!(err.contains("max_events must be 1 to"), "{err}");
    c.nodes[1].ctl(&["history", "retention", "--max-events", "3"]).unwrap();
    for user in ["a", "b", "c", "d", "e"] {
        c.nodes[0].ctl(&["user", "add", user]).unwrap();
    }
    let kept: Vec<String> = summary(&history(&c.nodes[0], None, &[]));
    assert_eq!(kept, ["operator @1 add_user c", "operator @1 add_user d", "operator @1 add_user e"]);
    for node in &c.nodes[1..] {
        assert_eq!(summary(&history(node, None, &[])), kept);
    }
    let user_token = token(&c.nodes[0], "a");
    let err = c.nodes[0].ctl_as(&user_token, &["history", "retention", "--max-events", "5"]).unwrap_err().to_string();
    assert!(err.contains("403"), "{err}");
}

/// One PUBLISH frame's size on the wire.
fn frame_len(ident: &str, channel: &str, payload: &str) -> u64 {
    (5 + 1 + ident.len() + 1 + channel.len() + payload.len()) as u64
}

/// A raw hpfeeds login with a wrong secret; returns the broker's ERROR text.
fn wrong_login(addr: std::net::SocketAddr, ident: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let mut info = vec![0u8; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize - 5];
    s.read_exact(&mut info).unwrap();
    let mut auth = vec![2u8, ident.len() as u8];
    auth.extend(ident.as_bytes());
    auth.extend([0u8; 20]); // not SHA-1(nonce ‖ secret)
    let mut frame = ((auth.len() + 4) as u32).to_be_bytes().to_vec();
    frame.extend(auth);
    s.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn given_real_clients_on_three_nodes_then_a_keys_activity_is_summed_over_the_cluster() {
    use hpfriends_cluster_tests::{publish, Subscriber};
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0]
        .apply(
            r#"{"users": ["alice", "bob"],
                "shares": [{"from": "alice", "to": "bob", "channel": "c", "kind": "shares"}],
                "keys": [{"ident": "alice-sensor", "secret": "alice-secret", "owner": "alice", "publish": ["c"]},
                         {"ident": "bob-reader", "secret": "bob-secret", "owner": "bob", "subscribe": ["c"]}]}"#,
        )
        .unwrap();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    let (n1, n2, n3) = (c.nodes[0].hpfeeds_addr, c.nodes[1].hpfeeds_addr, c.nodes[2].hpfeeds_addr);
    let readers = [n2, n3].map(|n| Subscriber::start(n, "bob-reader", "bob-secret", "c").unwrap());
    // Publish through node 1 until both readers see a marker, counting every publish.
    let mut sent: Vec<String> = Vec::new();
    let mut send = |payload: String| {
        publish(n1, "alice-sensor", "alice-secret", "c", &payload).unwrap();
        sent.push(payload);
    };
    for (i, reader) in readers.iter().enumerate() {
        let mut tries = 0;
        wait_for("the reader's subscription to be known on node 1", DEADLINE, || {
            tries += 1;
            send(format!("marker-{i}-{tries}"));
            std::thread::sleep(std::time::Duration::from_millis(100));
            reader.lines().iter().any(|l| l.contains(&format!("marker-{i}-"))).then_some(())
        })
        .unwrap();
    }
    for m in 0..3 {
        send(format!("event-{m}"));
    }
    for reader in &readers {
        reader.wait_for_line("b'event-2'").unwrap();
    }
    for _ in 0..3 {
        let error = wrong_login(n2, "alice-sensor");
        assert!(error.contains("Authentication failed for alice-sensor"), "{error}");
    }

    let stats =
        |ident: &str| -> Value { serde_json::from_str(&c.nodes[2].ctl(&["key", "stats", ident]).unwrap()).unwrap() };
    let alice = stats("alice-sensor");
    assert_eq!(alice["published"], sent.len() as u64, "{alice}");
    let bytes: u64 = sent.iter().map(|p| frame_len("alice-sensor", "c", p)).sum();
    assert_eq!(alice["published_bytes"], bytes, "{alice}");
    assert!(alice["last_publish"].as_u64().is_some(), "{alice}");
    assert_eq!(alice["connections"], serde_json::json!([]), "every publish client has gone: {alice}");
    let failed = alice["failed_logins"].as_array().unwrap();
    assert_eq!(failed.len(), 3, "{alice}");
    for f in failed {
        assert_eq!(f["node"], 2, "{f}");
        assert_eq!(f["reason"], "wrong secret", "{f}");
        assert!(f["remote"].as_str().unwrap().starts_with("127."), "{f}");
    }
    assert_eq!(alice["unanswered"], serde_json::json!([]));

    // What the readers printed is what the nodes counted as delivered to bob-reader.
    let received: Vec<String> = readers
        .iter()
        .flat_map(|r| r.lines())
        .filter_map(|l| l.split_once("by alice-sensor: b'").map(|(_, rest)| rest.trim_end_matches('\'').to_string()))
        .collect();
    let bob = stats("bob-reader");
    assert_eq!(bob["delivered"], received.len() as u64, "{bob} vs {received:?}");
    let bytes: u64 = received.iter().map(|p| frame_len("alice-sensor", "c", p)).sum();
    assert_eq!(bob["delivered_bytes"], bytes, "{bob}");
    let nodes: Vec<u64> = bob["connections"].as_array().unwrap().iter().map(|c| c["node"].as_u64().unwrap()).collect();
    assert_eq!(nodes, [2, 3], "{bob}");
    assert!(bob["connections"].as_array().unwrap().iter().all(|c| c["channels"] == serde_json::json!(["c"])), "{bob}");

    // A user sees only their own keys; a stopped node is named, not left out.
    let bob_token = token(&c.nodes[0], "bob");
    let err = c.nodes[0].ctl_as(&bob_token, &["key", "stats", "alice-sensor"]).unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
    c.node(3).kill();
    let partial = stats_on(&c.nodes[0], "bob-reader");
    assert_eq!(partial["unanswered"][0]["node"], 3, "{partial}");
}

fn stats_on(node: &NodeProcess, ident: &str) -> Value {
    serde_json::from_str(&node.ctl(&["key", "stats", ident]).unwrap()).unwrap()
}
