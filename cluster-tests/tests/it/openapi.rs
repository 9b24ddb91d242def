//! schemathesis (PyPI) against a live node, from the node's own OpenAPI
//! description: generated requests to every operation, as the operator and
//! as a user; no answer may be a 5xx, carry a status the description does
//! not list, or a body that does not match its schema.

use std::process::Command;
use std::time::Duration;

use hpfriends_cluster_tests::{hpfriends_bin, run_to_exit, schemathesis_cli, NodeProcess};

fn schemathesis(node: &NodeProcess, token: &str) -> (bool, String) {
    let mut cmd = Command::new(schemathesis_cli().unwrap());
    cmd.arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", node.http_addr))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "7"])
        .env("NO_COLOR", "1");
    let (exited, status, out) = run_to_exit(cmd, Duration::from_secs(600));
    assert!(exited, "schemathesis did not finish:\n{out}");
    (status.success(), out)
}

#[test]
fn given_a_live_node_then_every_answer_matches_its_openapi_description_for_operator_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("n"), &[]).unwrap();
    node.apply(
        r#"{"users": ["jojo", "mark"],
            "groups": [{"name": "honeynet", "admins": ["mark"], "members": ["mark"]}],
            "shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
            "keys": [{"ident": "jojo-sensor", "secret": "sensor-secret", "owner": "jojo", "publish": ["c"]}]}"#,
    )
    .unwrap();
    // The user first: the operator's run may remove that user.
    let user_token = node.ctl(&["user", "token", "jojo"]).unwrap();
    for (who, token) in [("a user", user_token.trim().to_string()), ("the operator", node.token.clone())] {
        let (ok, out) = schemathesis(&node, &token);
        println!("{out}");
        assert!(ok, "as {who}:\n{out}");
        assert!(!out.contains("Errored:"), "as {who}, operations errored:\n{out}");
    }
    assert!(node.is_running(), "the node died under generated requests");
}
