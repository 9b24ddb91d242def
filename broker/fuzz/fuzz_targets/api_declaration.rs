//! Feeds arbitrary bytes to what `POST /api/v1/apply` does with its body:
//! JSON decoding of a declaration, then planning it against a small graph.
//! Nothing may panic, whatever the plan and its application decide.
#![no_main]

use hpfriends_graph::declare::{plan, Declaration};
use hpfriends_graph::{Command, Graph};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(decl) = serde_json::from_slice::<Declaration>(data) else { return };
    let mut graph = Graph::default();
    let base = r#"{"users": ["jojo", "mark"], "groups": [{"name": "g", "admins": ["mark"], "members": ["mark"]}],
        "shares": [{"from": "jojo", "to": "mark", "channel": "c", "kind": "shares"}],
        "keys": [{"ident": "k", "secret": "secret-1", "owner": "jojo", "publish": ["c"]}]}"#;
    let base: Declaration = serde_json::from_str(base).unwrap();
    let setup = plan(&base, &graph).unwrap();
    graph.apply(&Command::Batch { commands: setup }).unwrap();
    if let Ok(commands) = plan(&decl, &graph) {
        let _ = graph.apply(&Command::Batch { commands });
    }
});
