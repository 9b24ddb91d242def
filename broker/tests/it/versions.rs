//! The version gate seen through the HTTP API (ARCHITECTURE.md, "Versions
//! side by side"): an account entry (command version 2) is refused by a node
//! that plays the previous release, and nothing is written meanwhile.

use crate::common::start_node;

#[tokio::test]
async fn given_a_node_of_the_previous_version_then_an_invitation_is_409_needs_upgrade_and_nothing_written() {
    let previous = start_node(|c| c.command_version = hpfriends_graph::COMMAND_VERSION - 1).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", previous.running.http_addr);
    let token = previous.running.operator_token.clone();
    let resp = http.post(format!("{base}/api/v1/users/newcomer/invite")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "needs_upgrade", "{body}");
    let users: serde_json::Value =
        http.get(format!("{base}/api/v1/users")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(users["users"], serde_json::json!([]), "nothing was written");

    // A node of this version writes it.
    let current = start_node(|_| {}).await;
    let base = format!("http://{}", current.running.http_addr);
    let token = current.running.operator_token.clone();
    let resp = http.post(format!("{base}/api/v1/users/newcomer/invite")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["link"].as_str().unwrap().starts_with(&format!("{base}/invite/")), "{body}");
}
