//! The sharing scenarios of docs/sharing.md, as data files in `testdata/`.
//!
//! Each line is a graph command or an expectation:
//! `users A B`, `group G by A`, `invite G U`, `join G U`, `leave G U`,
//! `share F -> T CHAN KIND`, `accept F -> T CHAN`, `remove F -> T CHAN`, `key IDENT OWNER`,
//! `expect readers P CHAN = U… | -`, `expect allowed|denied P -> V CHAN`,
//! `expect explain P -> V CHAN = PATH | none | own`,
//! `filter F -> T CHAN {JSON filter}`, `unfilter F -> T CHAN`,
//! `expect gets P -> V CHAN PAYLOAD => nothing | original | JSON` (in the JSON,
//! `hash(U,VALUE)` stands for U's pseudonym of the JSON string VALUE).

use std::fs;
use std::path::Path;

use hpfriends_graph::filter::pseudonym;
use hpfriends_graph::{explain, AuthKey, Command, Explanation, Graph, Message, ShareKind, SharingIndex, Target};

/// The pseudonym key every sender in the scenarios is given.
const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Run {
    graph: Graph,
    index: SharingIndex,
}

impl Run {
    fn apply(&mut self, cmd: Command, line: &str) {
        let applied = self.graph.apply(&cmd).unwrap_or_else(|e| panic!("{line}: {e}"));
        self.index.update(&self.graph, &applied);
        // The incrementally kept index must equal a fresh build after every step.
        let fresh = SharingIndex::build(&self.graph);
        for c in self.graph.channels() {
            for u in self.graph.users().map(|(u, _)| u) {
                assert_eq!(
                    self.index.reader_names(&self.graph, u, c),
                    fresh.reader_names(&self.graph, u, c),
                    "{line}: incremental index differs from a rebuild for ({u}, {c})"
                );
                let id = self.graph.user_id(u).unwrap();
                assert_eq!(self.index.readers(id, c), fresh.readers(id, c), "{line}: routes of ({u}, {c})");
            }
        }
    }
}

fn run_file(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    let mut run = Run { graph: Graph::new(), index: SharingIndex::default() };
    let mut expectations = 0;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let s = |i: usize| w[i].to_string();
        let cmd = match w.as_slice() {
            ["users", names @ ..] => {
                for n in names {
                    run.apply(Command::AddUser { name: n.to_string() }, line);
                }
                continue;
            }
            ["group", _, "by", _] => Command::AddGroup { name: s(1), creator: s(3) },
            ["invite", _, _] => Command::InviteMember { group: s(1), user: s(2) },
            ["join", _, _] => Command::AcceptMembership { group: s(1), user: s(2) },
            ["leave", _, _] => Command::RemoveMember { group: s(1), user: s(2) },
            ["share", _, "->", _, _, kind] => Command::AddShare {
                from: s(1),
                to: Target::parse(w[3]),
                channel: s(4),
                kind: match *kind {
                    "shares" => ShareKind::Shares,
                    "shares_all" => ShareKind::SharesAll,
                    other => panic!("{line}: unknown kind {other}"),
                },
                with_history: false,
            },
            ["accept", _, "->", _, _] => Command::AcceptShare { from: s(1), to: Target::parse(w[3]), channel: s(4) },
            ["remove", _, "->", _, _] => Command::RemoveShare { from: s(1), to: Target::parse(w[3]), channel: s(4) },
            ["key", _, _] => Command::AddKey(AuthKey {
                ident: s(1),
                secret: "secret".into(),
                owner: s(2),
                publish: vec![],
                subscribe: vec![],
                resume: false,
            }),
            ["filter", _, "->", _, _, ..] => Command::SetShareFilter {
                from: s(1),
                to: Target::parse(w[3]),
                channel: s(4),
                filter: Some(serde_json::from_str(&w[5..].join(" ")).unwrap_or_else(|e| panic!("{line}: {e}"))),
                key: Some(KEY.into()),
            },
            ["unfilter", _, "->", _, _] => {
                Command::SetShareFilter { from: s(1), to: Target::parse(w[3]), channel: s(4), filter: None, key: None }
            }
            ["expect", "gets", p, "->", v, c, ..] => {
                let rest = line.strip_prefix(&w[..6].join(" ")).unwrap().trim();
                let (payload, want) = rest.split_once(" => ").unwrap_or_else(|| panic!("{line}: no =>"));
                let got = gets(&run, p, v, c, payload.as_bytes());
                let want = match want {
                    "nothing" => None,
                    "original" => Some(payload.as_bytes().to_vec()),
                    json => Some(with_pseudonyms(&run.graph, json).into_bytes()),
                };
                let as_json =
                    |b: &Option<Vec<u8>>| b.as_ref().map(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
                if as_json(&got).flatten().is_some() {
                    assert_eq!(as_json(&got), as_json(&want), "{}: {line}", path.display());
                } else {
                    assert_eq!(got, want, "{}: {line}", path.display());
                }
                expectations += 1;
                continue;
            }
            ["expect", "readers", p, c, "=", rest @ ..] => {
                let want: Vec<String> =
                    if rest == ["-"] { vec![] } else { rest.iter().map(|x| x.to_string()).collect() };
                let got = run.index.reader_names(&run.graph, p, c);
                assert_eq!(got, want, "{}: {line}", path.display());
                expectations += 1;
                continue;
            }
            ["expect", verdict @ ("allowed" | "denied"), p, "->", v, c] => {
                let got = run.index.may_read_by_name(&run.graph, p, v, c);
                assert_eq!(got, *verdict == "allowed", "{}: {line}", path.display());
                expectations += 1;
                continue;
            }
            ["expect", "explain", p, "->", v, c, "=", rest @ ..] => {
                let got = explain(&run.graph, p, v, c);
                let got_text = match &got {
                    Explanation::Own => "own".to_string(),
                    Explanation::None => "none".to_string(),
                    path @ Explanation::Path { .. } => path.to_string(),
                };
                assert_eq!(got_text, rest.join(" "), "{}: {line}", path.display());
                // explain and the index must agree.
                assert_eq!(
                    !matches!(got, Explanation::None),
                    run.index.may_read_by_name(&run.graph, p, v, c),
                    "{line}"
                );
                expectations += 1;
                continue;
            }
            _ => panic!("{}: cannot parse {line:?}", path.display()),
        };
        run.apply(cmd, line);
    }
    assert!(expectations > 0, "{} checks nothing", path.display());
}

/// What `reader` receives of `payload` published by `publisher` on `channel`.
fn gets(run: &Run, publisher: &str, reader: &str, channel: &str, payload: &[u8]) -> Option<Vec<u8>> {
    if !run.index.may_read_by_name(&run.graph, publisher, reader, channel) {
        return None;
    }
    let (p, v) = (run.graph.user_id(publisher)?, run.graph.user_id(reader)?);
    let msg = Message { channel, ident: "sensor", payload };
    match run.index.readers(p, channel).and_then(|r| r.routes(v)) {
        None => Some(payload.to_vec()),
        Some(routes) => routes.version(msg).map(|v| v.unwrap_or_else(|| payload.to_vec())),
    }
}

/// Replaces each `hash(U,VALUE)` with U's pseudonym of the string VALUE.
fn with_pseudonyms(graph: &Graph, text: &str) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find("hash(") {
        let end = start + out[start..].find(')').expect("hash(U,VALUE)");
        let (user, value) = out[start + 5..end].split_once(',').expect("hash(U,VALUE)");
        let hex = graph.user(user).and_then(|u| u.pseudonym_key.clone()).expect("a sender with a key");
        let key: Vec<u8> =
            (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        let token = pseudonym(&key, &serde_json::Value::String(value.to_string()));
        out.replace_range(start..=end, &token);
    }
    out
}

#[test]
fn given_design_scenarios_when_applied_then_readers_match() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 6, "expected the six scenarios in {}", dir.display());
    for f in files {
        run_file(&f);
    }
}
