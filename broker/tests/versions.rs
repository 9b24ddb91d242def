//! The version gate seen through the HTTP API (ARCHITECTURE.md, "Versions
//! side by side"): an entry of a newer command version is refused until
//! every voter runs it, and nothing is written meanwhile.

mod common;

use common::start_node;

#[tokio::test]
async fn given_note_entry_of_next_version_then_409_needs_upgrade_and_nothing_written() {
    let n = start_node(|_| {}).await;
    let http = reqwest::Client::new();
    let note = serde_json::json!({"text": "upgrade finished"});
    let base = format!("http://{}", n.running.http_addr);
    let token = n.running.operator_token.clone();
    let resp = http.post(format!("{base}/api/v1/notes")).bearer_auth(&token).json(&note).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "needs_upgrade", "{body}");
    let notes = list_notes(&http, &base, &token).await;
    assert_eq!(notes["notes"], serde_json::json!([]));

    // A node running the next version writes it.
    let next = start_node(|c| c.command_version = hpfriends_graph::COMMAND_VERSION + 1).await;
    let base = format!("http://{}", next.running.http_addr);
    let token = next.running.operator_token.clone();
    let resp = http.post(format!("{base}/api/v1/notes")).bearer_auth(&token).json(&note).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let notes = list_notes(&http, &base, &token).await;
    assert_eq!(notes["notes"], serde_json::json!(["upgrade finished"]));
}

async fn list_notes(http: &reqwest::Client, base: &str, token: &str) -> serde_json::Value {
    http.get(format!("{base}/api/v1/notes")).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}
