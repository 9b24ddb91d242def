//! The HTTP API: authorization by token, and bad input answered with a 4xx
//! JSON error that changes nothing.

use crate::common::{start_node, Node};
use serde_json::{json, Value};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(n: &Node) -> Api {
        Api { base: format!("http://{}", n.running.http_addr), http: reqwest::Client::new() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(token), Some(&body.to_string())).await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Some(token), None).await
    }
}

async fn setup() -> (Node, Api, String) {
    let n = start_node(|_| {}).await;
    n.declare(
        r#"{"users": ["jojo", "mark", "eve"],
            "groups": [{"name": "honeynet", "admins": ["mark"], "members": ["mark"]}],
            "shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares", "accepted": false}],
            "keys": [{"ident": "jojo-sensor", "secret": "s", "owner": "jojo", "publish": ["c"]}]}"#,
    )
    .await;
    let api = Api::new(&n);
    let op = n.running.operator_token.clone();
    (n, api, op)
}

async fn user_token(api: &Api, op: &str, user: &str) -> String {
    let (status, body) = api.post(&format!("/api/v1/users/{user}/token"), op, json!({})).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

fn snapshot(n: &Node) -> hpfriends_graph::Graph {
    n.running.node.read_graph(|g| g.clone())
}

#[tokio::test]
async fn given_no_or_bad_token_then_401_with_json_error() {
    let (n, api, _) = setup().await;
    let (status, body) = api.send(reqwest::Method::GET, "/api/v1/users", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = api.get("/api/v1/users", "mark.0000").await;
    assert_eq!(status, 401);
    drop(n);
}

#[tokio::test]
async fn given_user_token_then_only_own_things_change_and_others_are_403() {
    let (n, api, op) = setup().await;
    let eve = user_token(&api, &op, "eve").await;
    let mark = user_token(&api, &op, "mark").await;
    let before = snapshot(&n);

    let forbidden = [
        ("/api/v1/shares", json!({"from": "jojo", "to": "eve", "channel": "c", "kind": "shares"})),
        ("/api/v1/shares/accept", json!({"from": "jojo", "to": "mark", "channel": "c"})),
        ("/api/v1/keys", json!({"ident": "k", "owner": "jojo", "publish": []})),
        ("/api/v1/groups/honeynet/invite", json!({"user": "eve"})),
        ("/api/v1/users", json!({"name": "mallory"})),
    ];
    for (path, body) in forbidden {
        let (status, reply) = api.post(path, &eve, body).await;
        assert_eq!(status, 403, "{path}: {reply}");
        assert_eq!(reply["error"]["code"], "forbidden");
    }
    let (status, _) = api.send(reqwest::Method::DELETE, "/api/v1/keys/jojo-sensor", Some(&eve), None).await;
    assert_eq!(status, 403);
    // Only the token hashes (set by the operator above) changed.
    let mut after = snapshot(&n);
    assert_eq!(after.keys().count(), before.keys().count());
    assert_eq!(after.share_count(), before.share_count());

    // What users may do: accept what is offered to them, manage their group, their own keys.
    let (s, r) = api.post("/api/v1/shares/accept", &mark, json!({"from": "jojo", "to": "mark", "channel": "c"})).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = api.post("/api/v1/groups/honeynet/invite", &mark, json!({"user": "eve"})).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = api.post("/api/v1/groups/honeynet/join", &eve, json!({})).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = api.post("/api/v1/keys", &eve, json!({"ident": "eve-1", "subscribe": ["c"]})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["key"]["owner"], "eve");
    assert_eq!(r["key"]["secret"].as_str().unwrap().len(), 32, "a secret is generated");
    after = snapshot(&n);
    assert!(after.share("jojo", &hpfriends_graph::Target::User("mark".into()), "c").unwrap().accepted);
    assert_eq!(after.group("honeynet").unwrap().members.get("eve"), Some(&true));
    // A user lists only their own keys.
    let (_, keys) = api.get("/api/v1/keys", &eve).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn given_bad_input_then_4xx_says_what_and_nothing_changes() {
    let (n, api, op) = setup().await;
    let before = snapshot(&n);
    let long = "c".repeat(300);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/api/v1/users", "{not json".into(), 400, "malformed_request"),
        ("/api/v1/users", json!({"nam": "x"}).to_string(), 422, "malformed_request"),
        (
            "/api/v1/shares",
            json!({"from": "ghost", "to": "mark", "channel": "c", "kind": "shares"}).to_string(),
            404,
            "unknown_user",
        ),
        (
            "/api/v1/shares",
            json!({"from": "jojo", "to": "group:nope", "channel": "c", "kind": "shares"}).to_string(),
            404,
            "unknown_group",
        ),
        (
            "/api/v1/shares",
            json!({"from": "jojo", "to": "mark", "channel": "", "kind": "shares"}).to_string(),
            400,
            "invalid_name",
        ),
        (
            "/api/v1/shares",
            json!({"from": "jojo", "to": "mark", "channel": long, "kind": "shares"}).to_string(),
            400,
            "invalid_name",
        ),
        (
            "/api/v1/shares",
            json!({"from": "jojo", "to": "eve", "channel": "c", "kind": "maybe"}).to_string(),
            422,
            "malformed_request",
        ),
        ("/api/v1/keys", json!({"ident": "jojo-sensor", "owner": "mark"}).to_string(), 409, "ident_exists"),
        ("/api/v1/users", json!({"name": "jojo"}).to_string(), 409, "user_exists"),
    ];
    for (path, body, want_status, want_code) in cases {
        let (status, reply) = api.send(reqwest::Method::POST, path, Some(&op), Some(&body)).await;
        assert_eq!(status, want_status, "{path} {body}: {reply}");
        assert_eq!(reply["error"]["code"], want_code, "{path} {body}: {reply}");
        assert!(!reply["error"]["message"].as_str().unwrap().is_empty());
    }
    // A declaration with one bad part changes nothing at all.
    let bad_apply = json!({"users": ["newbie"], "shares": [{"from": "newbie", "to": "group:nope", "channel": "c", "kind": "shares"}]});
    let (status, reply) = api.post("/api/v1/apply", &op, bad_apply).await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(snapshot(&n), before);
}

#[tokio::test]
async fn given_explain_and_health_endpoints_then_answers() {
    let (n, api, op) = setup().await;
    api.post("/api/v1/shares/accept", &op, json!({"from": "jojo", "to": "mark", "channel": "c"})).await;
    let (s, r) = api.get("/api/v1/explain?from=jojo&to=mark&channel=c", &op).await;
    assert_eq!(s, 200);
    assert_eq!(r["text"], "jojo -[shares]-> mark");
    let (s, r) = api.get("/api/v1/explain?from=jojo&to=eve&channel=c", &op).await;
    assert_eq!((s, r["explanation"]["result"].as_str()), (200, Some("none")));
    let (s, _) = api.send(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 200);
    let (s, r) = api.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!((s, r["ready"].as_bool()), (200, Some(true)));
    assert_eq!(r["accepting_clients"], true, "{r}");
    let text = reqwest::get(format!("{}/metrics", api.base)).await.unwrap().text().await.unwrap();
    assert!(text.contains("hpfriends_raft_is_leader 1"), "{text}");
    assert!(text.contains("hpfriends_index_generation"), "{text}");
    // Present, at zero and described, before any hpfeeds client connected.
    assert!(text.contains("\nhpfeeds_broker_connection_made_total 0\n"), "{text}");
    assert!(text.contains("\nhpfeeds_broker_client_connections 0\n"), "{text}");
    assert!(text.contains("# HELP hpfeeds_broker_subscriptions "), "{text}");
    drop(n);
}

#[tokio::test]
async fn given_single_node_when_it_is_asked_to_leave_then_refused_and_still_serving() {
    let (n, api, op) = setup().await;
    let (s, r) = api.post("/api/v1/cluster/leave", &op, json!({"node_id": 1})).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["error"]["code"], "membership_refused");
    let (s, r) = api.post("/api/v1/cluster/leave", &op, json!({"node_id": 9})).await;
    assert_eq!((s, r["error"]["code"].as_str()), (409, Some("membership_refused")));
    let (s, r) = api.get("/api/v1/cluster/status", &op).await;
    assert_eq!(s, 200);
    assert_eq!(r["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(r["role"], "Leader");
    drop(n);
}

#[tokio::test]
async fn given_the_default_minimum_then_short_key_secrets_are_refused_except_for_an_import() {
    let n = start_node(|c| c.min_key_secret_len = hpfriends_broker::config::Config::default().min_key_secret_len).await;
    n.declare(r#"{"users": ["jojo"]}"#).await;
    let api = Api::new(&n);
    let op = n.running.operator_token.clone();
    let before = snapshot(&n);
    let (status, body) =
        api.post("/api/v1/keys", &op, json!({"ident": "k", "owner": "jojo", "secret": "seven77"})).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(r#"key "k" is 7 characters long, shorter than 8"#), "{message}");
    let decl = json!({"keys": [{"ident": "old", "secret": "abc", "owner": "jojo", "publish": ["c"]}]});
    let (status, body) = api.post("/api/v1/apply", &op, decl.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(snapshot(&n) == before, "refused requests change nothing");

    let (status, body) =
        api.post("/api/v1/keys", &op, json!({"ident": "k", "owner": "jojo", "secret": "eight888"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.post("/api/v1/keys", &op, json!({"ident": "gen", "owner": "jojo"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key"]["secret"].as_str().unwrap().len(), 32, "a generated secret");
    // What `ctl import-hpfeeds` sends: old keys are kept, each short one named.
    let (status, body) = api.post("/api/v1/apply?allow_short_secrets=true", &op, decl).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"][0], r#"the secret of key "old" is 3 characters long, shorter than 8"#);
}

#[tokio::test]
async fn given_a_new_data_dir_then_it_and_everything_in_it_are_for_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let n = start_node(|_| {}).await;
    n.declare(r#"{"keys": [{"ident": "k", "secret": "a-key-secret", "owner": "jojo"}]}"#).await;
    fn walk(path: &std::path::Path, found: &mut Vec<(std::path::PathBuf, u32)>) {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        found.push((path.to_path_buf(), mode));
        if path.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                walk(&e.unwrap().path(), found);
            }
        }
    }
    let mut found = Vec::new();
    walk(&n.running_data_dir(), &mut found);
    assert!(found.len() > 5, "{found:?}");
    for (path, mode) in found {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    }
}

#[tokio::test]
async fn given_a_user_then_they_see_names_but_not_addresses_or_shares_of_a_group_they_only_were_invited_to() {
    let (n, api, op) = setup().await;
    n.write(hpfriends_graph::Command::InviteMember { group: "honeynet".into(), user: "eve".into() }).await;
    n.write(hpfriends_graph::Command::AddShare {
        from: "jojo".into(),
        to: hpfriends_graph::Target::Group("honeynet".into()),
        channel: "g".into(),
        kind: hpfriends_graph::ShareKind::Shares,
        with_history: false,
    })
    .await;
    let eve = user_token(&api, &op, "eve").await;
    let channels = |v: &Value| -> Vec<String> {
        v["shares"].as_array().unwrap().iter().map(|s| s["channel"].as_str().unwrap().to_string()).collect()
    };
    let (_, shares) = api.get("/api/v1/shares", &eve).await;
    assert!(channels(&shares).is_empty(), "invited, not joined: {shares}");
    let (s, r) = api.post("/api/v1/groups/honeynet/join", &eve, json!({})).await;
    assert_eq!(s, 200, "{r}");
    let (_, shares) = api.get("/api/v1/shares", &eve).await;
    assert_eq!(channels(&shares), vec!["g"], "a member sees what the group is offered");
    let (_, users) = api.get("/api/v1/users", &eve).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 3, "users find each other by name");

    let (_, status) = api.get("/api/v1/cluster/status", &eve).await;
    assert!(status["nodes"][0]["cluster_addr"].is_null(), "{status}");
    let (_, status) = api.get("/api/v1/cluster/status", &op).await;
    assert!(status["nodes"][0]["cluster_addr"].is_string(), "{status}");
}

#[tokio::test]
async fn given_refused_writes_then_the_raft_log_stays_as_it_was() {
    let (n, api, op) = setup().await;
    let eve = user_token(&api, &op, "eve").await;
    let log_index = || n.running.node.metrics().borrow().last_log_index;
    let before = log_index();
    for i in 0..100 {
        let (status, _) = api.post("/api/v1/users", &eve, json!({"name": format!("mallory-{i}")})).await;
        assert_eq!(status, 403);
    }
    let foreign = json!({"keys": [{"ident": "stolen", "secret": "a-long-secret", "owner": "jojo"}]});
    let (status, body) = api.post("/api/v1/apply", &eve, foreign).await;
    assert_eq!(status, 403, "{body}");
    // A user's declaration is small; a 2 MiB one is refused before it is read whole.
    let names: Vec<String> = (0..100_000).map(|i| format!("user-with-a-long-name-{i:08}")).collect();
    let (status, body) = api.post("/api/v1/apply", &eve, json!({ "users": names })).await;
    assert_eq!(status, 413, "{body}");
    // Requests the operator may make but that would not apply: refused before proposing.
    for (path, body) in [
        ("/api/v1/users", json!({"name": "jojo"})),
        ("/api/v1/users", json!({"name": "bad name!"})),
        ("/api/v1/keys", json!({"ident": "k-of-nobody", "owner": "nobody", "secret": "a-long-secret"})),
        ("/api/v1/shares", json!({"from": "jojo", "to": "nobody", "channel": "c"})),
        ("/api/v1/groups", json!({"name": "jojo", "admin": "jojo"})),
    ] {
        let (status, reply) = api.post(path, &op, body.clone()).await;
        assert!((400..500).contains(&status), "{path} {body}: {status} {reply}");
    }
    let key = json!({"ident": "k2", "secret": "a-long-secret", "owner": "fine-user", "publish": ["bell\u{7}channel"]});
    let refused_declaration = json!({"users": ["fine-user"], "keys": [key]});
    let (status, reply) = api.post("/api/v1/apply", &op, refused_declaration).await;
    assert!((400..500).contains(&status), "{status} {reply}");
    assert!(n.running.node.read_graph(|g| !g.has_user("fine-user")), "all or nothing");
    assert_eq!(log_index(), before, "no refused request became a log entry");
}
