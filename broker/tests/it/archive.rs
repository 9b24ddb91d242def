//! The archive read back (issue 27): `GET /api/v1/messages` gives each user
//! exactly what docs/sharing.md "The past" says, pages without gaps or
//! duplicates, refuses bad input clearly, and keeps what retention allows.

use std::time::Duration;

use hpfriends_broker::config::Span;
use hpfriends_graph::{AuthKey, Command, ShareKind, Target};

use crate::common::{start_node, wait_for, Client, Node};

/// `GET /api/v1/messages?query` as `token`: the status, the lines and the Link header.
async fn messages(n: &Node, token: &str, query: &str) -> (u16, Vec<serde_json::Value>, Option<String>, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{}/api/v1/messages?{query}", n.running.http_addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let link = response.headers().get("link").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let lines = match status {
        200 => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        _ => vec![],
    };
    (status, lines, link, text)
}

fn payloads(lines: &[serde_json::Value]) -> Vec<String> {
    lines.iter().map(|l| l["payload"].as_str().unwrap().to_string()).collect()
}

fn key(ident: &str, owner: &str) -> Command {
    Command::AddKey(AuthKey {
        ident: ident.into(),
        secret: "s".into(),
        owner: owner.into(),
        publish: vec!["c".into()],
        subscribe: vec!["c".into()],
        resume: false,
    })
}

fn offer(from: &str, to: Target, kind: ShareKind) -> Command {
    Command::AddShare { from: from.into(), to, channel: "c".into(), kind, with_history: false }
}

fn accept(from: &str, to: Target) -> Command {
    Command::AcceptShare { from: from.into(), to, channel: "c".into() }
}

fn user(name: &str) -> Target {
    Target::User(name.into())
}

/// Publishes as jojo and waits until jojo reads it back from the archive, so
/// the next change of the graph comes after it.
async fn publish_as_jojo(n: &Node, jojo: &mut Client, token: &str, payload: &str) {
    jojo.publish("c", payload.as_bytes()).await;
    wait_for(|| async {
        payloads(&messages(n, token, "channel=c&limit=10000").await.1).contains(&payload.to_string()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn given_shares_made_and_removed_over_time_then_each_user_replays_what_the_rule_allows() {
    let n = start_node(|_| {}).await;
    for name in ["jojo", "mark", "alice", "eve", "bob", "carol"] {
        n.write(Command::AddUser { name: name.into() }).await;
    }
    n.write(key("jojo-k", "jojo")).await;
    let mut tokens = std::collections::HashMap::new();
    for name in ["jojo", "mark", "alice", "eve", "bob", "carol"] {
        tokens.insert(name, n.user_token(name).await);
    }
    let jojo_token = &tokens["jojo"];
    let mut jojo = Client::login(n.running.hpfeeds_addr, "jojo-k", "s").await;

    publish_as_jojo(&n, &mut jojo, jojo_token, "before-any-share").await;
    n.write(offer("jojo", user("mark"), ShareKind::Shares)).await;
    publish_as_jojo(&n, &mut jojo, jojo_token, "offered").await;
    n.write(accept("jojo", user("mark"))).await;
    publish_as_jojo(&n, &mut jojo, jojo_token, "accepted").await;
    n.write(offer("mark", user("alice"), ShareKind::SharesAll)).await;
    n.write(accept("mark", user("alice"))).await;
    publish_as_jojo(&n, &mut jojo, jojo_token, "relayed").await;
    n.write(offer("jojo", user("eve"), ShareKind::Shares)).await;
    n.write(accept("jojo", user("eve"))).await;
    publish_as_jojo(&n, &mut jojo, jojo_token, "to-eve").await;
    n.write(Command::RemoveShare { from: "jojo".into(), to: user("eve"), channel: "c".into() }).await;
    n.write(Command::AddGroup { name: "cert".into(), creator: "mark".into() }).await;
    n.write(offer("jojo", Target::Group("cert".into()), ShareKind::Shares)).await;
    n.write(accept("jojo", Target::Group("cert".into()))).await;
    n.write(Command::InviteMember { group: "cert".into(), user: "bob".into() }).await;
    publish_as_jojo(&n, &mut jojo, jojo_token, "bob-invited").await;
    n.write(Command::AcceptMembership { group: "cert".into(), user: "bob".into() }).await;
    publish_as_jojo(&n, &mut jojo, jojo_token, "bob-joined").await;
    // Offered with its history, after everything: carol reads all of it.
    let with_history = Command::AddShare {
        from: "jojo".into(),
        to: user("carol"),
        channel: "c".into(),
        kind: ShareKind::Shares,
        with_history: true,
    };
    n.write(with_history).await;
    n.write(accept("jojo", user("carol"))).await;

    let all = ["before-any-share", "offered", "accepted", "relayed", "to-eve", "bob-invited", "bob-joined"];
    let expected: [(&str, &[&str]); 6] = [
        ("jojo", &all),
        // An offer carries nothing, in the past as now.
        ("mark", &all[2..]),
        // Through mark's relay, from when it was accepted.
        ("alice", &all[3..]),
        // A removed share closes the past too.
        ("eve", &[]),
        // A member from when they joined, not from the invitation.
        ("bob", &all[6..]),
        // A share with its history opens the past.
        ("carol", &all),
    ];
    for (reader, want) in expected {
        let (status, lines, _, text) = messages(&n, &tokens[reader], "channel=c").await;
        assert_eq!(status, 200, "{reader}: {text}");
        assert_eq!(payloads(&lines), want.to_vec(), "what {reader} replays");
    }
    // Each line: the fields the API promises.
    let (_, lines, _, _) = messages(&n, jojo_token, "channel=c&limit=1").await;
    let line = &lines[0];
    assert_eq!(line["ident"], "jojo-k");
    assert_eq!(line["channel"], "c");
    assert_eq!(line["node"], 1);
    assert_eq!(line["payload_b64"], "YmVmb3JlLWFueS1zaGFyZQ==");
    let time = line["time"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok() && time.len() == "2026-12-07T09:00:00.000000Z".len(), "{time}");
    // The operator reads no one's messages.
    let (status, _, _, text) = messages(&n, &n.running.operator_token, "channel=c").await;
    assert_eq!(status, 403, "{text}");
}

#[tokio::test]
async fn given_many_messages_then_pages_follow_each_other_and_bad_queries_are_refused() {
    let n = start_node(|_| {}).await;
    n.write(Command::AddUser { name: "jojo".into() }).await;
    n.write(key("jojo-k", "jojo")).await;
    n.write(key("jojo-2", "jojo")).await;
    let token = n.user_token("jojo").await;
    let mut one = Client::login(n.running.hpfeeds_addr, "jojo-k", "s").await;
    let mut two = Client::login(n.running.hpfeeds_addr, "jojo-2", "s").await;
    for i in 0..25 {
        one.publish("c", format!("m{i:02}").as_bytes()).await;
    }
    two.publish("c", b"\xff\x00binary").await;
    wait_for(|| async { (messages(&n, &token, "channel=c").await.1.len() == 26).then_some(()) }).await;

    // Pages of 10: each links to the next, together they are all, once each, in order.
    let mut seen = Vec::new();
    let mut query = "channel=c&publisher=jojo-k&limit=10".to_string();
    loop {
        let (status, lines, link, text) = messages(&n, &token, &query).await;
        assert_eq!(status, 200, "{text}");
        assert!(lines.len() <= 10);
        seen.extend(payloads(&lines));
        let Some(link) = link else { break };
        let path = link.strip_prefix("</api/v1/messages?").unwrap().split_once(">; rel=\"next\"").unwrap().0;
        query = path.to_string();
    }
    let want: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    assert_eq!(seen, want);
    // A payload that is not UTF-8 comes as base64 only.
    let (_, lines, _, _) = messages(&n, &token, "channel=c&publisher=jojo-2").await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["payload_b64"], "/wBiaW5hcnk=");
    assert!(lines[0].get("payload").is_none());
    // A time window: nothing after a time in the future, everything before it.
    let (_, lines, _, _) = messages(&n, &token, "channel=c&since=2999-01-01T00:00:00Z").await;
    assert!(lines.is_empty());
    let (_, lines, _, _) = messages(&n, &token, "channel=c&until=2999-01-01").await;
    assert_eq!(lines.len(), 26);

    for (query, status, words) in [
        ("channel=c&cursor=zz", 400, "cursor"),
        ("channel=c&since=2026-12-02&until=2026-12-01", 400, "since is after until"),
        ("channel=c&since=yesterday", 400, "since must be a time"),
        ("channel=c&limit=0", 400, "limit must be 1 to 10000"),
        ("channel=c&limit=1000000", 400, "limit must be 1 to 10000"),
        ("channel=nobody.lists.this", 404, "unknown channel"),
        ("channel=a%07b", 400, "control characters"),
        ("channel=", 400, "must not be empty"),
        ("since=1", 400, "channel"),
    ] {
        let (got, _, _, text) = messages(&n, &token, query).await;
        assert_eq!(got, status, "{query}: {text}");
        assert!(text.contains(words), "{query}: {text}");
    }
    let anonymous = reqwest::get(format!("http://{}/api/v1/messages?channel=c", n.running.http_addr)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn given_retention_by_age_and_by_bytes_then_the_oldest_go_first() {
    let by_age = start_node(|c| c.archive_keep = Span(Duration::from_secs(2))).await;
    let by_bytes = start_node(|c| c.archive_max_bytes = 1_000).await;
    for n in [&by_age, &by_bytes] {
        n.write(Command::AddUser { name: "jojo".into() }).await;
        n.write(key("jojo-k", "jojo")).await;
    }
    let age_token = by_age.user_token("jojo").await;
    let bytes_token = by_bytes.user_token("jojo").await;

    let mut c = Client::login(by_age.running.hpfeeds_addr, "jojo-k", "s").await;
    c.publish("c", b"old").await;
    wait_for(|| async { (messages(&by_age, &age_token, "channel=c").await.1.len() == 1).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.publish("c", b"new").await;
    wait_for(|| async { (payloads(&messages(&by_age, &age_token, "channel=c").await.1) == ["new"]).then_some(()) })
        .await;

    // Archived one at a time (each its own chunk), a message of 100 bytes
    // counts about 290 against archive_max_bytes: the newest three or so stay.
    let mut c = Client::login(by_bytes.running.hpfeeds_addr, "jojo-k", "s").await;
    let mut kept = Vec::new();
    for i in 0..20 {
        let payload = format!("{i:02}{}", "x".repeat(98));
        c.publish("c", payload.as_bytes()).await;
        kept = wait_for(|| async {
            let got = payloads(&messages(&by_bytes, &bytes_token, "channel=c").await.1);
            got.contains(&payload).then_some(got)
        })
        .await;
    }
    let numbers: Vec<usize> = kept.iter().map(|p| p[..2].parse().unwrap()).collect();
    assert!(numbers.len() < 10 && numbers.len() >= 2, "{numbers:?}");
    assert_eq!(numbers, (20 - numbers.len()..20).collect::<Vec<_>>(), "the newest kept, in order");
}

#[tokio::test]
async fn given_the_archive_off_then_messages_are_not_kept_and_the_api_says_so() {
    let n = start_node(|c| c.archive = false).await;
    n.write(Command::AddUser { name: "jojo".into() }).await;
    n.write(key("jojo-k", "jojo")).await;
    let token = n.user_token("jojo").await;
    let (status, _, _, text) = messages(&n, &token, "channel=c").await;
    assert_eq!(status, 404);
    assert!(text.contains("archive = false"), "{text}");
    assert!(!n.running_data_dir().join("archive").exists());
}

#[tokio::test]
async fn given_a_follower_while_messages_are_published_then_each_comes_once_and_in_order_across_the_seam() {
    let n = start_node(|_| {}).await;
    n.write(Command::AddUser { name: "jojo".into() }).await;
    n.write(key("jojo-k", "jojo")).await;
    let token = n.user_token("jojo").await;
    let mut c = Client::login(n.running.hpfeeds_addr, "jojo-k", "s").await;
    for i in 0..300 {
        c.publish("c", format!("m{i:03}").as_bytes()).await;
    }
    // Follow at once, while the first ones are still being archived and more come.
    let url = format!("http://{}/api/v1/messages?channel=c&follow=true", n.running.http_addr);
    let mut response = reqwest::Client::new().get(url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    for i in 300..600 {
        c.publish("c", format!("m{i:03}").as_bytes()).await;
    }
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while text.lines().count() < 600 {
            let chunk = response.chunk().await.unwrap().expect("the answer goes on");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(read.is_ok(), "600 messages within 10 s, got {}", text.lines().count());
    let got: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..600).map(|i| format!("m{i:03}")).collect();
    assert_eq!(got, want, "each once, in order");

    let (status, _, _, text) = messages(&n, &token, "channel=c&follow=true&until=2999-01-01").await;
    assert_eq!(status, 400, "{text}");
}

/// `PUT /api/v1/archive/keeps` as `token`: the status and the body.
async fn set_keep(n: &Node, token: &str, body: serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .put(format!("http://{}/api/v1/archive/keeps", n.running.http_addr))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_owner_s_keep_then_off_hides_and_deletes_their_messages_and_a_shorter_keep_hides_the_older() {
    let n = start_node(|_| {}).await;
    for c in [
        Command::AddUser { name: "jojo".into() },
        Command::AddUser { name: "mark".into() },
        key("jojo-key", "jojo"),
        key("mark-key", "mark"),
        offer("jojo", user("mark"), ShareKind::Shares),
        accept("jojo", user("mark")),
    ] {
        n.write(c).await;
    }
    let (jojo_token, mark_token) = (n.user_token("jojo").await, n.user_token("mark").await);
    let mut jojo = Client::login(n.running.hpfeeds_addr, "jojo-key", "s").await;
    let mut mark = Client::login(n.running.hpfeeds_addr, "mark-key", "s").await;
    publish_as_jojo(&n, &mut jojo, &jojo_token, "jojo-1").await;
    mark.publish("c", b"mark-1").await;
    wait_for(|| async { (n.metric("hpfriends_archive_messages").await == 2.0).then_some(()) }).await;

    // Only the owner (or the operator for them) sets it; bad values are refused, nothing changed.
    let (status, body) =
        set_keep(&n, &mark_token, serde_json::json!({"channel": "c", "keep": "off", "owner": "jojo"})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = set_keep(&n, &jojo_token, serde_json::json!({"channel": "c", "keep": "2 fortnights"})).await;
    assert_eq!(status, 400);
    assert!(body.contains("off, default or a time like 12h or 2d"), "{body}");
    assert!(n.running.node.read_graph(|g| g.keeps_of("jojo").is_empty()));

    // Off: at once nobody reads jojo's messages on c, and what was kept is deleted.
    assert_eq!(set_keep(&n, &jojo_token, serde_json::json!({"channel": "c", "keep": "off"})).await.0, 200);
    assert_eq!(payloads(&messages(&n, &mark_token, "channel=c").await.1), ["mark-1"], "mark's own, none of jojo's");
    assert_eq!(payloads(&messages(&n, &jojo_token, "channel=c").await.1), Vec::<String>::new(), "jojo's neither");
    wait_for(|| async { (n.metric("hpfriends_archive_messages").await == 1.0).then_some(()) }).await;
    // And what jojo publishes now is not kept, yet still delivered live.
    mark.subscribe("c").await;
    mark.sync("c", "mark-2").await;
    jojo.publish("c", b"jojo-2").await;
    assert_eq!(mark.next_publish().await.2, b"jojo-2");
    wait_for(|| async { (n.metric("hpfriends_archive_messages").await == 2.0).then_some(()) }).await;
    assert_eq!(payloads(&messages(&n, &mark_token, "channel=c").await.1), ["mark-1", "mark-2"]);

    // A keep of 2 s: jojo's messages show, then go once older than that.
    assert_eq!(set_keep(&n, &jojo_token, serde_json::json!({"channel": "c", "keep": "2s"})).await.0, 200);
    publish_as_jojo(&n, &mut jojo, &jojo_token, "jojo-4").await;
    assert_eq!(payloads(&messages(&n, &mark_token, "channel=c").await.1), ["mark-1", "mark-2", "jojo-4"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(payloads(&messages(&n, &mark_token, "channel=c").await.1), ["mark-1", "mark-2"], "older than 2 s");
    let list: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/archive/keeps", n.running.http_addr))
        .bearer_auth(&jojo_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["keeps"][0]["keep"], "2s", "{list}");
}
