//! What a share lets through, and in which form (docs/sharing.md, "Filters").
//!
//! A filter has a condition (`where`, in CEL) and JSON Pointers whose values
//! are removed (`redact`) or replaced by a keyed hash (`pseudonymize`). It is
//! checked when the share is written, so every node compiles the same filters;
//! evaluation is bounded per message: no loops but `all`/`exists`/`exists_one`
//! over the payload, never nested, and regular expressions that run in linear
//! time (string literals, compiled once).

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelBool, CelString};
use cel::{Context, Env, ExecutionError, Program, Value};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::model::{Graph, ShareKind, Target, UserId};
use crate::GraphError;

/// Longest `where` expression, in bytes.
pub const MAX_WHERE_BYTES: usize = 4096;
/// Deepest nesting of a `where` expression (calls, operators, brackets).
pub const MAX_DEPTH: usize = 24;
/// Most pointers one filter lists (`redact` and `pseudonymize` together).
pub const MAX_POINTERS: usize = 32;
const MAX_POINTER_BYTES: usize = 256;
/// A pseudonym: base64url of the first 16 bytes of the HMAC-SHA256.
pub const PSEUDONYM_CHARS: usize = 22;
/// Compiled size a `matches` pattern may reach.
const REGEX_SIZE_LIMIT: usize = 1 << 18;

/// A share's filter as people write it. Each part is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A CEL condition over `payload`, `channel`, `ident` and `size`.
    #[serde(rename = "where", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// JSON Pointers (RFC 6901) whose values are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// JSON Pointers whose values are replaced by the sharer's keyed hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pseudonymize: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.condition.is_none() && self.redact.is_empty() && self.pseudonymize.is_empty()
    }

    /// Whether it changes the payload (a share that does cannot carry non-JSON payloads).
    pub fn rewrites(&self) -> bool {
        !self.redact.is_empty() || !self.pseudonymize.is_empty()
    }

    /// Checks and compiles it; the error names the part and the position.
    pub fn compile(&self) -> Result<CompiledFilter, GraphError> {
        let program = self.condition.as_deref().map(compile_where).transpose()?;
        if self.redact.len() + self.pseudonymize.len() > MAX_POINTERS {
            return Err(invalid("redact", format!("at most {MAX_POINTERS} pointers in all")));
        }
        let parse_all = |part: &'static str, list: &[String]| -> Result<Vec<Vec<String>>, GraphError> {
            list.iter().map(|p| parse_pointer(p).map_err(|reason| invalid(part, format!("{p:?}: {reason}")))).collect()
        };
        Ok(CompiledFilter {
            spec: self.clone(),
            program,
            redact: parse_all("redact", &self.redact)?,
            pseudonymize: parse_all("pseudonymize", &self.pseudonymize)?,
            counts: FilterCounts::default(),
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(c) = &self.condition {
            parts.push(format!("where {c}"));
        }
        if !self.redact.is_empty() {
            parts.push(format!("redact {}", self.redact.join(" ")));
        }
        if !self.pseudonymize.is_empty() {
            parts.push(format!("pseudonymize {}", self.pseudonymize.join(" ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// A pseudonym key as a command carries it: 32 bytes in hex.
pub(crate) fn check_key(key: &str) -> Result<(), GraphError> {
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    Err(invalid("pseudonymize", "a pseudonym key is 32 bytes in hex".into()))
}

fn invalid(part: &'static str, reason: String) -> GraphError {
    GraphError::InvalidFilter { part: part.to_string(), reason }
}

/// How often a filter let a message through, dropped it, or failed on it
/// (counted per share, never logged per message).
#[derive(Debug, Default)]
pub struct FilterCounts {
    pub passed: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
}

/// A checked filter, ready for messages.
pub struct CompiledFilter {
    spec: Filter,
    program: Option<Condition>,
    redact: Vec<Vec<String>>,
    pseudonymize: Vec<Vec<String>>,
    pub counts: FilterCounts,
}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CompiledFilter").field(&self.spec).finish()
    }
}

impl PartialEq for CompiledFilter {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}
impl Eq for CompiledFilter {}

impl CompiledFilter {
    pub fn spec(&self) -> &Filter {
        &self.spec
    }
    pub fn has_condition(&self) -> bool {
        self.program.is_some()
    }
    /// Pointers removed, then pointers pseudonymized: how much it hides.
    pub fn weight(&self) -> (usize, usize) {
        (self.redact.len(), self.pseudonymize.len())
    }
}

/// A share's compiled filter: cloned with the graph at the cost of an `Arc`,
/// stored and compared as the `Filter` people wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareFilter(Arc<CompiledFilter>);

impl ShareFilter {
    pub fn new(filter: &Filter) -> Result<ShareFilter, GraphError> {
        Ok(ShareFilter(Arc::new(filter.compile()?)))
    }
    pub fn compiled(&self) -> &Arc<CompiledFilter> {
        &self.0
    }
}

impl std::ops::Deref for ShareFilter {
    type Target = CompiledFilter;
    fn deref(&self) -> &CompiledFilter {
        &self.0
    }
}

impl Serialize for ShareFilter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.spec.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ShareFilter::new(&Filter::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One message as filters see it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub channel: &'a str,
    pub ident: &'a str,
    pub payload: &'a [u8],
}

/// What one filter made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: `None` when the payload is unchanged.
    Pass(Option<Vec<u8>>),
    /// The condition was false.
    Dropped,
    /// The condition failed (a missing field, a non-JSON payload where JSON
    /// was needed), or a rewriting filter met a payload that is not JSON.
    Error,
}

/// A payload's JSON, parsed at most once for all the filters one message
/// meets: its members borrowed in order (most filters read or drop a few of
/// them), or the whole value where a filter needs it.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    members: std::cell::OnceCell<Option<Members<'a>>>,
    whole: std::cell::OnceCell<Option<serde_json::Value>>,
}

/// A JSON object's members as written, each value still JSON text.
type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

impl<'a> Parsed<'a> {
    /// `None` when the payload is not a JSON object.
    fn members(&self, payload: &'a [u8]) -> Option<&Members<'a>> {
        self.members.get_or_init(|| serde_json::from_slice::<InOrder<'a>>(payload).ok().map(|m| m.0)).as_ref()
    }
    fn whole(&self, payload: &[u8]) -> Option<&serde_json::Value> {
        self.whole.get_or_init(|| serde_json::from_slice(payload).ok()).as_ref()
    }
}

/// Deserializes an object into its members in order, values unparsed.
struct InOrder<'a>(Members<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for InOrder<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = InOrder<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<InOrder<'de>, M::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push((k, v));
                }
                Ok(InOrder(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// What one filter did.
enum Applied {
    Same,
    Rewritten(Vec<u8>),
    Dropped,
    Error,
}

impl CompiledFilter {
    /// Applies the filter; `key` is the sharer's pseudonym key.
    pub fn apply(&self, msg: Message<'_>, key: &[u8]) -> Outcome {
        match self.apply_parsed(msg, &Parsed::default(), key) {
            Applied::Same => Outcome::Pass(None),
            Applied::Rewritten(v) => Outcome::Pass(Some(v)),
            Applied::Dropped => Outcome::Dropped,
            Applied::Error => Outcome::Error,
        }
    }

    fn apply_parsed<'a>(&self, msg: Message<'a>, parsed: &Parsed<'a>, key: &[u8]) -> Applied {
        let applied = self.applied(msg, parsed, key);
        let counter = match applied {
            Applied::Same | Applied::Rewritten(_) => &self.counts.passed,
            Applied::Dropped => &self.counts.dropped,
            Applied::Error => &self.counts.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        applied
    }

    fn applied<'a>(&self, msg: Message<'a>, parsed: &Parsed<'a>, key: &[u8]) -> Applied {
        if let Some(program) = &self.program {
            match program.evaluate(msg, parsed) {
                Ok(true) => {}
                Ok(false) => return Applied::Dropped,
                Err(_) => return Applied::Error,
            }
        }
        if !self.spec.rewrites() {
            return Applied::Same;
        }
        match parsed.members(msg.payload) {
            Some(members) => self.rewrite_members(members, key),
            None => match parsed.whole(msg.payload) {
                Some(json) => Applied::Rewritten(self.rewrite(json.clone(), key)),
                None => Applied::Error,
            },
        }
    }

    /// Removes and pseudonymizes in a whole value.
    fn rewrite(&self, mut json: serde_json::Value, key: &[u8]) -> Vec<u8> {
        for pointer in &self.redact {
            remove(&mut json, pointer);
        }
        for pointer in &self.pseudonymize {
            if let Some(value) = get_mut(&mut json, pointer) {
                *value = serde_json::Value::String(pseudonym(key, value));
            }
        }
        serde_json::to_vec(&json).expect("a JSON value serializes")
    }

    /// The object again, members in their order: those no pointer names
    /// copied as they were written, the others rewritten.
    fn rewrite_members(&self, members: &Members<'_>, key: &[u8]) -> Applied {
        let mut out = Vec::with_capacity(members.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>() + 2);
        out.push(b'{');
        for (name, raw) in members {
            let under =
                |pointers: &[Vec<String>]| pointers.iter().any(|p| p.first().map(String::as_str) == Some(&**name));
            let text: Cow<str> = if under(&self.redact) || under(&self.pseudonymize) {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(raw.get()) else { return Applied::Error };
                let mut one = serde_json::Value::Object([(name.to_string(), value)].into_iter().collect());
                let rewritten = self.rewrite(std::mem::take(&mut one), key);
                let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(&rewritten) else {
                    return Applied::Error;
                };
                match m.remove(&**name) {
                    None => continue,
                    Some(v) => Cow::Owned(v.to_string()),
                }
            } else {
                Cow::Borrowed(raw.get())
            };
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &**name).expect("a string serializes");
            out.push(b':');
            out.extend_from_slice(text.as_bytes());
        }
        out.push(b'}');
        Applied::Rewritten(out)
    }
}

/// The keyed hash that replaces a pseudonymized value: HMAC-SHA256 of the
/// value's compact JSON text, base64url, the first 16 bytes.
pub fn pseudonym(key: &[u8], value: &serde_json::Value) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(value.to_string().as_bytes());
    let digest = mac.finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

fn get_mut<'a>(json: &'a mut serde_json::Value, pointer: &[String]) -> Option<&'a mut serde_json::Value> {
    pointer.iter().try_fold(json, |v, token| match v {
        serde_json::Value::Object(m) => m.get_mut(token),
        serde_json::Value::Array(a) => a.get_mut(array_index(token)?),
        _ => None,
    })
}

fn remove(json: &mut serde_json::Value, pointer: &[String]) {
    let Some((last, parent)) = pointer.split_last() else { return };
    match get_mut(json, parent) {
        Some(serde_json::Value::Object(m)) => {
            m.remove(last);
        }
        Some(serde_json::Value::Array(a)) => {
            if let Some(i) = array_index(last).filter(|i| *i < a.len()) {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    (digits && (token == "0" || !token.starts_with('0'))).then(|| token.parse().ok()).flatten()
}

/// Splits an RFC 6901 pointer into its reference tokens. The whole document
/// (`""`) cannot be redacted.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.len() > MAX_POINTER_BYTES {
        return Err(format!("longer than {MAX_POINTER_BYTES} bytes"));
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("a JSON Pointer starts with \"/\" (\"\" would be the whole payload)".into());
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::new();
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => out.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err("\"~\" must be followed by 0 or 1".into()),
                    },
                }
            }
            Ok(out)
        })
        .collect()
}

// ---- paths: which version a reader gets ----

/// At most this many chains continue through one user, and one reader keeps
/// at most this many (docs/sharing.md, "Several paths").
pub const CHAINS_PER_USER: usize = 4;

/// One filtered share on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: String,
    pub to: Target,
    filter: Arc<CompiledFilter>,
    /// The sender's pseudonym key (empty if it has none).
    key: Arc<[u8]>,
}

impl Step {
    pub fn filter(&self) -> &CompiledFilter {
        &self.filter
    }
}

/// The filtered shares along one path, the publisher's first: each applies
/// to what the one before let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain(Arc<[Step]>);

impl Chain {
    pub fn steps(&self) -> &[Step] {
        &self.0
    }
    /// The same for every reader given this chain while the index stands:
    /// what a publish caches one chain's result by.
    pub fn id(&self) -> usize {
        self.0.as_ptr() as usize
    }
    /// What this path makes of a message (`Pass(None)`: it arrives
    /// unchanged); `parsed` is the message's, shared by every chain it meets.
    pub fn apply<'a>(&self, msg: Message<'a>, parsed: &Parsed<'a>) -> Outcome {
        let mut current: Option<Vec<u8>> = None;
        for step in self.0.iter() {
            let applied = match &current {
                None => step.filter.apply_parsed(msg, parsed, &step.key),
                Some(bytes) => {
                    step.filter.apply_parsed(Message { payload: bytes, ..msg }, &Parsed::default(), &step.key)
                }
            };
            match applied {
                Applied::Same => {}
                Applied::Rewritten(v) => current = Some(v),
                Applied::Dropped => return Outcome::Dropped,
                Applied::Error => return Outcome::Error,
            }
        }
        Outcome::Pass(current)
    }
}

/// A filtered reader's chains, best first: a message is delivered once, in
/// the version of the first chain that lets it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes(Arc<[Chain]>);

impl Routes {
    pub fn chains(&self) -> &[Chain] {
        &self.0
    }
    /// The version the reader gets (`Some(None)`: the original), or `None`.
    pub fn version(&self, msg: Message<'_>) -> Option<Option<Vec<u8>>> {
        let parsed = Parsed::default();
        self.0.iter().find_map(|c| match c.apply(msg, &parsed) {
            Outcome::Pass(v) => Some(v),
            _ => None,
        })
    }
}

/// How much a chain hides, then how often it may drop, then its length, then
/// the names of its shares: the order paths are preferred in (least first).
type Cost = (usize, usize, usize, usize, Vec<(String, String)>);

fn cost(steps: &[Step]) -> Cost {
    let (mut removed, mut pseudonymized, mut conditions) = (0, 0, 0);
    for s in steps {
        let (r, p) = s.filter.weight();
        removed += r;
        pseudonymized += p;
        conditions += usize::from(s.filter.has_condition());
    }
    let names = steps.iter().map(|s| (s.from.clone(), s.to.to_string())).collect();
    (removed, pseudonymized, conditions, steps.len(), names)
}

/// For one publisher on one channel: the readers every path to whom passes a
/// filter, sorted by id, with their chains (`CHAINS_PER_USER`).
pub fn routes(graph: &Graph, channel: &str, publisher: UserId) -> Vec<(UserId, Routes)> {
    routes_within(graph, channel, publisher, CHAINS_PER_USER)
}

/// `routes` with another bound: paths (the delivery rule's walk: a first step
/// along any accepted share, later steps along `shares_all`; no user twice)
/// are taken best first; at most `limit` distinct chains continue through
/// each user; a reader keeps its first `limit`, up to the first without a
/// condition (it always passes). Public for the property test, which runs
/// it unbounded against every path.
pub fn routes_within(graph: &Graph, channel: &str, publisher: UserId, limit: usize) -> Vec<(UserId, Routes)> {
    /// The chains one user took, by their shares' names.
    #[derive(Default)]
    struct Seen {
        chains: Vec<(usize, Vec<(String, String)>)>,
        closed: bool,
    }
    impl Seen {
        fn take(&mut self, idx: usize, names: &[(String, String)], limit: usize) -> bool {
            if self.closed || self.chains.len() >= limit || self.chains.iter().any(|(_, n)| n == names) {
                return false;
            }
            self.chains.push((idx, names.to_vec()));
            true
        }
    }
    // Each path: its filtered steps and the users it went through.
    let mut arena: Vec<(Vec<Step>, Vec<UserId>)> = vec![(Vec::new(), vec![publisher])];
    let mut heap = BinaryHeap::from([Reverse((cost(&[]), publisher, 0usize))]);
    let (mut reached, mut expanded): (BTreeMap<UserId, Seen>, HashMap<UserId, Seen>) = Default::default();
    let mut keys: HashMap<&str, Arc<[u8]>> = HashMap::new();
    while let Some(Reverse((cost_now, user, idx))) = heap.pop() {
        let names = &cost_now.4;
        if user != publisher {
            let seen = reached.entry(user).or_default();
            if seen.take(idx, names, limit) {
                seen.closed = arena[idx].0.iter().all(|s| !s.filter.has_condition());
            }
        }
        if !expanded.entry(user).or_default().take(idx, names, limit) {
            continue;
        }
        let Some(name) = graph.user_name(user) else { continue };
        for (to, share) in graph.out_shares(name, channel).into_iter().flatten() {
            if !share.accepted || (user != publisher && share.kind != ShareKind::SharesAll) {
                continue;
            }
            let mut steps = arena[idx].0.clone();
            if let Some(f) = &share.filter {
                // Only a filter that pseudonymizes uses the key (set by the command that set it).
                let key = match f.spec().pseudonymize.is_empty() {
                    true => Arc::from([]),
                    false => keys
                        .entry(name)
                        .or_insert_with(|| {
                            let hex = graph.user(name).and_then(|u| u.pseudonym_key.as_deref()).unwrap_or("");
                            decode_hex(hex).into()
                        })
                        .clone(),
                };
                steps.push(Step { from: name.to_string(), to: to.clone(), filter: f.compiled().clone(), key });
            }
            let next_cost = cost(&steps);
            for v in graph.recipients(to).filter_map(|r| graph.user_id(r)) {
                if arena[idx].1.contains(&v) {
                    continue;
                }
                let mut path = arena[idx].1.clone();
                path.push(v);
                arena.push((steps.clone(), path));
                heap.push(Reverse((next_cost.clone(), v, arena.len() - 1)));
            }
        }
    }
    // One `Chain` per distinct path of filters, shared by the readers it reaches.
    let mut interned: HashMap<Vec<(String, String)>, Chain> = HashMap::new();
    reached
        .into_iter()
        .filter(|(_, seen)| seen.chains.first().is_some_and(|(i, _)| !arena[*i].0.is_empty()))
        .map(|(reader, seen)| {
            let chains: Vec<Chain> = seen
                .chains
                .into_iter()
                .map(|(i, names)| interned.entry(names).or_insert_with(|| Chain(arena[i].0.clone().into())).clone())
                .collect();
            (reader, Routes(chains.into()))
        })
        .collect()
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

// ---- the condition ----

/// The functions and operators a condition may call: CEL's standard ones
/// without those that build lists in a loop, and ours.
const ALLOWED: &[&str] = &[
    "_&&_",
    "_||_",
    "!_",
    "-_",
    "_?_:_",
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "_+_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "_[_]",
    "@in",
    "@not_strictly_false",
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "matches",
    "ip",
    "in_cidr",
];
const VARIABLES: &[&str] = &["payload", "channel", "ident", "size"];

/// Our functions, beside CEL's standard library (built without its own
/// `matches`, which compiles the pattern on every call).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    cel::add_member_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>).expect("declared once");
    cel::add_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>, id = "matches_string_string")
        .expect("declared once");
    cel::add_overload!(env, fn ip: (CelString) -> Result<CelString>).expect("declared once");
    cel::add_member_overload!(env, fn in_cidr: (CelString, CelString) -> Result<CelBool>, name = "in_cidr")
        .expect("declared once");
    Arc::new(env)
});

/// A condition's `matches` patterns, compiled when it was (they are string literals).
type Patterns = Arc<HashMap<String, regex::Regex>>;

thread_local! {
    /// The patterns of the condition this thread is evaluating (CEL's
    /// functions are plain `fn`s: they cannot hold them).
    static PATTERNS: RefCell<Patterns> = RefCell::default();
}

fn regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build()
}

fn matches(this: &CelString<'_>, pattern: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    PATTERNS.with(|patterns| match patterns.borrow().get(pattern.inner()) {
        Some(re) => Ok(CelBool::from(re.is_match(this.inner()))),
        None => Err(ExecutionError::function_error("matches", "a pattern that was not checked")),
    })
}

fn ip(s: &CelString<'_>) -> Result<CelString<'static>, ExecutionError> {
    let addr: std::net::IpAddr = s.inner().parse().map_err(|e| ExecutionError::function_error("ip", e))?;
    Ok(CelString::from(addr.to_string()))
}

fn in_cidr(this: &CelString<'_>, cidr: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    let addr: std::net::IpAddr = this.inner().parse().map_err(|e| ExecutionError::function_error("in_cidr", e))?;
    let net: ipnet::IpNet = cidr.inner().parse().map_err(|e| ExecutionError::function_error("in_cidr", e))?;
    Ok(CelBool::from(net.contains(&addr)))
}

fn compile_where(source: &str) -> Result<Condition, GraphError> {
    let err = |reason: String| invalid("where", reason);
    if source.len() > MAX_WHERE_BYTES {
        return Err(err(format!("{} bytes, at most {MAX_WHERE_BYTES}", source.len())));
    }
    // Before parsing: the parser recurses once per bracket.
    if let Some(at) = too_deep(source) {
        return Err(err(format!("{} nested deeper than {MAX_DEPTH}", position(source, at))));
    }
    let program = ENV.compile(source).map_err(|e| {
        let first = e.errors.first();
        let (line, col) = first.map_or((1, 1), |e| e.pos);
        err(format!("syntax error at line {line}, column {}: {}", col + 1, first.map_or("", |e| e.msg.as_str())))
    })?;
    let at = |id: u64| {
        let start = program.source_info().offset_for(id).map_or(0, |(s, _)| s as usize);
        position(source, start)
    };
    let mut walk = Walk::default();
    check(program.expression(), &mut walk, 0, 0).map_err(|(id, reason)| err(format!("{}: {reason}", at(id))))?;
    let mut members = Vec::new();
    let members = payload_members(program.expression(), &mut members).map(|_| {
        members.sort();
        members.dedup();
        members
    });
    Ok(Condition { program, members, patterns: Arc::new(walk.patterns) })
}

/// "line L, column C" of a byte offset.
fn position(source: &str, offset: usize) -> String {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

/// The byte offset where brackets nest deeper than `MAX_DEPTH`, outside string literals.
fn too_deep(source: &str) -> Option<usize> {
    let (mut depth, mut quote, mut escaped) = (0usize, None, false);
    for (i, c) in source.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(i);
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    None
}

type Problem = (u64, String);

/// Walks the expression: known functions and variables only, loops not
/// nested and not building lists, patterns and networks that are literals
/// and valid, depth bounded.
/// What a walk keeps: the loop variables in scope, the patterns compiled.
#[derive(Default)]
struct Walk {
    bound: Vec<String>,
    patterns: HashMap<String, regex::Regex>,
}

fn check(e: &IdedExpr, w: &mut Walk, loops: usize, depth: usize) -> Result<(), Problem> {
    let problem = |reason: String| Err((e.id, reason));
    if depth > MAX_DEPTH {
        return problem(format!("nested deeper than {MAX_DEPTH}"));
    }
    let d = depth + 1;
    match &e.expr {
        Expr::Ident(name) if VARIABLES.contains(&name.as_str()) || w.bound.contains(name) => Ok(()),
        Expr::Ident(name) => problem(format!("unknown variable {name:?} (there are {})", VARIABLES.join(", "))),
        Expr::Literal(_) => Ok(()),
        Expr::Select(s) => check(&s.operand, w, loops, d),
        Expr::List(l) => l.elements.iter().try_for_each(|x| check(x, w, loops, d)),
        Expr::Map(m) => m.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => check(&me.key, w, loops, d).and_then(|_| check(&me.value, w, loops, d)),
            EntryExpr::StructField(_) => Err((entry.id, "messages (struct literals) are not supported".into())),
        }),
        Expr::Struct(_) => problem("messages (struct literals) are not supported".into()),
        Expr::Unspecified => problem("an incomplete expression".into()),
        Expr::Call(call) => {
            let name = call.func_name.as_str();
            if !ALLOWED.contains(&name) {
                return problem(format!("unknown function {name:?}"));
            }
            let literal = |i: usize| match call.args.get(i).map(|a| &a.expr) {
                Some(Expr::Literal(LiteralValue::String(s))) => Some(s.inner().to_string()),
                _ => None,
            };
            match name {
                "matches" => {
                    let i = usize::from(call.target.is_none());
                    let Some(pattern) = literal(i) else {
                        return problem("matches takes its pattern as a string literal".into());
                    };
                    match regex(&pattern) {
                        Ok(re) => {
                            w.patterns.insert(pattern, re);
                        }
                        Err(e) => return problem(format!("pattern {pattern:?}: {}", regex_reason(&e))),
                    }
                }
                "in_cidr" => match literal(0).map(|n| n.parse::<ipnet::IpNet>()) {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return problem(format!("in_cidr: {e} (write it as \"10.0.0.0/8\")")),
                    None => return problem("in_cidr takes its network as a string literal".into()),
                },
                _ => {}
            }
            call.target.iter().map(|t| &**t).chain(&call.args).try_for_each(|x| check(x, w, loops, d))
        }
        Expr::Comprehension(c) => {
            if loops > 0 {
                return problem("loops (all, exists, exists_one) may not be nested".into());
            }
            if !matches!(c.accu_init.expr, Expr::Literal(LiteralValue::Boolean(_) | LiteralValue::Int(_))) {
                return problem("map and filter are not supported (use all, exists or exists_one)".into());
            }
            check(&c.iter_range, w, loops, d)?;
            let vars = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)];
            let n = w.bound.len();
            w.bound.extend(vars.into_iter().flatten().cloned());
            let inner = [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result];
            let r = inner.into_iter().try_for_each(|x| check(x, w, loops + 1, d));
            w.bound.truncate(n);
            r
        }
    }
}

fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    if text.contains("look-around") || text.contains("backreference") {
        return format!("{} (patterns run in linear time: no backreferences or look-around)", last_line(&text));
    }
    last_line(&text).to_string()
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// A compiled `where`, and the members of `payload` it reads (`None`: it
/// uses the payload as a whole): only those are handed to CEL.
struct Condition {
    program: Program,
    members: Option<Vec<String>>,
    patterns: Patterns,
}

impl Condition {
    /// True, false, or an error (also when the result is not a bool).
    fn evaluate<'a>(&self, msg: Message<'a>, parsed: &Parsed<'a>) -> Result<bool, ExecutionError> {
        let mut ctx = Context::with_env(ENV.clone());
        let object = self.members.as_ref().and_then(|m| Some((m, parsed.members(msg.payload)?)));
        let payload = match object {
            Some((wanted, members)) => {
                let mut map: HashMap<String, Value> = HashMap::with_capacity(wanted.len());
                for (name, raw) in members.iter().filter(|(n, _)| wanted.iter().any(|w| w == n)) {
                    let value: serde_json::Value =
                        serde_json::from_str(raw.get()).map_err(|e| ExecutionError::function_error("payload", e))?;
                    map.insert(name.to_string(), to_cel(&value));
                }
                Value::Map(map.into())
            }
            None => match parsed.whole(msg.payload) {
                Some(j) => to_cel(j),
                None => Value::Bytes(Arc::new(msg.payload.to_vec())),
            },
        };
        ctx.add_variable_from_value("payload", payload);
        ctx.add_variable_from_value("channel", msg.channel.to_string());
        ctx.add_variable_from_value("ident", msg.ident.to_string());
        ctx.add_variable_from_value("size", msg.payload.len() as i64);
        if !self.patterns.is_empty() {
            PATTERNS.with(|p| *p.borrow_mut() = self.patterns.clone());
        }
        match self.program.execute(&ctx)? {
            Value::Bool(b) => Ok(b),
            other => Err(ExecutionError::function_error("where", format!("not a bool: {other:?}"))),
        }
    }
}

/// The members `payload.NAME` the expression reads, or `None` when it uses
/// `payload` otherwise (whole, indexed, iterated, or a loop variable shadows it).
fn payload_members(e: &IdedExpr, out: &mut Vec<String>) -> Option<()> {
    let mut walk = |x: &IdedExpr| payload_members(x, out);
    match &e.expr {
        Expr::Select(s) if matches!(&s.operand.expr, Expr::Ident(n) if n == "payload") => {
            out.push(s.field.clone());
            Some(())
        }
        Expr::Ident(n) if n == "payload" => None,
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Some(()),
        Expr::Select(s) => walk(&s.operand),
        Expr::List(l) => l.elements.iter().try_for_each(walk),
        Expr::Map(m) => m.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => walk(&me.key).and_then(|_| walk(&me.value)),
            EntryExpr::StructField(f) => walk(&f.value),
        }),
        Expr::Struct(st) => st.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => walk(&me.key).and_then(|_| walk(&me.value)),
            EntryExpr::StructField(f) => walk(&f.value),
        }),
        Expr::Call(c) => c.target.iter().map(|t| &**t).chain(&c.args).try_for_each(walk),
        Expr::Comprehension(c) => {
            let binds = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)];
            if binds.into_iter().flatten().any(|v| v == "payload") {
                return None;
            }
            [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result].into_iter().try_for_each(walk)
        }
    }
}

fn to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(to_cel).collect())),
        serde_json::Value::Object(o) => {
            let map: HashMap<String, Value> = o.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            Value::Map(map.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"eventid":"cowrie.login.success","src_ip":"198.51.100.7","dst_ip":"10.0.0.2","user":{"name":"root"},"tags":["a","b"]}"#;

    fn filter(condition: Option<&str>, redact: &[&str], pseudonymize: &[&str]) -> Result<CompiledFilter, GraphError> {
        Filter {
            condition: condition.map(str::to_string),
            redact: redact.iter().map(|s| s.to_string()).collect(),
            pseudonymize: pseudonymize.iter().map(|s| s.to_string()).collect(),
        }
        .compile()
    }

    fn run(f: &CompiledFilter, payload: &str) -> Outcome {
        f.apply(Message { channel: "cowrie.sessions", ident: "sensor1", payload: payload.as_bytes() }, b"k")
    }

    fn reason(e: GraphError) -> String {
        match e {
            GraphError::InvalidFilter { part, reason } => format!("{part}: {reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_the_issue_s_example_then_it_passes_and_drops_by_address() {
        let f = filter(
            Some(r#"payload.eventid == "cowrie.login.success" && !ip(payload.src_ip).in_cidr("192.0.2.0/24")"#),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(run(&f, EVENT), Outcome::Pass(None));
        assert_eq!(run(&f, &EVENT.replace("198.51.100.7", "192.0.2.9")), Outcome::Dropped);
        assert_eq!(run(&f, &EVENT.replace("198.51.100.7", "2001:db8::1")), Outcome::Pass(None));
        assert_eq!(run(&f, &EVENT.replace("198.51.100.7", "not an address")), Outcome::Error);
        // A missing field and a payload that is not JSON are errors, not passes.
        assert_eq!(run(&f, r#"{"eventid":"cowrie.login.success"}"#), Outcome::Error);
        assert_eq!(run(&f, "\u{1}binary"), Outcome::Error);
        assert_eq!(f.counts.passed.load(Ordering::Relaxed), 2);
        assert_eq!(f.counts.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(f.counts.errors.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn given_the_variables_and_functions_then_each_is_what_the_docs_say() {
        let pass = |c: &str, payload: &str| run(&filter(Some(c), &[], &[]).unwrap(), payload) == Outcome::Pass(None);
        assert!(pass(r#"channel == "cowrie.sessions" && ident == "sensor1""#, EVENT));
        assert!(pass(&format!("size == {}", EVENT.len()), EVENT));
        assert!(pass(r#"payload.eventid.matches("^cowrie\\.login")"#, EVENT));
        assert!(pass(r#"matches(payload.user.name, "^ro+t$")"#, EVENT));
        assert!(pass(r#"payload.tags.exists(t, t == "b") && "a" in payload.tags"#, EVENT));
        assert!(pass(r#"has(payload.user) && !has(payload.password)"#, EVENT));
        assert!(pass(r#"payload == b"\x01raw""#, "\u{1}raw"));
        assert!(!pass(r#"ip("2001:db8::1").in_cidr("10.0.0.0/8")"#, EVENT));
        // CEL gets only the members read, unless the payload is used whole.
        assert!(pass("size(payload) == 5 && payload.eventid != ''", EVENT));
        assert!(pass(r#"payload["eventid"] == "cowrie.login.success""#, EVENT));
        assert!(pass("[1].exists(payload, payload == 1)", EVENT));
        let members = |c: &str| compile_where(c).unwrap().members;
        assert_eq!(members("payload.b == 1 && has(payload.a) && payload.b.c > 2"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(members("size(payload) > 1"), None);
    }

    #[test]
    fn given_redact_and_pseudonymize_then_fields_go_and_the_same_value_gets_the_same_token() {
        let f = filter(None, &["/dst_ip", "/user/name", "/tags/0", "/absent/x"], &["/src_ip"]).unwrap();
        let Outcome::Pass(Some(out)) = run(&f, EVENT) else { panic!() };
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let token = pseudonym(b"k", &serde_json::json!("198.51.100.7"));
        assert_eq!(token.len(), PSEUDONYM_CHARS);
        assert_eq!(
            out,
            serde_json::json!({"eventid": "cowrie.login.success", "src_ip": token, "user": {}, "tags": ["b"]})
        );
        assert_ne!(token, pseudonym(b"other key", &serde_json::json!("198.51.100.7")));
        // Not JSON: a rewriting filter cannot carry it.
        assert_eq!(run(&f, "plain text"), Outcome::Error);
    }

    #[test]
    fn given_bad_filters_then_each_error_names_the_part_and_the_problem() {
        let bad = |c: &str| reason(filter(Some(c), &[], &[]).unwrap_err());
        assert!(bad("payload.a == ").starts_with("where: syntax error at line 1, column"), "{}", bad("payload.a == "));
        let unknown = bad("payload.a == 1 &&\n  frobnicate(payload)");
        assert!(unknown.starts_with("where: line 2, column") && unknown.ends_with("unknown function \"frobnicate\""));
        assert!(bad("secret == 1").contains("unknown variable \"secret\""));
        assert!(bad(&"x".repeat(100_000)).contains("100000 bytes, at most 4096"));
        assert!(bad(&format!("{}1{}", "(".repeat(500), ")".repeat(500))).contains("nested deeper than 24"));
        let backref = bad(r#"payload.a.matches("(a+)\\1")"#);
        assert!(backref.contains("backreference") && backref.contains("linear time"), "{backref}");
        assert!(bad(r#"payload.a.matches(payload.b)"#).contains("string literal"));
        assert!(bad(r#"ip(payload.a).in_cidr("10.0.0.0/33")"#).contains("in_cidr"));
        assert!(bad("payload.tags.map(t, t + 'x').size() > 0").contains("map and filter"));
        assert!(bad("payload.a.all(x, payload.b.exists(y, x == y))").contains("may not be nested"));
        let p = |redact: &str| reason(filter(None, &[redact], &[]).unwrap_err());
        assert!(p("src_ip").starts_with("redact: \"src_ip\": a JSON Pointer starts with"));
        assert!(p("/a~2").contains("\"~\" must be followed by 0 or 1"));
        let many: Vec<String> = (0..33).map(|i| format!("/f{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(reason(filter(None, &many, &[]).unwrap_err()).contains("at most 32"));
    }

    #[test]
    fn given_arithmetic_that_overflows_or_divides_by_zero_then_it_is_an_error_not_a_panic() {
        let payload = r#"{"n": 9223372036854775807, "z": 0, "l": [1, 2], "s": "x", "f": 1.5}"#;
        for c in [
            "payload.n + 1 > 0",
            "-(-9223372036854775807 - 1) > 0",
            "payload.n * 2 > 0",
            "1 / payload.z == 0",
            "1 % payload.z == 0",
            "payload.l[5] == 1",
            "payload.l[-1] == 1",
            "payload.s[0] == 'x'",
            "payload.f / 0.0 > 1.0",
            "int(payload.f * 1e30) > 0",
            "uint(-1) > 0u",
            "payload.n + payload.f > 0.0",
        ] {
            let outcome = run(&filter(Some(c), &[], &[]).unwrap(), payload);
            assert!(matches!(outcome, Outcome::Error | Outcome::Dropped | Outcome::Pass(None)), "{c}: {outcome:?}");
        }
    }

    #[test]
    fn given_a_pointer_with_escapes_then_it_names_the_member_it_spells() {
        assert_eq!(parse_pointer("/a~1b/c~0d/0").unwrap(), ["a/b", "c~d", "0"]);
        assert_eq!(array_index("01"), None);
        assert_eq!(array_index("10"), Some(10));
    }
}
