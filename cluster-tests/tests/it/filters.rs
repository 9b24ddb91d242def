//! Filtered shares across nodes with the real hpfeeds client (docs/sharing.md,
//! "Filters"): node 1 forwards the original once, node 3 applies the filters
//! of its own readers' paths.

use hpfriends_cluster_tests::{hpfriends_bin, publish, sync, Cluster, Subscriber, DEADLINE};

const CH: &str = "cowrie.sessions";

const GRAPH: &str = r#"{
  "users": ["jojo", "mark", "alice"],
  "shares": [
    {"from": "jojo", "to": "mark", "channel": "cowrie.sessions", "kind": "shares",
     "filter": {"where": "payload.eventid == \"cowrie.login.success\"", "redact": ["/dst_ip"]}},
    {"from": "jojo", "to": "alice", "channel": "cowrie.sessions", "kind": "shares"}
  ],
  "keys": [
    {"ident": "jojo-sensor", "secret": "j", "owner": "jojo", "publish": ["cowrie.sessions"]},
    {"ident": "mark-key", "secret": "m", "owner": "mark", "publish": ["cowrie.sessions"], "subscribe": ["cowrie.sessions"]},
    {"ident": "alice-key", "secret": "a", "owner": "alice", "publish": ["cowrie.sessions"], "subscribe": ["cowrie.sessions"]}
  ]
}"#;

fn line(payload: &str) -> String {
    format!("publish to {CH} by jojo-sensor: b'{payload}'")
}

#[test]
fn given_a_filtered_and_an_unfiltered_reader_on_node_3_then_each_gets_its_version_of_what_node_1_published() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].apply(GRAPH).unwrap();
    for n in &c.nodes {
        n.wait_ready().unwrap();
    }
    let (n1, n3) = (c.nodes[0].hpfeeds_addr, c.nodes[2].hpfeeds_addr);
    let mark = Subscriber::start(n3, "mark-key", "m", CH).unwrap();
    let alice = Subscriber::start(n3, "alice-key", "a", CH).unwrap();
    sync(n1, &mark, "mark-key", "m", CH, "mark-ready").unwrap();
    sync(n1, &alice, "alice-key", "a", CH, "alice-ready").unwrap();

    let sent = [
        r#"{"eventid": "cowrie.login.success", "dst_ip": "10.0.0.2", "n": 1}"#,
        r#"{"eventid": "cowrie.login.failed", "dst_ip": "10.0.0.2", "n": 2}"#,
        "not json 3",
        r#"{"eventid": "cowrie.login.success", "dst_ip": "10.0.0.3", "n": 4}"#,
    ];
    for p in sent {
        publish(n1, "jojo-sensor", "j", CH, p).unwrap();
    }
    // alice: the originals, byte for byte.
    for p in sent {
        alice.wait_for_line(&line(p)).unwrap();
    }
    // mark: the successful logins without dst_ip, and nothing else before his marker.
    for n in [1, 4] {
        mark.wait_for_line(&line(&format!(r#"{{"eventid":"cowrie.login.success","n":{n}}}"#))).unwrap();
    }
    sync(n1, &mark, "mark-key", "m", CH, "mark-after").unwrap();
    let got: Vec<String> = mark
        .lines()
        .iter()
        .filter_map(|l| l.find("publish to").map(|at| l[at..].to_string()))
        .filter(|l| l.contains("by jojo-sensor"))
        .collect();
    assert_eq!(
        got,
        [1, 4].map(|n| line(&format!(r#"{{"eventid":"cowrie.login.success","n":{n}}}"#))),
        "mark got exactly the filtered versions"
    );
    assert!(!mark.saw("10.0.0."), "no unfiltered copy reached mark");
}
