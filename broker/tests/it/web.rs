//! The web app's listener and the account API, in-process (the pages
//! themselves are tested in a browser: cluster-tests/tests/it/web.rs).

use std::path::Path;

use crate::common::start_node;

/// A CA and a certificate for 127.0.0.1 under it, made by openssl.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for args in [
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca",
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout web.key -out web.csr -subj /CN=localhost",
        "x509 -req -in web.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out web.pem -days 1 -extfile ext",
    ] {
        let out = std::process::Command::new("openssl").current_dir(dir).args(args.split(' ')).output().unwrap();
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (dir.join("ca.pem"), dir.join("web.pem"), dir.join("web.key"))
}

#[tokio::test]
async fn given_a_web_certificate_then_pages_and_api_are_served_over_tls_with_secure_cookies() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(certs.path());
    let n = start_node(|c| {
        c.web_tls_cert = Some(cert.clone());
        c.web_tls_key = Some(key.clone());
    })
    .await;
    let port = n.running.http_addr.port();
    assert_eq!(n.running.web_url, format!("https://127.0.0.1:{port}"), "invitation links say https");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let page = https.get(format!("https://127.0.0.1:{port}/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.starts_with("default-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let users = https
        .get(format!("https://127.0.0.1:{port}/api/v1/users"))
        .bearer_auth(&n.running.operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200, "the API is served over the same TLS");
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/sign-in")).await;
    assert!(plain.is_err(), "plain HTTP gets no page from a TLS listener: {plain:?}");
}

#[tokio::test]
async fn given_a_disabled_user_then_their_tokens_are_refused_until_enabled_and_an_invitation_link_points_at_the_web_app(
) {
    let n = start_node(|_| {}).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", n.running.http_addr);
    let op = n.running.operator_token.clone();
    let post = |path: String, token: String| {
        let http = http.clone();
        async move { http.post(path).bearer_auth(token).json(&serde_json::json!({})).send().await.unwrap() }
    };
    let link: serde_json::Value =
        post(format!("{base}/api/v1/users/jojo/invite"), op.clone()).await.json().await.unwrap();
    assert!(link["link"].as_str().unwrap().starts_with(&format!("{base}/invite/")), "{link}");
    let issued: serde_json::Value =
        post(format!("{base}/api/v1/users/jojo/token"), op.clone()).await.json().await.unwrap();
    let token = issued["token"].as_str().unwrap().to_string();
    let keys = |token: String| {
        let http = http.clone();
        let url = format!("{base}/api/v1/keys");
        async move { http.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(keys(token.clone()).await, 200);
    assert_eq!(post(format!("{base}/api/v1/users/jojo/disable"), op.clone()).await.status(), 200);
    assert_eq!(keys(token.clone()).await, 401, "a disabled user's token is refused");
    let denied = post(format!("{base}/api/v1/users/jojo/disable"), token.clone()).await;
    assert_eq!(denied.status(), 401);
    assert_eq!(post(format!("{base}/api/v1/users/jojo/enable"), op.clone()).await.status(), 200);
    assert_eq!(keys(token.clone()).await, 200, "enabled again, the token works again");
    let refused = post(format!("{base}/api/v1/users/mark/invite"), token).await;
    assert_eq!(refused.status(), 403, "only the operator invites");
}

#[tokio::test]
async fn given_failed_sign_ins_for_one_name_then_it_is_refused_unchecked_and_other_names_are_not() {
    let n = start_node(|_| {}).await;
    let hash = hpfriends_broker::app::accounts::hash_password("correct horse battery").await.unwrap();
    for name in ["jojo", "mark"] {
        n.write(hpfriends_graph::Command::AddUser { name: name.into() }).await;
        let set = hpfriends_graph::Command::SetPassword {
            name: name.into(),
            password_hash: hash.clone(),
            invitation: None,
            at: 1,
        };
        n.write(set).await;
    }
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{}", n.running.http_addr);
    let page = http.get(format!("{base}/sign-in")).send().await.unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = cookie.split_once('=').unwrap().1.to_string();
    let sign_in = |name: &'static str, password: &'static str| {
        let (http, url, cookie, csrf) = (http.clone(), format!("{base}/sign-in"), cookie.clone(), csrf.clone());
        async move {
            let form = [("csrf", csrf.as_str()), ("name", name), ("password", password)];
            let resp = http.post(url).header("cookie", cookie).form(&form).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    for _ in 0..10 {
        let (status, body) = sign_in("jojo", "a wrong password").await;
        assert_eq!(status, 401);
        assert!(body.contains("wrong name or password"), "{body}");
    }
    let (status, body) = sign_in("jojo", "correct horse battery").await;
    assert_eq!(status, 429, "past the limit even the right password is refused unchecked");
    assert!(body.contains("too many failed sign-ins"), "{body}");
    let (status, _) = sign_in("mark", "correct horse battery").await;
    assert_eq!(status, 303, "another name signs in");
    let (status, _) = sign_in("mark", "a wrong password").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn given_signup_closed_then_the_operator_invites_nobody_new_but_resets_existing_users() {
    let n = start_node(|c| c.signup = hpfriends_broker::config::Signup::Closed).await;
    n.write(hpfriends_graph::Command::AddUser { name: "jojo".into() }).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", n.running.http_addr);
    let invite = |name: &str| {
        let url = format!("{base}/api/v1/users/{name}/invite");
        http.post(url).bearer_auth(&n.running.operator_token).send()
    };
    let refused = invite("newbie").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("closed"));
    assert!(n.running.node.read_graph(|g| !g.has_user("newbie")), "nothing was made");
    assert_eq!(invite("jojo").await.unwrap().status(), 200, "an existing user gets a reset link");
}

#[tokio::test]
async fn given_signup_open_then_anyone_makes_an_account_and_given_invite_then_nobody_does() {
    for (signup, made) in
        [(hpfriends_broker::config::Signup::Open, true), (hpfriends_broker::config::Signup::Invite, false)]
    {
        let n = start_node(|c| c.signup = signup).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let base = format!("http://{}", n.running.http_addr);
        let page = http.get(format!("{base}/sign-in")).send().await.unwrap();
        let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let csrf = cookie.split_once('=').unwrap().1.to_string();
        let form = [
            ("csrf", csrf.as_str()),
            ("name", "newbie"),
            ("password", "long enough pw"),
            ("confirm", "long enough pw"),
        ];
        let resp = http.post(format!("{base}/sign-up")).header("cookie", &cookie).form(&form).send().await.unwrap();
        let status = resp.status().as_u16();
        let exists = n.running.node.read_graph(|g| g.user("newbie").is_some_and(|u| u.account.password_hash.is_some()));
        if made {
            assert_eq!(status, 303, "signed up and signed in");
            assert!(resp.headers()["set-cookie"].to_str().unwrap().starts_with("hpfriends_session="));
            assert!(exists);
        } else {
            assert_eq!(status, 403);
            assert!(resp.text().await.unwrap().contains("invitation"));
            assert!(!exists, "nothing was made");
        }
    }
}
