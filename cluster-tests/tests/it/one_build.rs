//! The README's build, the fuzz targets and the tests share one build of every
//! dependency (ARCHITECTURE.md, "Tests"): each feature set a dependency gets in
//! the test build is one it also gets when the binary is built. A new
//! dev-dependency that turns on more features fails this test until
//! `workspace-hack/Cargo.toml` turns them on too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Each package `cargo tree` lists, with the feature sets it is built with.
fn feature_sets(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args(["tree", "--offline", "--prefix", "none", "--format", "{p}|{f}"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let Some((package, features)) = line.split_once('|') else { continue };
        let features = features.trim_end_matches(" (*)").trim();
        sets.entry(package.replace(" (proc-macro)", "")).or_default().insert(features.to_string());
    }
    sets
}

/// The feature sets of the test build that `built` lacks, one line each.
fn missing_from(built: &BTreeMap<String, BTreeSet<String>>, tests: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut missing = Vec::new();
    for (package, sets) in tests {
        let Some(built_sets) = built.get(package) else { continue };
        for set in sets.difference(built_sets) {
            missing.push(format!("{package}: tests build it with [{set}], the binary with {built_sets:?}"));
        }
    }
    missing
}

#[test]
fn given_the_workspace_then_the_binary_fuzz_targets_and_tests_build_each_dependency_with_the_same_features() {
    let tests = feature_sets(&["--workspace", "--edges", "normal,dev"]);
    for package in ["hpfriends", "hpfriends-fuzz"] {
        let built = feature_sets(&["--package", package, "--edges", "normal"]);
        // Guards the parsing: an empty answer would pass vacuously.
        assert!(built.keys().any(|p| p.starts_with("serde v")), "{package}: no serde in {built:?}");
        let missing = missing_from(&built, &tests);
        assert!(
            missing.is_empty(),
            "{package} builds dependencies with other features than the tests do (so both are compiled); turn these on in workspace-hack/Cargo.toml:\n{}",
            missing.join("\n")
        );
    }
}
