//! What recording the history costs the graph write path: one entry of a
//! 10,000-command declaration (2,000 users, 2,000 keys, 3,000 shares offered
//! and accepted), applied by the real state machine on RocksDB (numbering
//! the changes and handing the entry to the history's recorder thread),
//! against the same command applied to the graph and its sharing index
//! alone. Medians of fresh runs; prints the figures; checks afterwards that
//! all 10,000 changes were written.
//! `cargo bench -p hpfriends-consensus --bench history`

use std::sync::Arc;
use std::time::{Duration, Instant};

use hpfriends_consensus::store::{open_db, StateMachineStore};
use hpfriends_consensus::{Entry, LogId, Origin, Request};
use hpfriends_graph::{Actor, AuthKey, Command, Graph, ShareKind, SharingIndex, Target};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};

const RUNS: usize = 15;

fn declaration() -> Command {
    let mut commands = Vec::new();
    let user = |i: usize| format!("user{i}");
    commands.extend((0..2_000).map(|i| Command::AddUser { name: user(i) }));
    commands.extend((0..2_000).map(|i| {
        Command::AddKey(AuthKey {
            ident: format!("sensor{i}"),
            secret: format!("secret-of-sensor-{i}-0123456789"),
            owner: user(i),
            publish: vec![format!("channel{}", i % 50)],
            subscribe: vec![format!("channel{}", (i + 1) % 50)],
            resume: false,
        })
    }));
    for i in 0..3_000 {
        let (from, to, channel) =
            (user(i % 2_000), Target::User(user((i * 7 + 1) % 2_000)), format!("channel{}", i % 60));
        commands.push(Command::AddShare {
            from: from.clone(),
            to: to.clone(),
            channel: channel.clone(),
            kind: ShareKind::Shares,
            with_history: false,
        });
        commands.push(Command::AcceptShare { from, to, channel });
    }
    assert_eq!(commands.len(), 10_000);
    Command::Batch { commands }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let command = declaration();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut with_history = Vec::new();
    let mut graph_only = Vec::new();
    for _ in 0..RUNS {
        // The state machine (graph, index, keys, history) on a fresh store.
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open_db(&dir.path().join("raft")).unwrap();
        let mut machine = StateMachineStore::load(db, hpfriends_graph::COMMAND_VERSION, Arc::new(())).unwrap();
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(Request {
                command: command.clone(),
                actor: Actor::Operator,
                id: None,
                origin: Some(Origin { node: 1, at: 1_800_000_000 }),
            }),
        };
        let started = Instant::now();
        let answers = runtime.block_on(machine.apply([entry])).unwrap();
        with_history.push(started.elapsed());
        assert_eq!(answers[0].result, Ok(()));
        // Written by the recorder thread meanwhile (off the write path); checked after the clock stopped.
        let recorded = machine.shared().history().page(None, 1, |_| true).unwrap();
        assert_eq!(recorded.events[0].seq, 9_999, "every command was recorded");

        // The same command on the graph and its index alone.
        let mut graph = Graph::new();
        let mut index = SharingIndex::build(&graph);
        let started = Instant::now();
        let applied = graph.apply(&command).unwrap();
        index.update(&graph, &applied);
        graph_only.push(started.elapsed());
    }
    let (with, without) = (median(with_history), median(graph_only));
    println!("10,000-command declaration, one entry, median of {RUNS} fresh runs:");
    println!("  state machine apply, history handed to its recorder: {:>7.1} ms", with.as_secs_f64() * 1e3);
    println!("  graph + sharing index alone:                         {:>7.1} ms", without.as_secs_f64() * 1e3);
    println!("  ratio: {:+.1} %", 100.0 * (with.as_secs_f64() / without.as_secs_f64() - 1.0));
}
