//! Feeds arbitrary bytes to a share's filter (docs/sharing.md, "Filters"): the
//! first line is the `where` expression, the second the pointers to redact
//! and to pseudonymize (space-separated, `|` between the two lists), the rest
//! the payload. A filter that compiles is applied to the payload. Nothing may
//! panic, and what a rewrite delivers is JSON.
#![no_main]

use hpfriends_graph::{Filter, Message, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(condition), Some(pointers), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(condition), Ok(pointers)) = (std::str::from_utf8(condition), std::str::from_utf8(pointers)) else {
        return;
    };
    let (redact, pseudonymize) = pointers.split_once('|').unwrap_or((pointers, ""));
    let list = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let filter = Filter {
        condition: (!condition.is_empty()).then(|| condition.to_string()),
        redact: list(redact),
        pseudonymize: list(pseudonymize),
    };
    let Ok(compiled) = filter.compile() else { return };
    let msg = Message { channel: "c", ident: "i", payload };
    if let Outcome::Pass(Some(rewritten)) = compiled.apply(msg, b"key") {
        assert!(serde_json::from_slice::<serde_json::Value>(&rewritten).is_ok(), "a rewrite delivers JSON");
    }
});
