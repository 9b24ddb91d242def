//! A damaged data dir refuses to start, names the damage, and is left as it
//! was; it never comes back empty or shortened, and never disturbs its cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hpfriends_cluster_tests::{hpfriends_bin, run_to_exit, wait_for, Cluster, NodeProcess, DEADLINE};

/// A node's data dir with users both in SST files (flushed by a restart) and
/// only in the write-ahead log (the node was killed after writing them).
fn used_data_dir(parent: &Path) -> PathBuf {
    let data = parent.join("data");
    let mut node = NodeProcess::start(&hpfriends_bin(), &data, &[]).unwrap();
    let users: Vec<String> = (0..16).map(|i| format!("\"flushed-{i}\"")).collect();
    node.apply(&format!(r#"{{"users": [{}]}}"#, users.join(","))).unwrap();
    node.restart().unwrap(); // recovery flushes the WAL into an SST file
    for i in 0..16 {
        node.ctl(&["user", "add", &format!("in-wal-{i}")]).unwrap();
    }
    node.kill();
    data
}

/// Every file of the Raft store with its bytes.
fn contents(raft: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(raft)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// The one file in `raft` whose name ends with `suffix` (the largest, if several).
fn file_ending(raft: &Path, suffix: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(raft)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(suffix))
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    files.pop().unwrap_or_else(|| panic!("no *{suffix} in {}", raft.display()))
}

fn file_starting(raft: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(raft)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {}", raft.display()))
}

/// `hpfriends serve` on `data`: it must exit non-zero by itself; returns what it printed.
fn refused_start(data: &Path) -> String {
    let mut cmd = Command::new(hpfriends_bin());
    cmd.arg("serve").arg("--data-dir").arg(data);
    cmd.args(["--hpfeeds-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0"]);
    let (exited, status, text) = run_to_exit(cmd, Duration::from_secs(20));
    assert!(exited, "the node started on a damaged data dir:\n{text}");
    assert!(!status.success(), "exit status {status:?}:\n{text}");
    assert!(!text.contains("bootstrapping"), "{text}");
    text
}

fn check_damage(name: &str, damage: impl FnOnce(&Path), names: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = used_data_dir(dir.path());
    let raft = data.join("raft");
    damage(&raft);
    let before = contents(&raft);
    let text = refused_start(&data);
    println!("{name}: {}", text.lines().last().unwrap_or_default());
    assert!(text.contains("will not start"), "{name}: {text}");
    assert!(text.contains(names), "{name}: the error names {names:?}: {text}");
    assert!(text.contains("--join"), "{name}: the way out: {text}");
    assert!(contents(&raft) == before, "{name}: the refused start changed the store");
}

#[test]
fn given_a_damaged_store_then_the_node_refuses_to_start_names_the_file_and_changes_nothing() {
    check_damage(
        "WAL head overwritten",
        |raft| {
            let wal = file_ending(raft, ".log");
            let mut bytes = std::fs::read(&wal).unwrap();
            let n = bytes.len().min(4096);
            bytes[..n].fill(0xA5);
            std::fs::write(wal, bytes).unwrap();
        },
        ".log",
    );
    check_damage(
        "WAL cut mid-record",
        |raft| {
            let wal = file_ending(raft, ".log");
            let len = std::fs::metadata(&wal).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(wal).unwrap().set_len(len * 2 / 3 + 1).unwrap();
        },
        ".log",
    );
    check_damage(
        "MANIFEST cut in half",
        |raft| {
            let manifest = file_starting(raft, "MANIFEST");
            let len = std::fs::metadata(&manifest).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(manifest).unwrap().set_len(len / 2).unwrap();
        },
        "MANIFEST",
    );
    check_damage("CURRENT missing", |raft| std::fs::remove_file(raft.join("CURRENT")).unwrap(), "CURRENT");
    check_damage(
        "SST damaged",
        |raft| {
            let sst = file_ending(raft, ".sst");
            let mut bytes = std::fs::read(&sst).unwrap();
            let middle = bytes.len() / 3;
            for b in &mut bytes[middle..middle + 64] {
                *b ^= 0xFF;
            }
            std::fs::write(sst, bytes).unwrap();
        },
        ".sst",
    );
}

#[test]
fn given_an_undamaged_killed_node_then_it_comes_back_with_every_user() {
    let dir = tempfile::tempdir().unwrap();
    let data = used_data_dir(dir.path());
    let node = NodeProcess::start(&hpfriends_bin(), &data, &[]).unwrap();
    let users = node.ctl(&["user", "list"]).unwrap();
    for i in 0..16 {
        assert!(users.contains(&format!("flushed-{i}")) && users.contains(&format!("in-wal-{i}")), "{users}");
    }
}

#[test]
fn given_a_used_data_dir_then_it_never_serves_as_another_node_or_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let data = used_data_dir(dir.path());
    let err = NodeProcess::start(&hpfriends_bin(), &data, &["--node-id", "2"]).err().expect("refused");
    assert!(format!("{err:#}").contains("belongs to node 1, not node 2"), "{err:#}");
}

#[test]
fn given_three_nodes_when_one_restarts_on_a_damaged_store_then_it_refuses_and_the_other_two_go_on() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.nodes[0].ctl(&["user", "add", "before"]).unwrap();
    wait_for("the write on node 3", DEADLINE, || {
        c.nodes[2].ctl(&["user", "list"]).ok()?.contains("before").then_some(())
    })
    .unwrap();
    c.node(3).kill();
    let raft = c.nodes[2].data_dir.join("raft");
    let wal = file_ending(&raft, ".log");
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(len / 2).unwrap();
    let err = c.node(3).restart().err().expect("a damaged node must not start");
    assert!(format!("{err:#}").contains("will not start"), "{err:#}");
    let leader = c.wait_leader(DEADLINE).unwrap();
    assert!(leader != 3);
    c.nodes[0].ctl(&["user", "add", "after"]).unwrap();
    wait_for("the write on node 2", DEADLINE, || {
        c.nodes[1].ctl(&["user", "list"]).ok()?.contains("after").then_some(())
    })
    .unwrap();
}
