//! No import circle spans two top-level modules of the broker
//! (`scripts/import-cycles`, ARCHITECTURE.md): `cluster/` never reaches back
//! into `http/` or `web/`, `routing/` never into the cluster's link tasks.

use std::path::Path;
use std::process::Command;

#[test]
fn given_the_broker_source_then_no_import_circle_spans_two_modules() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/import-cycles");
    let out = Command::new("python3").arg(&script).output().expect("python3 runs scripts/import-cycles");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("no import circle spans"), "{text}");
}
