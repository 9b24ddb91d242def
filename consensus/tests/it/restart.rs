//! A node on a real RocksDB data dir keeps its graph across restarts, with and
//! without a snapshot in between.

use std::time::Duration;

use hpfriends_consensus::{ConsensusNode, NodeInfo, NodeOptions, WriteError};
use hpfriends_graph::{Actor, Command, GraphError, ShareKind, Target};

async fn start(dir: &std::path::Path) -> ConsensusNode {
    start_at_version(dir, hpfriends_graph::COMMAND_VERSION).await
}

async fn start_at_version(dir: &std::path::Path, command_version: u32) -> ConsensusNode {
    let node = ConsensusNode::start(NodeOptions {
        node_id: 1,
        data_dir: dir.to_path_buf(),
        info: NodeInfo::default(),
        bootstrap: true,
        trust: hpfriends_consensus::cluster_tls::Trust::Secret(b"a-secret-of-at-least-thirty-two-chars".to_vec()),
        snapshot_every_logs: 5_000,
        command_version,
        on_apply: std::sync::Arc::new(()),
    })
    .await
    .unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    node
}

fn user(name: &str) -> Command {
    Command::AddUser { name: name.into() }
}

#[tokio::test]
async fn given_writes_when_node_restarts_then_graph_and_index_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    node.write(Actor::Operator, user("jojo")).await.unwrap();
    node.write(Actor::Operator, user("mark")).await.unwrap();
    let to = Target::User("mark".into());
    node.write(
        Actor::Operator,
        Command::AddShare {
            from: "jojo".into(),
            to: to.clone(),
            channel: "c".into(),
            kind: ShareKind::Shares,
            with_history: false,
        },
    )
    .await
    .unwrap();
    // A rejected command is committed but changes nothing, and says why.
    let err = node.write(Actor::Operator, user("jojo")).await.unwrap_err();
    assert!(matches!(err, WriteError::Rejected(GraphError::UserExists(ref u)) if u == "jojo"), "{err:?}");

    // Snapshot half-way, so recovery uses the snapshot *and* the log after it.
    node.raft().trigger().snapshot().await.unwrap();
    node.raft().wait(Some(Duration::from_secs(10))).metrics(|m| m.snapshot.is_some(), "snapshot built").await.unwrap();
    node.write(Actor::Operator, Command::AcceptShare { from: "jojo".into(), to, channel: "c".into() }).await.unwrap();
    let may_read = |node: &ConsensusNode| node.read_index(|g, index| index.may_read_by_name(g, "jojo", "mark", "c"));
    assert!(may_read(&node));
    let before = node.read_graph(|g| g.clone());
    node.shutdown().await;
    drop(node);

    let node = start(dir.path()).await;
    let last = node.raft().metrics().borrow().last_log_index.unwrap();
    node.raft().wait(Some(Duration::from_secs(10))).applied_index_at_least(Some(last), "log re-applied").await.unwrap();
    assert_eq!(node.read_graph(|g| g.clone()), before);
    assert!(may_read(&node));
    node.shutdown().await;
}

#[tokio::test]
async fn given_a_retried_write_with_the_same_id_then_applied_once_and_answered_alike() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let request = hpfriends_consensus::Request {
        command: user("once"),
        actor: Actor::Operator,
        id: Some("request-1".into()),
        origin: None,
    };
    let first = node.raft().client_write(request.clone()).await.unwrap().data;
    let second = node.raft().client_write(request).await.unwrap().data;
    assert_eq!(first.result, Ok(()));
    assert_eq!(second.result, Ok(()), "a retry must not be applied again (it would say the user exists)");
    // Without an id, the same command is applied again and rejected.
    let third = node
        .raft()
        .client_write(hpfriends_consensus::Request {
            command: user("once"),
            actor: Actor::Operator,
            id: None,
            origin: None,
        })
        .await
        .unwrap()
        .data;
    assert!(matches!(third.result, Err(GraphError::UserExists(_))));
    let history = node.history().page(None, 10, |_| true).unwrap();
    assert_eq!(history.events.len(), 1, "one change, recorded once: {:?}", history.events);
    node.shutdown().await;
}

#[tokio::test]
async fn given_an_account_entry_when_the_node_runs_the_previous_version_then_refused_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let invite = Command::InviteUser { name: "newcomer".into(), token_hash: "ab".repeat(32), expires_at: u64::MAX };
    let previous = hpfriends_graph::COMMAND_VERSION - 1;
    let node = start_at_version(dir.path(), previous).await;
    let before = node.metrics().borrow().last_log_index;
    let err = node.write(Actor::Operator, invite.clone()).await.unwrap_err();
    assert!(matches!(err, WriteError::NeedsUpgrade(_)), "{err}");
    assert!(err.to_string().contains(&format!("needs command version {}", previous + 1)), "{err}");
    assert_eq!(node.metrics().borrow().last_log_index, before, "a refused entry reaches no log");
    node.shutdown().await;
    drop(node);

    // The same data dir under this version: the entry is written and applied.
    let node = start(dir.path()).await;
    node.write(Actor::Operator, invite).await.unwrap();
    assert!(node.read_graph(|g| g.user("newcomer").is_some_and(|u| u.account.invitation.is_some())));
    node.shutdown().await;
}
