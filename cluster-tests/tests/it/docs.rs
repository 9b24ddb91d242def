//! The documentation runs: the shell blocks of README.md (the five-minute
//! walkthrough, the cluster example) and the declaration of docs/cli.md are
//! run as written against real nodes, and the output their comments show
//! must appear. What the test substitutes: the binary's path, free ports for
//! the ones the text names, and a temporary directory as the working one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hpfriends_cluster_tests::{
    free_port, hpfriends_bin, http_status, run_to_exit, wait_for, NodeProcess, Service, DEADLINE,
};

const README: &str = include_str!("../../../README.md");
const CLI_MD: &str = include_str!("../../../docs/cli.md");

/// The first fenced block of `lang` after `heading`.
fn block_after(markdown: &str, heading: &str, lang: &str) -> String {
    let from = markdown.find(heading).unwrap_or_else(|| panic!("no heading {heading:?}"));
    let fence = format!("```{lang}\n");
    let start = markdown[from..].find(&fence).map(|i| from + i + fence.len()).expect("a block after the heading");
    let end = markdown[start..].find("```").map(|i| start + i).expect("the block's end");
    markdown[start..end].to_string()
}

/// The output a block's comments promise: `#   TEXT` lines, up to a
/// parenthesized remark.
fn promised(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#   "))
        .map(|l| l.split("   (").next().unwrap_or(l).trim().to_string())
        .collect()
}

/// Every port the text names after `127.0.0.1:`, `0.0.0.0:` or `-p ` with
/// a free one instead (the same port maps to the same free one), and the map.
fn with_free_ports(text: &str) -> (String, BTreeMap<u16, u16>) {
    let mut map = BTreeMap::new();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, prefix)) =
        ["127.0.0.1:", "0.0.0.0:", "-p "].iter().filter_map(|p| rest.find(p).map(|i| (i, *p))).min()
    {
        let digits_at = at + prefix.len();
        let digits = rest[digits_at..].bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..digits_at]);
        match rest[digits_at..digits_at + digits].parse::<u16>() {
            Ok(port) => {
                let free = *map.entry(port).or_insert_with(|| free_port().expect("a free port"));
                out.push_str(&free.to_string());
            }
            Err(_) => out.push_str(&rest[digits_at..digits_at + digits]),
        }
        rest = &rest[digits_at + digits..];
    }
    out.push_str(rest);
    (out, map)
}

/// A directory whose `hpfriends` is this build's binary, for `PATH`.
fn bin_dir(dir: &Path) -> PathBuf {
    let bins = dir.join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    std::os::unix::fs::symlink(hpfriends_bin(), bins.join("hpfriends")).unwrap();
    bins
}

/// Runs `script` with bash in `dir`, then ends whatever it left in the
/// background; returns its output, failing the test if it failed.
fn run_script(dir: &Path, script: &str, env: &[(&str, String)]) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let full = format!(
        "set -eu\nshopt -s expand_aliases\n{script}\nsleep 1\nkill $(jobs -p) 2>/dev/null || true\nwait 2>/dev/null || true\n"
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&full).current_dir(dir);
    cmd.env("PATH", format!("{}:{path}", bin_dir(dir).display())).env("PYTHONUNBUFFERED", "1");
    cmd.env_remove("HPFRIENDS_TOKEN").env_remove("HPFRIENDS_SERVER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (exited, status, out) = run_to_exit(cmd, Duration::from_secs(120));
    assert!(exited && status.success(), "the block failed ({status}):\n{full}\n--- output ---\n{out}");
    out
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn given_the_readme_walkthrough_when_run_as_written_then_mark_and_alice_receive_and_eve_does_not() {
    let block = block_after(README, "## Five minutes", "sh");
    let (script, ports) = with_free_ports(&block);
    let script = script
        .replace("/var/tmp/hpfriends-target/release/hpfriends", &hpfriends_bin().display().to_string())
        .replace("scripts/hpfeeds-venv", &repo().join("scripts/hpfeeds-venv").display().to_string());
    // The walkthrough's node: `hpfriends serve` with no arguments, in the
    // directory the block runs in (its data in ./data), on the free ports.
    let dir = tempfile::tempdir().unwrap();
    let hpfeeds = ports[&10000];
    let (http, cluster) = (free_port().unwrap(), free_port().unwrap());
    let mut serve = Command::new(hpfriends_bin());
    serve.arg("serve").current_dir(dir.path());
    serve.env("HPFRIENDS_HPFEEDS_ADDR", format!("127.0.0.1:{hpfeeds}"));
    serve.env("HPFRIENDS_HTTP_ADDR", format!("127.0.0.1:{http}"));
    serve.env("HPFRIENDS_CLUSTER_ADDR", format!("127.0.0.1:{cluster}"));
    let _node = Service::start("hpfriends serve", serve).unwrap();
    let http_addr = format!("127.0.0.1:{http}").parse().unwrap();
    wait_for("the node to be ready", DEADLINE, || http_status(http_addr, "/readyz").ok().filter(|s| *s == 200))
        .unwrap();

    let out = run_script(dir.path(), &script, &[("HPFRIENDS_SERVER", format!("http://127.0.0.1:{http}"))]);
    // Occurrences, not lines: the subscribers print to one pipe, and two of
    // their lines can land on one when their writes interleave.
    let count = |line: &str| out.matches(line).count();
    let promises = promised(&block);
    assert_eq!(promises.len(), 4, "the walkthrough promises four outputs: {promises:?}");
    // Mark's subscriber once, eve's never; then mark's and alice's, not eve's.
    assert_eq!(count(&promises[0]), 1, "jojo's capture reaches mark only:\n{out}");
    assert_eq!(count(&promises[1]), 2, "the relayed message reaches mark and alice only:\n{out}");
    assert_eq!(count(&promises[2]), 1, "explain shows the relay path:\n{out}");
    // The filter: mark and alice get the message without saddr, nobody the dropped one.
    assert_eq!(count(&promises[3]), 2, "the filtered version reaches mark and alice only:\n{out}");
    let hidden = ["by jojo-sensor: b'{\"md5\": \"private\"}'", "203.0.113.9"];
    assert!(hidden.iter().all(|h| !out.contains(h)), "nothing the filter hides:\n{out}");
}

#[test]
fn given_the_readme_cluster_example_when_run_as_written_then_three_nodes_answer() {
    let block = block_after(README, "## A cluster", "sh");
    let (script, ports) = with_free_ports(&block);
    let dir = tempfile::tempdir().unwrap();
    let out = run_script(dir.path(), &script, &[]);
    // Each node listed with the HTTP address its command gave it.
    for id in 1..=3u16 {
        let http = format!("http 127.0.0.1:{}", ports[&(8080 + id)]);
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(&format!("node {id}")) && l.contains(&http)),
            "cluster status lists node {id} at {http}:\n{out}"
        );
    }
    for n in 1..=3 {
        assert!(dir.path().join(format!("data{n}/raft")).exists(), "node {n} keeps its data in data{n}");
    }
}

#[test]
fn given_the_declaration_of_docs_cli_md_when_applied_then_the_graph_holds_its_paths() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("data"), &[]).unwrap();
    node.wait_ready().unwrap();
    let declaration = block_after(CLI_MD, "### The declaration of `ctl apply`", "json");
    let applied: serde_json::Value = serde_json::from_str(&node.apply(&declaration).unwrap()).unwrap();
    assert!(applied["changes"].as_u64().unwrap() > 0, "{applied}");
    let explain = |to: &str, channel: &str| {
        let out = node.ctl(&["explain", "--from", "jojo", "--to", to, "--channel", channel]).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["text"].as_str().unwrap().to_string()
    };
    assert_eq!(explain("alice", "dionaea.captures"), "jojo -[shares]-> mark -[shares_all]-> alice");
    let via_group = explain("alice", "geoloc.events");
    assert!(via_group.contains("group:honeynet"), "{via_group}");
}
