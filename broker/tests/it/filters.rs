//! Filters on shares (docs/sharing.md, "Filters") on a real node: each
//! subscriber gets its own version, the others the frame as published;
//! bad filters are 400s that change nothing; failures are counted.

use serde_json::{json, Value};

use crate::common::{start_node, Client, Node};

const GRAPH: &str = r#"{
    "users": ["jojo", "mark", "alice"],
    "shares": [
        {"from": "jojo", "to": "mark",  "channel": "cowrie.sessions", "kind": "shares"},
        {"from": "jojo", "to": "alice", "channel": "cowrie.sessions", "kind": "shares"}
    ],
    "keys": [
        {"ident": "jojo-sensor", "secret": "s", "owner": "jojo", "publish": ["cowrie.sessions"]},
        {"ident": "mark-reader", "secret": "s", "owner": "mark", "subscribe": ["cowrie.sessions"]},
        {"ident": "alice-reader", "secret": "s", "owner": "alice", "subscribe": ["cowrie.sessions"]}
    ]}"#;

async fn post(n: &Node, path: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", n.running.http_addr))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn set_filter(n: &Node, token: &str, filter: Value) -> (u16, Value) {
    post(n, "/api/v1/shares/filter", token, json!({"to": "mark", "channel": "cowrie.sessions", "filter": filter})).await
}

async fn subscribed(n: &Node, ident: &str) -> Client {
    let mut c = Client::login(n.running.hpfeeds_addr, ident, "s").await;
    c.subscribe("cowrie.sessions").await;
    c
}

/// A series with labels, as `/metrics` gives it now (0 when absent).
async fn labelled(n: &Node, name: &str, labels: &[&str]) -> f64 {
    let url = format!("http://{}/metrics", n.running.http_addr);
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)));
    line.map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn given_a_filtered_and_an_unfiltered_share_then_each_subscriber_gets_its_version_and_the_other_the_original_bytes(
) {
    let n = start_node(|_| {}).await;
    n.declare(GRAPH).await;
    let jojo = n.user_token("jojo").await;
    let filter = json!({
        "where": "payload.eventid == \"cowrie.login.success\" && !ip(payload.src_ip).in_cidr(\"192.0.2.0/24\")",
        "redact": ["/dst_ip"],
        "pseudonymize": ["/src_ip"],
    });
    let (status, body) = set_filter(&n, &jojo, filter).await;
    assert_eq!(status, 200, "{body}");
    let mut mark = subscribed(&n, "mark-reader").await;
    let mut alice = subscribed(&n, "alice-reader").await;
    let mut sensor = Client::login(n.running.hpfeeds_addr, "jojo-sensor", "s").await;
    let sent = [
        r#"{"eventid": "cowrie.login.success", "src_ip": "198.51.100.7", "dst_ip": "10.0.0.2", "session": "a1"}"#,
        r#"{"eventid": "cowrie.login.failed", "src_ip": "198.51.100.7", "dst_ip": "10.0.0.2"}"#,
        r#"{"eventid": "cowrie.login.success", "src_ip": "192.0.2.77", "dst_ip": "10.0.0.2"}"#,
        "not json",
        r#"{"eventid": "cowrie.login.success", "src_ip": "198.51.100.7", "dst_ip": "10.0.0.3", "session": "b2"}"#,
    ];
    for p in sent {
        sensor.publish("cowrie.sessions", p.as_bytes()).await;
    }
    // alice: every frame as published, byte for byte.
    for p in sent {
        assert_eq!(alice.next_publish().await, ("jojo-sensor".into(), "cowrie.sessions".into(), p.as_bytes().to_vec()));
    }
    // mark: the two successful logins from outside 192.0.2.0/24, rewritten,
    // in frames that still name the sensor and the channel.
    let mut versions = Vec::new();
    for _ in 0..2 {
        let (ident, channel, payload) = mark.next_publish().await;
        assert_eq!((ident.as_str(), channel.as_str()), ("jojo-sensor", "cowrie.sessions"));
        versions.push(serde_json::from_slice::<Value>(&payload).unwrap());
    }
    let token = versions[0]["src_ip"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 22, "a pseudonym, not the address: {token}");
    assert_eq!(versions[0], json!({"eventid": "cowrie.login.success", "src_ip": token, "session": "a1"}));
    assert_eq!(versions[1], json!({"eventid": "cowrie.login.success", "src_ip": token, "session": "b2"}));
    let count = |outcome: &'static str| {
        let label = format!("outcome=\"{outcome}\"");
        let n = &n;
        async move { labelled(n, "hpfriends_share_filter_messages_total", &["to=\"mark\"", &label]).await }
    };
    assert_eq!((count("passed").await, count("dropped").await, count("error").await), (2.0, 2.0, 1.0));
    // Cleared: mark gets what comes next as published, and got nothing else before.
    let (status, body) = set_filter(&n, &jojo, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    sensor.publish("cowrie.sessions", b"after the filter was cleared").await;
    assert_eq!(mark.next_publish().await.2, b"after the filter was cleared");
}

#[tokio::test]
async fn given_bad_filters_then_each_is_a_400_naming_the_problem_and_nothing_changes() {
    let n = start_node(|_| {}).await;
    n.declare(GRAPH).await;
    let jojo = n.user_token("jojo").await;
    let mark = n.user_token("mark").await;
    let before = n.running.node.read_graph(|g| g.clone());
    let cases = [
        (json!({"where": "payload.eventid == "}), "syntax error at line 1, column"),
        (json!({"where": "frobnicate(payload)"}), "unknown function \"frobnicate\""),
        (json!({"where": "x".repeat(100_000)}), "100000 bytes, at most 4096"),
        (json!({"redact": ["src_ip"]}), "a JSON Pointer starts with \"/\""),
        (json!({"pseudonymize": ["/a~9"]}), "\"~\" must be followed by 0 or 1"),
        (json!({"where": "payload.a.matches(\"(a+)\\\\1\")"}), "no backreferences or look-around"),
    ];
    for (filter, problem) in cases {
        let (status, body) = set_filter(&n, &jojo, filter.clone()).await;
        assert_eq!((status, &body["error"]["code"]), (400, &json!("invalid_filter")), "{filter}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(problem), "{filter}: {body}");
    }
    // A filter that is not one (an unknown part) is a malformed body, as everywhere in the API.
    let (status, body) = set_filter(&n, &jojo, json!({"where": "payload.a", "colour": "red"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown field `colour`"), "{body}");
    // Offering a share with a bad filter writes neither the share nor the filter.
    let offer = json!({"to": "alice", "channel": "other", "kind": "shares", "filter": {"where": "nope("}});
    let (status, body) = post(&n, "/api/v1/shares", &jojo, offer).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_filter", "{body}");
    // Only the sender sets a share's filter.
    let theirs = json!({"from": "jojo", "to": "mark", "channel": "cowrie.sessions", "filter": {"where": "true"}});
    let (status, body) = post(&n, "/api/v1/shares/filter", &mark, theirs).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(n.running.node.read_graph(|g| g.clone()), before);
}

#[tokio::test]
async fn given_a_filter_that_fails_on_every_message_then_nothing_is_delivered_and_one_counter_counts_them() {
    let n = start_node(|_| {}).await;
    n.declare(GRAPH).await;
    let jojo = n.user_token("jojo").await;
    let (status, body) = set_filter(&n, &jojo, json!({"where": "payload.missing.field == 1"})).await;
    assert_eq!(status, 200, "{body}");
    let mark = subscribed(&n, "mark-reader").await;
    let mut alice = subscribed(&n, "alice-reader").await;
    let mut sensor = Client::login(n.running.hpfeeds_addr, "jojo-sensor", "s").await;
    for i in 0..1000 {
        sensor.publish("cowrie.sessions", format!(r#"{{"n": {i}}}"#).as_bytes()).await;
    }
    for i in 0..1000 {
        assert_eq!(alice.next_publish().await.2, format!(r#"{{"n": {i}}}"#).as_bytes());
    }
    let errors = labelled(&n, "hpfriends_share_filter_messages_total", &["to=\"mark\"", "outcome=\"error\""]).await;
    assert_eq!(errors, 1000.0);
    assert_eq!(mark.unread(), 0, "mark got none of them");
}

/// The payloads `token`'s user reads back of the channel (a line that is not a message as it is).
async fn replayed(n: &Node, token: &str) -> Vec<String> {
    let url = format!("http://{}/api/v1/messages?channel=cowrie.sessions", n.running.http_addr);
    let text = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["payload"].as_str().unwrap_or(l).to_string())
        .collect()
}

#[tokio::test]
async fn given_a_filtered_share_then_the_archive_replays_the_reader_s_version_and_never_the_original() {
    let n = start_node(|_| {}).await;
    n.declare(GRAPH).await;
    let (jojo, mark, alice) = (n.user_token("jojo").await, n.user_token("mark").await, n.user_token("alice").await);
    let mut sensor = Client::login(n.running.hpfeeds_addr, "jojo-sensor", "s").await;
    // Published while the share had no filter, and after it got one: the
    // archive gives mark the filter of his path now, for both.
    sensor.publish("cowrie.sessions", br#"{"eventid": "a", "dst_ip": "10.0.0.2"}"#).await;
    let (status, body) =
        set_filter(&n, &jojo, json!({"where": "payload.eventid != \"b\"", "redact": ["/dst_ip"]})).await;
    assert_eq!(status, 200, "{body}");
    for p in [r#"{"eventid": "b", "dst_ip": "10.0.0.2"}"#, r#"{"eventid": "c", "dst_ip": "10.0.0.2"}"#, "not json"] {
        sensor.publish("cowrie.sessions", p.as_bytes()).await;
    }
    let originals = crate::common::wait_for(|| async {
        let got = replayed(&n, &alice).await;
        (got.len() == 4).then_some(got)
    })
    .await;
    assert_eq!(originals[0], r#"{"eventid": "a", "dst_ip": "10.0.0.2"}"#, "alice's share has no filter");
    assert_eq!(replayed(&n, &mark).await, [r#"{"eventid":"a"}"#, r#"{"eventid":"c"}"#]);
}

/// jojo (of GRAPH) signed in to the web app: the session's `Cookie` header.
async fn jojo_in_browser(n: &Node) -> String {
    let password_hash = hpfriends_broker::app::accounts::hash_password("correct horse battery").await.unwrap();
    n.write(hpfriends_graph::Command::SetPassword { name: "jojo".into(), password_hash, invitation: None, at: 1 })
        .await;
    crate::trust::jojo_session(n, 3600).await
}

#[tokio::test]
async fn given_the_shares_page_then_a_filter_is_set_checked_shown_and_cleared_there() {
    let n = start_node(|_| {}).await;
    n.declare(GRAPH).await;
    let session = jojo_in_browser(&n).await;
    let base = format!("http://{}", n.running.http_addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = || async { http.get(format!("{base}/shares")).header("cookie", &session).send().await.unwrap() };
    let shares = page().await.text().await.unwrap();
    let csrf = shares.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert!(shares.contains("action=\"/shares/filter\""), "each share has its filter form");
    let post = |condition: &'static str, redact: &'static str| {
        let form = [
            ("csrf", csrf.as_str()),
            ("from", "jojo"),
            ("to", "mark"),
            ("channel", "cowrie.sessions"),
            ("where", condition),
            ("redact", redact),
            ("pseudonymize", ""),
        ];
        http.post(format!("{base}/shares/filter")).header("cookie", &session).form(&form).send()
    };
    let filter = || {
        let to = hpfriends_graph::Target::User("mark".into());
        n.running
            .node
            .read_graph(|g| g.share("jojo", &to, "cowrie.sessions").unwrap().filter.as_ref().map(|f| f.spec().clone()))
    };
    // A syntax error: the page again, the message at the expression, nothing written.
    let refused = post("payload.eventid == ", "").await.unwrap();
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("id=\"where-error\"") && text.contains("syntax error at line 1"), "{text}");
    assert!(text.contains("payload.eventid == </textarea>"), "what was typed is kept");
    assert_eq!(filter(), None);
    // Saved: the share's row shows it.
    let saved = post("payload.eventid == \"x\"", "/dst_ip\n/password").await.unwrap();
    assert_eq!(saved.status(), 303);
    let want: hpfriends_graph::Filter =
        serde_json::from_value(json!({"where": "payload.eventid == \"x\"", "redact": ["/dst_ip", "/password"]}))
            .unwrap();
    assert_eq!(filter(), Some(want));
    let shown = page().await.text().await.unwrap();
    assert!(shown.contains("where payload.eventid == &quot;x&quot;; redact /dst_ip /password"), "{shown}");
    // The Audience says what each reader gets: mark the filtered version, alice everything.
    let audience = http.get(format!("{base}/audience?channel=cowrie.sessions")).header("cookie", &session).send();
    let audience = audience.await.unwrap().text().await.unwrap();
    let row =
        |name: &str| audience.split("<tr>").find(|r| r.contains(&format!("<td>{name}</td>"))).unwrap().to_string();
    assert!(row("mark").contains("what passes <code>jojo → mark: where payload.eventid"), "{}", row("mark"));
    assert!(row("alice").contains("everything"), "{}", row("alice"));
    // Emptied: cleared.
    assert_eq!(post("", "").await.unwrap().status(), 303);
    assert_eq!(filter(), None);
}
