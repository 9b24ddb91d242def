//! deploy/docker-compose.yml for real: the images build without pulling
//! anything, the stack starts, and a real hpfeeds client publishes and
//! subscribes through its HAProxy. Skipped, visibly, without a Docker engine.

use std::net::SocketAddr;
use std::process::Command;

use hpfriends_cluster_tests::{
    deploy_file, free_port, hpfriends_bin, http_status, sync, wait_for, Subscriber, DEADLINE,
};

const TOKEN: &str = "compose-test-operator-token-0123456789";

/// `docker-compose` (v1) or `docker compose` (v2), whichever this machine has.
fn compose_command() -> Option<Vec<String>> {
    let works = |cmd: &[&str]| Command::new(cmd[0]).args(&cmd[1..]).output().is_ok_and(|o| o.status.success());
    if works(&["docker-compose", "version"]) {
        Some(vec!["docker-compose".into()])
    } else if works(&["docker", "compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else {
        None
    }
}

/// The running stack; `down -v` when dropped, whatever happened.
struct Stack {
    compose: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
}

impl Stack {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args(["-p", &self.project, "-f"])
            .arg(deploy_file("docker-compose.yml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output().expect("running compose")
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.run(&["logs", "--no-color", "--tail", "40"]).stdout).into_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--timeout", "5"]);
    }
}

#[test]
fn given_docker_then_compose_stack_builds_starts_and_serves_hpfeeds_through_haproxy() {
    let docker = Command::new("docker").arg("info").output();
    if !docker.as_ref().is_ok_and(|o| o.status.success()) {
        let why =
            docker.map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string()).unwrap_or_else(|e| e.to_string());
        println!("SKIPPED: no usable Docker engine here ({why}); the compose stack was not tested");
        return;
    }
    let Some(compose) = compose_command() else {
        println!(
            "SKIPPED: Docker is here but neither docker-compose nor `docker compose`; the compose stack was not tested"
        );
        return;
    };

    // The images, from this build's binary.
    let build = Command::new(deploy_file("docker/build-images")).arg(hpfriends_bin()).output().unwrap();
    assert!(build.status.success(), "build-images failed:\n{}", String::from_utf8_lossy(&build.stderr));

    let (hpfeeds_port, api_port, prom_port) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let web_port = free_port().unwrap();
    let stack = Stack {
        compose,
        project: format!("hpfriends-test-{}", std::process::id()),
        env: vec![
            ("HPFEEDS_PORT".into(), hpfeeds_port.to_string()),
            ("API_PORT".into(), api_port.to_string()),
            ("PROMETHEUS_PORT".into(), prom_port.to_string()),
            ("WEB_PORT".into(), web_port.to_string()),
            ("HPFRIENDS_OPERATOR_TOKEN".into(), TOKEN.into()),
            ("HPFRIENDS_CLUSTER_SECRET".into(), "compose-test-cluster-secret-0123456789".into()),
        ],
    };
    let up = stack.run(&["up", "-d"]);
    assert!(up.status.success(), "compose up failed:\n{}", String::from_utf8_lossy(&up.stderr));

    let api: SocketAddr = format!("127.0.0.1:{api_port}").parse().unwrap();
    let ctl = |args: &[&str]| {
        Command::new(hpfriends_bin())
            .args(["ctl", "--json", "--server", &format!("http://{api}"), "--token", TOKEN])
            .args(args)
            .output()
            .unwrap()
    };
    let three_voters = wait_for("three voters in the compose cluster", DEADLINE * 4, || {
        let out = ctl(&["cluster", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let nodes = v["nodes"].as_array()?;
        (nodes.len() == 3 && nodes.iter().all(|n| n["voter"] == true)).then(|| v.to_string())
    });
    assert!(three_voters.is_ok(), "{three_voters:?}\n{}", stack.logs());
    println!("compose cluster: {}", three_voters.unwrap());

    let graph = r#"{"users": ["sensors", "analyst"],
        "shares": [{"from": "sensors", "to": "analyst", "channel": "c", "kind": "shares"}],
        "keys": [{"ident": "pub", "secret": "pub-secret", "owner": "sensors", "publish": ["c"]},
                 {"ident": "sub", "secret": "sub-secret", "owner": "analyst", "subscribe": ["c"], "publish": ["c"]}]}"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), graph).unwrap();
    let applied = ctl(&["apply", file.path().to_str().unwrap()]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));

    let lb: SocketAddr = format!("127.0.0.1:{hpfeeds_port}").parse().unwrap();
    wait_for("HAProxy to route to a ready node", DEADLINE, || {
        std::net::TcpStream::connect(lb).ok()?;
        (http_status(api, "/readyz").ok()? == 200).then_some(())
    })
    .unwrap();
    let sub = Subscriber::start(lb, "sub", "sub-secret", "c").unwrap();
    sync(lb, &sub, "sub", "sub-secret", "c", "through-haproxy").unwrap();
    // The subscriber's own marker proves the path; a message from another
    // user, through the share, proves the graph is on it.
    sync(lb, &sub, "pub", "pub-secret", "c", "shared-through-haproxy").unwrap();
    assert!(sub.saw("publish to c by pub: b'shared-through-haproxy'"), "{:?}", sub.lines());

    // The web app through HAProxy, which sends the browser's address in a PROXY
    // protocol header that the nodes take from it alone.
    let web: SocketAddr = format!("127.0.0.1:{web_port}").parse().unwrap();
    let page = wait_for("the web app through HAProxy", DEADLINE, || {
        hpfriends_cluster_tests::http_get(web, "/sign-in").ok().filter(|(status, _)| *status == 200)
    });
    assert!(page.is_ok_and(|(_, body)| body.contains("Sign in")), "{}", stack.logs());
}
