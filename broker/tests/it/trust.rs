//! Trust holds for people (issue 26): identities that are never inherited,
//! limits that hold under concurrency, a new user signed in, short secrets
//! for the operator only.

use hpfriends_graph::{AuthKey, Command, ShareKind, Target};

use crate::common::{start_node, Client, Node};

/// A page of the web app as the browser with `cookie` sees it.
async fn page_text(url: &str, cookie: &str) -> String {
    reqwest::Client::new().get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap()
}

/// `GET path` with `token`: 200 and its JSON.
async fn get_json(n: &Node, token: &str, path: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", n.running.http_addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

fn key(ident: &str, owner: &str) -> AuthKey {
    AuthKey {
        ident: ident.into(),
        secret: format!("{owner}-long-secret"),
        owner: owner.into(),
        publish: vec!["c".into()],
        subscribe: vec![],
        resume: false,
    }
}

fn share(from: &str, to: Target, channel: &str) -> Command {
    Command::AddShare { from: from.into(), to, channel: channel.into(), kind: ShareKind::Shares, with_history: false }
}

#[tokio::test]
async fn given_a_key_removed_when_another_user_takes_its_ident_then_none_of_its_activity_shows() {
    let n = start_node(|_| {}).await;
    for name in ["alice", "mallory"] {
        n.write(Command::AddUser { name: name.into() }).await;
    }
    n.write(Command::AddKey(key("reused-ident", "alice"))).await;
    let addr = n.running.hpfeeds_addr;
    let mut guess = Client::connect_from(addr, "127.77.7.7".parse().unwrap()).await;
    let wrong = hpfriends_broker::protocol::frame::auth_hash(&guess.nonce, b"a wrong secret");
    guess.send(&hpfriends_broker::protocol::frame::encode_auth(b"reused-ident", &wrong)).await;
    guess.expect_error("Authentication failed for reused-ident").await;
    let mut sensor = Client::login(addr, "reused-ident", "alice-long-secret").await;
    sensor.publish("c", b"alice's event").await;
    let path = "/api/v1/keys/reused-ident/activity";
    let operator = n.running.operator_token.clone();
    let alices = crate::common::wait_for(|| async {
        let a = get_json(&n, &operator, path).await;
        (a["published"] == 1).then_some(a)
    })
    .await;
    assert!(alices.to_string().contains("127.77.7.7"), "the failed login is alice's to see: {alices}");

    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/keys/reused-ident", n.running.http_addr);
    assert!(http.delete(url).bearer_auth(&operator).send().await.unwrap().status().is_success());
    n.write(Command::AddKey(key("reused-ident", "mallory"))).await;
    let mallorys = get_json(&n, &n.user_token("mallory").await, path).await;
    assert_eq!((mallorys["published"].as_u64(), mallorys["delivered"].as_u64()), (Some(0), Some(0)), "{mallorys}");
    assert_eq!(mallorys["failed_logins"], serde_json::json!([]), "{mallorys}");
    assert!(!mallorys.to_string().contains("127.77.7.7"), "{mallorys}");
    let seen_by_operator = get_json(&n, &operator, path).await;
    assert_eq!(seen_by_operator["published"], 0, "alice's activity went with her key: {seen_by_operator}");
}

#[tokio::test]
async fn given_names_taken_again_then_the_new_holders_history_holds_nothing_of_the_old_ones() {
    let n = start_node(|_| {}).await;
    for name in ["erin", "alice", "gadmin", "bob"] {
        n.write(Command::AddUser { name: name.into() }).await;
    }
    n.write(Command::AddKey(key("erins-old-key", "erin"))).await;
    n.write(share("alice", Target::User("erin".into()), "to-old-erin")).await;
    n.write(Command::AddGroup { name: "cert".into(), creator: "gadmin".into() }).await;
    n.write(Command::InviteMember { group: "cert".into(), user: "bob".into() }).await;
    n.write(share("alice", Target::Group("cert".into()), "to-old-cert")).await;
    // erin is removed; cert goes with its last admin.
    n.write(Command::RemoveUser { name: "erin".into() }).await;
    n.write(Command::RemoveUser { name: "gadmin".into() }).await;
    assert!(n.running.node.read_graph(|g| g.group("cert").is_none()));

    n.write(Command::AddUser { name: "erin".into() }).await;
    let erin = n.user_token("erin").await;
    let created = reqwest::Client::new()
        .post(format!("http://{}/api/v1/groups", n.running.http_addr))
        .bearer_auth(&erin)
        .json(&serde_json::json!({"name": "cert"}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.text().await.unwrap());

    let seen = get_json(&n, &erin, "/api/v1/history").await;
    let text = seen.to_string();
    for old in ["erins-old-key", "to-old-erin", "to-old-cert", "bob", "gadmin", "remove_user"] {
        assert!(!text.contains(old), "the new erin sees {old}: {text}");
    }
    let ops: Vec<&str> =
        seen["events"].as_array().unwrap().iter().map(|e| e["change"]["op"].as_str().unwrap()).collect();
    assert!(ops.contains(&"add_group") && ops.contains(&"set_user_token"), "her own changes: {ops:?}");

    // The operator sees both erins, told apart.
    let all = get_json(&n, &n.running.operator_token, "/api/v1/history?user=erin").await;
    let ids: std::collections::BTreeSet<u64> =
        all["events"].as_array().unwrap().iter().filter_map(|e| e["user_ids"]["erin"].as_u64()).collect();
    assert_eq!(ids.len(), 2, "two erins: {all}");
}

/// A client that does not follow redirects, a sign-in form's cookie and its
/// CSRF token (the double-submit cookie of a browser not signed in).
async fn anonymous_form(base: &str, page: &str) -> (reqwest::Client, String, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{base}{page}")).send().await.unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = cookie.split_once('=').unwrap().1.to_string();
    (http, cookie, csrf)
}

#[tokio::test]
async fn given_forty_wrong_passwords_at_once_then_no_more_than_the_limit_are_checked() {
    let n = start_node(|_| {}).await;
    add_jojo(&n).await;
    let base = format!("http://{}", n.running.http_addr);
    let (http, cookie, csrf) = anonymous_form(&base, "/sign-in").await;
    // The right password is the 21st of 41 sent at once.
    let tries = (0..41).map(|i| {
        let (http, url, cookie, csrf) = (http.clone(), format!("{base}/sign-in"), cookie.clone(), csrf.clone());
        let password = if i == 20 { "correct horse battery" } else { "a wrong password" };
        tokio::spawn(async move {
            let form = [("csrf", csrf.as_str()), ("name", "jojo"), ("password", password)];
            http.post(url).header("cookie", cookie).form(&form).send().await.unwrap().status().as_u16()
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(tries).await.into_iter().map(Result::unwrap).collect();
    let checked = statuses.iter().filter(|s| matches!(s, 401 | 303)).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(checked <= 10, "{checked} of the burst were checked (the limit is 10): {statuses:?}");
    assert_eq!(checked + refused, 41, "{statuses:?}");
}

#[tokio::test]
async fn given_an_invitation_when_the_password_is_set_then_the_new_user_is_signed_in() {
    let n = start_node(|_| {}).await;
    let base = format!("http://{}", n.running.http_addr);
    let link: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/users/newcomer/invite"))
        .bearer_auth(&n.running.operator_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = link["link"].as_str().unwrap().strip_prefix(&base).unwrap().to_string();
    let (http, cookie, csrf) = anonymous_form(&base, &path).await;
    let password = "a good long password";
    let form = [("csrf", csrf.as_str()), ("password", password), ("confirm", password)];
    let set = http.post(format!("{base}{path}")).header("cookie", &cookie).form(&form).send().await.unwrap();
    assert_eq!(set.status(), 303, "{}", set.text().await.unwrap());
    assert_eq!(set.headers()["location"], "/keys");
    let session = set.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(session.starts_with("hpfriends_session="), "{session}");
    let keys = http.get(format!("{base}/keys")).header("cookie", session).send().await.unwrap();
    assert_eq!(keys.status(), 200, "the new user's session opens the pages");
}

#[tokio::test]
async fn given_a_user_then_short_secrets_are_refused_even_when_asked_to_keep_them() {
    let n = start_node(|_| {}).await;
    let base = format!("http://{}", n.running.http_addr);
    let http = reqwest::Client::new();
    n.write(hpfriends_graph::Command::AddUser { name: "jojo".into() }).await;
    let token = n.user_token("jojo").await;
    let declaration = r#"{"keys": [{"ident": "k", "secret": "x", "owner": "jojo", "publish": ["c"]}]}"#;
    let apply = |token: String| {
        http.post(format!("{base}/api/v1/apply?allow_short_secrets=true")).bearer_auth(token).body(declaration).send()
    };
    let refused = apply(token).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(n.running.node.read_graph(|g| g.key("k").is_none()), "nothing was made");
    let imported = apply(n.running.operator_token.clone()).await.unwrap();
    assert_eq!(imported.status(), 200, "the operator's import keeps an old short secret");
}

#[tokio::test]
async fn given_new_names_then_reserved_dot_only_path_like_and_text_reordering_ones_are_refused() {
    let n = start_node(|c| c.signup = hpfriends_broker::config::Signup::Open).await;
    let base = format!("http://{}", n.running.http_addr);
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}")).bearer_auth(&n.running.operator_token).json(&body).send()
    };
    for name in ["operator", "Root", "..", "."] {
        let refused = post("/api/v1/users", serde_json::json!({ "name": name })).await.unwrap();
        assert_eq!(refused.status(), 400, "user {name:?}");
    }
    assert_eq!(post("/api/v1/users", serde_json::json!({"name": "jojo"})).await.unwrap().status(), 200);
    for (ident, channel) in
        [("../../../tmp/x", "c"), ("k", "a\u{202E}b"), ("k", "a b"), ("k", "a\u{2028}b"), ("k c", "c")]
    {
        let key = serde_json::json!({"ident": ident, "owner": "jojo", "publish": [channel]});
        assert_eq!(post("/api/v1/keys", key).await.unwrap().status(), 400, "key {ident:?} on {channel:?}");
    }
    // Open sign-up: nobody becomes "operator".
    let (form, cookie, csrf) = anonymous_form(&base, "/sign-up").await;
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "operator"),
        ("password", "a good long password"),
        ("confirm", "a good long password"),
    ];
    let signed_up = form.post(format!("{base}/sign-up")).header("cookie", cookie).form(&fields).send().await.unwrap();
    assert_eq!(signed_up.status(), 400);
    assert!(signed_up.text().await.unwrap().contains("reserved"));
    assert!(n.running.node.read_graph(|g| !g.has_user("operator") && !g.has_user("..") && g.key("k").is_none()));
}

#[tokio::test]
async fn given_a_live_stream_on_a_quiet_cluster_when_its_sign_in_expires_then_the_stream_ends() {
    let n = start_node(|_| {}).await;
    add_jojo(&n).await;
    // A sign-in that lasts two seconds; nothing changes in the graph after it.
    let session = jojo_session(&n, 2).await;
    let url = format!("http://{}/live/events?channels=c", n.running.http_addr);
    let mut stream = reqwest::Client::new().get(url).header("cookie", session).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: closed") {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its sign-in:\n{seen}");
    assert!(seen.contains("expired"), "{seen}");
}

#[tokio::test]
async fn given_the_live_page_started_an_hour_ago_then_it_shows_what_was_published_before_then_live() {
    let n = start_node(|_| {}).await;
    add_jojo(&n).await;
    n.write(Command::AddKey(key("k", "jojo"))).await;
    let mut sensor = Client::login(n.running.hpfeeds_addr, "k", "jojo-long-secret").await;
    sensor.publish("c", b"published-before").await;
    let session = jojo_session(&n, 600).await;
    let base = format!("http://{}/live/events?channels=c", n.running.http_addr);
    let http = reqwest::Client::new();
    let refused = http.get(format!("{base}&from=2y")).header("cookie", &session).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("15m, 1h or 1d"));
    let mut stream = http.get(format!("{base}&from=1h")).header("cookie", &session).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let mut published_after = false;
    let both = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("published-before") && !published_after {
                sensor.publish("c", b"published-after").await;
                published_after = true;
            }
            if seen.contains("published-after") {
                return;
            }
        }
    })
    .await;
    assert!(both.is_ok(), "the past, then live:\n{seen}");
    assert!(seen.find("published-before") < seen.find("published-after"), "{seen}");
}

/// The payloads of the events read from `stream` until each of `until` came,
/// each with its event id.
async fn live_events(stream: &mut reqwest::Response, until: &[&str]) -> Vec<(String, String)> {
    let mut text = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if until.iter().all(|u| text.contains(u)) && text.ends_with("\n\n") {
                return;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "not every one of {until:?}:\n{text}");
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::trim_start);
            let data = field("data:")?;
            let payload = serde_json::from_str::<serde_json::Value>(data).ok()?["payload"].as_str()?.to_string();
            let id = field("id:").unwrap_or("").to_string();
            Some((payload, id))
        })
        .collect()
}

#[tokio::test]
async fn given_the_live_page_from_the_past_reconnects_then_it_goes_on_after_the_last_message_it_showed() {
    let n = start_node(|_| {}).await;
    add_jojo(&n).await;
    // Two channels: the id carries each one's place.
    n.write(Command::AddKey(AuthKey { publish: vec!["c".into(), "d".into()], ..key("k", "jojo") })).await;
    let mut sensor = Client::login(n.running.hpfeeds_addr, "k", "jojo-long-secret").await;
    sensor.publish("d", b"on-d").await;
    for i in 0..5 {
        sensor.publish("c", format!("m{i}").as_bytes()).await;
    }
    let session = jojo_session(&n, 600).await;
    let url = format!("http://{}/live/events?channels=c,d&from=1h", n.running.http_addr);
    let http = reqwest::Client::new();
    let mut first = http.get(&url).header("cookie", &session).send().await.unwrap();
    let events = live_events(&mut first, &["m4", "on-d"]).await;
    let on_c = |events: &[(String, String)]| -> Vec<String> {
        events.iter().map(|(p, _)| p.clone()).filter(|p| p != "on-d").collect()
    };
    assert_eq!(on_c(&events), ["m0", "m1", "m2", "m3", "m4"], "{events:?}");
    drop(first);
    // The browser reconnects with the id of the last event it took (here m2's, as if what came after was lost).
    let m2 = events.iter().position(|(p, _)| p == "m2").unwrap();
    let last_id = events[m2].1.clone();
    assert!(!last_id.is_empty(), "events from the past carry an id");
    let d_shown = events[..m2].iter().any(|(p, _)| p == "on-d");
    sensor.publish("c", b"m5").await;
    let mut again = http.get(&url).header("cookie", &session).header("last-event-id", &last_id).send().await.unwrap();
    let events = live_events(&mut again, if d_shown { &["m5"] } else { &["m5", "on-d"] }).await;
    assert_eq!(on_c(&events), ["m3", "m4", "m5"], "after m2, each once: {events:?}");
    // The other channel goes on from its own place: again only if it was not shown before m2.
    assert_eq!(events.iter().any(|(p, _)| p == "on-d"), !d_shown, "{events:?}");
    // An id this server did not write starts from the chosen point again.
    let mut other = http.get(&url).header("cookie", &session).header("last-event-id", "7.x_").send().await.unwrap();
    let events = live_events(&mut other, &["m5", "on-d"]).await;
    assert_eq!(events.len(), 7, "{events:?}");
}

/// The user jojo, with the password "correct horse battery".
async fn add_jojo(n: &crate::common::Node) {
    add_user_with_password(n, "jojo").await;
}

/// A sign-in of jojo that lasts `seconds`: the `Cookie` header that carries it.
pub(crate) async fn jojo_session(n: &crate::common::Node, seconds: u64) -> String {
    let cookie = hpfriends_broker::app::accounts::new_secret();
    let now = hpfriends_broker::app::accounts::now();
    n.write(hpfriends_graph::Command::StartSession {
        actor: hpfriends_graph::Actor::User("jojo".into()),
        session_hash: hpfriends_broker::app::accounts::hash_token(&cookie),
        expires_at: now + seconds,
        at: now,
    })
    .await;
    format!("hpfriends_session={cookie}")
}

/// jojo signed in: the session's `Cookie` header and the CSRF token of its forms.
async fn jojo_signed_in(n: &crate::common::Node) -> (String, String) {
    add_jojo(n).await;
    let session = jojo_session(n, 3600).await;
    let page = reqwest::Client::new()
        .get(format!("http://{}/account", n.running.http_addr))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let page = page.text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    (session, csrf)
}

#[tokio::test]
async fn given_a_signed_in_browser_then_an_api_token_is_made_only_with_the_password() {
    let n = start_node(|_| {}).await;
    let (session, csrf) = jojo_signed_in(&n).await;
    let base = format!("http://{}", n.running.http_addr);
    let http = reqwest::Client::new();
    let make = |password: &'static str| {
        let form = [("csrf", csrf.clone()), ("label", "laptop".to_string()), ("token_password", password.to_string())];
        http.post(format!("{base}/account/tokens")).header("cookie", &session).form(&form).send()
    };
    let tokens = || n.running.node.read_graph(|g| g.user("jojo").unwrap().account.api_tokens.len());
    for wrong in ["", "not my password"] {
        let refused = make(wrong).await.unwrap();
        assert_eq!(refused.status(), 400, "password {wrong:?}");
        assert!(refused.text().await.unwrap().contains("token_password-error"), "the message is at the password");
    }
    assert_eq!(tokens(), 0, "no token was made");
    assert_eq!(make("correct horse battery").await.unwrap().status(), 200);
    assert_eq!(tokens(), 1);
}

#[tokio::test]
async fn given_api_tokens_when_the_password_changes_then_they_are_revoked_if_asked() {
    let n = start_node(|_| {}).await;
    let (session, csrf) = jojo_signed_in(&n).await;
    let base = format!("http://{}", n.running.http_addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let tokens = || n.running.node.read_graph(|g| g.user("jojo").unwrap().account.api_tokens.len());
    let form = [("csrf", csrf.as_str()), ("label", "laptop"), ("token_password", "correct horse battery")];
    http.post(format!("{base}/account/tokens")).header("cookie", &session).form(&form).send().await.unwrap();
    assert_eq!(tokens(), 1);
    let change = |old: &'static str, new: &'static str, revoke: &'static str, session: String, csrf: String| {
        let form = [
            ("csrf", csrf),
            ("current", old.into()),
            ("password", new.into()),
            ("confirm", new.into()),
            ("revoke_tokens", revoke.into()),
        ];
        http.post(format!("{base}/account/password")).header("cookie", session).form(&form).send()
    };
    let kept = change("correct horse battery", "a second long password", "", session, csrf).await.unwrap();
    assert_eq!(kept.status(), 303);
    assert_eq!(tokens(), 1, "without the box the token stays");
    // The change signed every other browser out and this one in again.
    let session = kept.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page =
        http.get(format!("{base}/account")).header("cookie", &session).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Also revoke my 1 API token"), "the page offers it");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let revoked = change("a second long password", "a third long password", "on", session, csrf).await.unwrap();
    assert_eq!(revoked.status(), 303);
    assert_eq!(tokens(), 0, "with the box every token is revoked");
}

#[tokio::test]
async fn given_a_group_then_only_members_become_admins_and_an_admin_who_is_not_one_can_leave_and_be_removed() {
    let n = start_node(|_| {}).await;
    for name in ["gadmin", "outsider", "legacy"] {
        n.write(Command::AddUser { name: name.into() }).await;
    }
    n.write(Command::AddGroup { name: "cert".into(), creator: "gadmin".into() }).await;
    let gadmin = n.user_token("gadmin").await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1/groups/cert", n.running.http_addr);
    let made = http
        .post(format!("{base}/admins"))
        .bearer_auth(&gadmin)
        .json(&serde_json::json!({"user": "outsider"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 400);
    assert!(made.text().await.unwrap().contains("not a member"));
    assert!(n.running.node.read_graph(|g| !g.is_group_admin("cert", "outsider")), "nothing changed");

    // Admins made before the rule, who are not members, leave or are removed.
    for (who, token) in [("legacy", None), ("outsider", Some(gadmin.clone()))] {
        n.write(Command::AddGroupAdmin { group: "cert".into(), user: who.into() }).await;
        assert!(n.running.node.read_graph(|g| g.is_group_admin("cert", who)));
        let (action, token) = match token {
            None => ("leave", n.user_token(who).await),
            Some(t) => ("remove-member", t),
        };
        let body = serde_json::json!({"user": who});
        let done = http.post(format!("{base}/{action}")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert!(done.status().is_success(), "{action} {who}: {}", done.text().await.unwrap());
        let (admin, member) = n.running.node.read_graph(|g| {
            let grp = g.group("cert").unwrap();
            (grp.admins.contains(who), grp.members.contains_key(who))
        });
        assert!(!admin && !member, "{who} is out of cert");
    }
}

#[tokio::test]
async fn given_users_groups_and_relays_then_each_user_sees_what_docs_sharing_md_says() {
    let n = start_node(|_| {}).await;
    let (session, _) = jojo_signed_in(&n).await;
    for name in ["alice", "carol", "gadmin", "invitee", "member", "outsider"] {
        n.write(Command::AddUser { name: name.into() }).await;
    }
    n.write(Command::AddGroup { name: "cert".into(), creator: "gadmin".into() }).await;
    for (user, accept) in [("member", true), ("invitee", false)] {
        n.write(Command::InviteMember { group: "cert".into(), user: user.into() }).await;
        if accept {
            n.write(Command::AcceptMembership { group: "cert".into(), user: user.into() }).await;
        }
    }
    n.write(share("alice", Target::Group("cert".into()), "to-cert")).await;
    let relay = Command::AddShare {
        from: "alice".into(),
        to: Target::User("carol".into()),
        channel: "relay.chan".into(),
        kind: ShareKind::SharesAll,
        with_history: false,
    };
    n.write(relay).await;
    n.write(Command::AcceptShare {
        from: "alice".into(),
        to: Target::User("carol".into()),
        channel: "relay.chan".into(),
    })
    .await;
    let operator = n.running.operator_token.clone();
    let (outsider, invitee, member) =
        (n.user_token("outsider").await, n.user_token("invitee").await, n.user_token("member").await);

    // Users: names for everyone, the account's state to the operator and to oneself.
    let users = get_json(&n, &outsider, "/api/v1/users").await;
    for u in users["users"].as_array().unwrap() {
        let own = u["name"] == "outsider";
        assert_eq!(u.get("has_password").is_some(), own, "{u}");
        assert_eq!(u.get("disabled").is_some(), own, "{u}");
    }
    let all = get_json(&n, &operator, "/api/v1/users").await;
    assert!(all["users"].as_array().unwrap().iter().all(|u| u["invited"].is_boolean()), "{all}");

    // Groups: the name to anyone, the admins to the invited, the members to members.
    let cert = |list: serde_json::Value| list["groups"].as_array().unwrap()[0].clone();
    assert_eq!(cert(get_json(&n, &outsider, "/api/v1/groups").await), serde_json::json!({"name": "cert"}));
    let invited = cert(get_json(&n, &invitee, "/api/v1/groups").await);
    assert_eq!((invited["admins"].clone(), invited.get("members")), (serde_json::json!(["gadmin"]), None));
    let whole = cert(get_json(&n, &member, "/api/v1/groups").await);
    assert_eq!(whole["members"].as_array().unwrap().len(), 3, "{whole}");

    // History: the shares to a group belong to its members, not to those only invited.
    assert!(!get_json(&n, &invitee, "/api/v1/history").await.to_string().contains("to-cert"));
    assert!(get_json(&n, &member, "/api/v1/history").await.to_string().contains("to-cert"));

    // The Audience preview names alice, and only counts whom she relays to.
    let page = page_text(&format!("http://{}/audience?to=alice&on=relay.chan", n.running.http_addr), &session).await;
    let preview = &page[page.find("Before you offer a share").unwrap()..];
    assert!(preview.contains("<li>alice</li>"), "{preview}");
    assert!(preview.contains("1 further along"), "{preview}");
    assert!(!page.contains("carol"), "alice's relay is hers to tell: {page}");
}

#[tokio::test]
async fn given_an_operator_signed_in_when_the_operator_token_changes_then_the_session_ends() {
    let first = "the-first-operator-token-0123456789abcdef";
    let n = start_node(|c| c.operator_token = Some(first.into())).await;
    let base = format!("http://{}", n.running.http_addr);
    let (http, cookie, csrf) = anonymous_form(&base, "/sign-in").await;
    let form = [("csrf", csrf.as_str()), ("token", first)];
    let signed =
        http.post(format!("{base}/sign-in/operator")).header("cookie", &cookie).form(&form).send().await.unwrap();
    assert_eq!(signed.status(), 303);
    let session = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let operator_page = |base: String, session: String| async move {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        http.get(format!("{base}/operator")).header("cookie", session).send().await.unwrap().status().as_u16()
    };
    assert_eq!(operator_page(base.clone(), session.clone()).await, 200);
    // The operator's changes show as the operator's, unlike any user's name.
    n.write(Command::AddUser { name: "jojo".into() }).await;
    let history = page_text(&format!("{base}/history"), &session).await;
    assert!(history.contains(r#"<strong class="operator""#), "{history}");
    assert!(history.contains("jojo=u0"), "the ids the names had: {history}");

    // The same node, the same data, another token.
    let Node { running, dir } = n;
    running.stop().await;
    let mut config = hpfriends_broker::config::Config {
        data_dir: dir.path().join("data"),
        hpfeeds_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        cluster_addr: "127.0.0.1:0".into(),
        ..Default::default()
    };
    config.operator_token = Some("the-second-operator-token-0123456789abcdef".into());
    let again = hpfriends_broker::server::start(&config).await.unwrap();
    again.node.wait_ready(crate::common::WAIT).await.unwrap();
    let base = format!("http://{}", again.http_addr);
    assert_eq!(operator_page(base, session).await, 303, "signed out: back to the sign-in page");
}

/// A browser at `ip` (any 127.x.y.z): it keeps the cookies it is given and
/// does not follow redirects.
struct Browser {
    http: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

fn browser_from(ip: [u8; 4]) -> Browser {
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Browser { http, cookies: Default::default() }
}

impl Browser {
    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let response = request.header("cookie", jar.join("; ")).send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.insert(name.to_string(), value.to_string());
        }
        response
    }

    /// Signs in through a web form: the status.
    async fn sign_in(&mut self, base: &str, path: &str, fields: &[(&str, &str)]) -> u16 {
        let page = self.send(self.http.get(format!("{base}/sign-in"))).await.text().await.unwrap();
        let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.send(self.http.post(format!("{base}{path}")).form(&form)).await.status().as_u16()
    }
}

#[tokio::test]
async fn given_wrong_passwords_and_junk_cookies_from_anywhere_then_known_browsers_still_sign_in() {
    let n = start_node(|_| {}).await;
    add_jojo(&n).await;
    let base = format!("http://{}", n.running.http_addr);
    let (mut jojos, mut operators) = (browser_from([127, 10, 0, 1]), browser_from([127, 10, 0, 2]));
    let jojo = [("name", "jojo"), ("password", "correct horse battery")];
    let operator = [("token", n.running.operator_token.as_str())];
    assert_eq!(jojos.sign_in(&base, "/sign-in", &jojo).await, 303);
    assert_eq!(operators.sign_in(&base, "/sign-in/operator", &operator).await, 303);

    // Wrong passwords for jojo and wrong operator tokens, from several addresses.
    for i in 0..6u8 {
        let mut attacker = browser_from([127, 66, 0, i]);
        for _ in 0..3 {
            attacker.sign_in(&base, "/sign-in", &[("name", "jojo"), ("password", "a wrong guess")]).await;
            attacker.sign_in(&base, "/sign-in/operator", &[("token", "not-the-operator-token")]).await;
        }
    }
    let mut stranger = browser_from([127, 66, 1, 1]);
    assert_eq!(stranger.sign_in(&base, "/sign-in", &jojo).await, 429, "an unknown browser waits");
    assert_eq!(stranger.sign_in(&base, "/sign-in/operator", &operator).await, 429);
    assert_eq!(jojos.sign_in(&base, "/sign-in", &jojo).await, 303, "jojo's own browser is not locked out");
    assert_eq!(operators.sign_in(&base, "/sign-in/operator", &operator).await, 303, "nor the operator's");

    // 60 junk session cookies from an address cost its sign-ins nothing.
    let mut junk = browser_from([127, 10, 0, 3]);
    for i in 0..60u32 {
        let cookie = format!("hpfriends_session={i:064x}");
        let page = junk.http.get(format!("{base}/keys")).header("cookie", cookie).send().await.unwrap();
        assert_eq!(page.status(), 303);
    }
    add_user_with_password(&n, "mark").await;
    let mark = [("name", "mark"), ("password", "correct horse battery")];
    assert_eq!(junk.sign_in(&base, "/sign-in", &mark).await, 303);
}

/// A user with the password "correct horse battery".
async fn add_user_with_password(n: &Node, name: &str) {
    let hash = hpfriends_broker::app::accounts::hash_password("correct horse battery").await.unwrap();
    n.write(Command::AddUser { name: name.into() }).await;
    n.write(Command::SetPassword { name: name.into(), password_hash: hash, invitation: None, at: 1 }).await;
}

#[tokio::test]
async fn given_guesses_for_one_ident_from_ten_addresses_then_few_are_checked_and_the_sensor_still_logs_in() {
    let n = start_node(|_| {}).await;
    n.write(Command::AddUser { name: "alice".into() }).await;
    n.write(Command::AddKey(AuthKey { subscribe: vec!["c".into()], ..key("sensor", "alice") })).await;
    let addr = n.running.hpfeeds_addr;
    let home: std::net::IpAddr = "127.20.0.1".parse().unwrap();
    let login_from = |ip: std::net::IpAddr, secret: &'static str| async move {
        let mut c = Client::connect_from(addr, ip).await;
        let hash = hpfriends_broker::protocol::frame::auth_hash(&c.nonce, secret.as_bytes());
        c.send(&hpfriends_broker::protocol::frame::encode_auth(b"sensor", &hash)).await;
        c.ident = "sensor".into();
        c
    };
    // The sensor has logged in from home before.
    let mut sensor = login_from(home, "alice-long-secret").await;
    sensor.subscribe("c").await;
    sensor.sync("c", "hello").await;
    drop(sensor);

    let mut checked = 0;
    for i in 0..10u8 {
        for _ in 0..21 {
            let mut guess = login_from(std::net::IpAddr::from([127, 21, 0, i]), "a wrong guess").await;
            match guess.next().await {
                Some(hpfriends_broker::protocol::Frame::Error { message })
                    if message.starts_with(b"Authentication failed") =>
                {
                    checked += 1
                }
                Some(hpfriends_broker::protocol::Frame::Error { message }) => {
                    assert_eq!(&message[..], b"Too many failed logins, try again later")
                }
                other => panic!("expected an ERROR, got {other:?}"),
            }
        }
    }
    assert!(checked <= 50, "{checked} of 210 guesses were checked (the ident's budget is 50)");
    let mut again = login_from(home, "alice-long-secret").await;
    again.subscribe("c").await;
    again.sync("c", "still logged in from home").await;
}

/// A PROXY protocol v2 header saying a TCP/IPv4 client at `client` reached the balancer.
fn proxy_v2(client: std::net::SocketAddrV4) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&client.ip().octets());
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&80u16.to_be_bytes());
    header
}

/// Sends `first` then a `/healthz` request on a new connection: whether it is answered 200.
async fn healthz_after(http: std::net::SocketAddr, first: &[u8]) -> (bool, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let _ = s.write_all(first).await;
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(crate::common::WAIT, s.read(&mut buf)).await.unwrap().unwrap_or(0);
    (buf[..n].starts_with(b"HTTP/1.1 200"), s)
}

#[tokio::test]
async fn given_a_load_balancer_that_sends_the_proxy_protocol_then_each_client_has_its_own_address() {
    let n = start_node(|c| {
        c.proxy_protocol_from = Some("10.9.9.9, 127.0.0.1/32".into());
        c.http_max_connections_per_address = 1;
    })
    .await;
    let http = n.running.http_addr;
    let (a, b) = ("203.0.113.7:4444".parse().unwrap(), "203.0.113.8:4444".parse().unwrap());
    let (answered, held) = healthz_after(http, &proxy_v2(a)).await;
    assert!(answered, "a proxied client is served");
    let (answered, _b) = healthz_after(http, &proxy_v2(b)).await;
    assert!(answered, "another client behind the same balancer has its own place");
    let (answered, _) = healthz_after(http, &proxy_v2(a)).await;
    assert!(!answered, "a second connection of the first client is over its cap");
    drop(held);
    // The balancer's own check, without a header, is served too.
    assert!(healthz_after(http, b"").await.0);

    // From an address not named, a header is not taken: the request is refused.
    let strict = start_node(|c| c.proxy_protocol_from = Some("10.9.9.9".into())).await;
    assert!(!healthz_after(strict.running.http_addr, &proxy_v2(a)).await.0);
}
