//! The web app in a real browser: cluster-tests/web/browser.py (Playwright
//! for Python driving Debian's chromium) against real `hpfriends serve`
//! processes. Screenshots go to `HPFRIENDS_SCREENSHOTS` (set it to
//! docs/screenshots to renew the README's pictures), else to a temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hpfriends_cluster_tests::{browser_python, hpfeeds_cli, hpfriends_bin, run_to_exit, Cluster, NodeProcess};

/// Runs `web/SCRIPT` with its `args` against `nodes`.
fn browser(script: &str, args: &[&str], nodes: &[&NodeProcess], shots: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("web").join(script);
    let urls: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.http_addr)).collect();
    let mut cmd = Command::new(browser_python().unwrap());
    cmd.arg(script)
        .args(args)
        .env("WEB_URLS", urls.join(","))
        .env("OPERATOR_TOKEN", &nodes[0].token)
        .env("HPFEEDS", hpfeeds_cli().unwrap())
        // Sensors log in to the last node (with three nodes: node 3).
        .env("HPFEEDS_ADDR", nodes[nodes.len() - 1].hpfeeds_addr.to_string())
        .env("SCREENSHOTS", shots);
    let (exited, status, out) = run_to_exit(cmd, Duration::from_secs(600));
    println!("{out}");
    assert!(exited, "the browser test did not finish:\n{out}");
    assert!(status.success() && out.contains("all checks passed"), "the browser test failed:\n{out}");
}

fn screenshots(tmp: &tempfile::TempDir) -> PathBuf {
    std::env::var_os("HPFRIENDS_SCREENSHOTS").map(PathBuf::from).unwrap_or_else(|| tmp.path().join("shots"))
}

#[test]
fn given_invited_users_in_a_browser_then_scenarios_one_to_three_deliver_as_the_graph_says() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("n"), &[]).unwrap();
    let shots = screenshots(&dir);
    browser("browser.py", &["scenarios"], &[&node], &shots);
    for page in [
        "sign-in",
        "invitation",
        "authkeys",
        "shares",
        "shared-with-you",
        "groups",
        "audience",
        "graph",
        "account",
        "operator",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
}

#[test]
fn given_three_nodes_then_a_session_made_on_one_works_on_another_and_ends_on_all() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    browser("browser.py", &["cluster"], &c.nodes.iter().collect::<Vec<_>>(), &dir.path().join("shots"));
}

#[test]
fn given_firefox_then_the_core_forms_work_and_every_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&hpfriends_bin(), &dir.path().join("n"), &[]).unwrap();
    browser("firefox.py", &[], &[&node], &dir.path().join("shots"));
}
