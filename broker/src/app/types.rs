//! The request and response bodies of the HTTP API: the handlers answer
//! with them, `ctl` reads them back, and the OpenAPI description
//! (`/api/v1/openapi.json`) is generated from them.

use std::collections::BTreeMap;

use hpfriends_graph::{AuthKey, Explanation, ShareKind, ShareRecord, Target};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A write that has been committed and applied.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    pub ok: bool,
}

impl Done {
    pub const OK: Done = Done { ok: true };
}

/// `{"error": {"code", "message"}}`, with every 4xx and 5xx answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable; a retired code is never reused.
    #[schema(value_type = ErrorCode)]
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
}

/// Every `code` an error may carry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    Forbidden,
    NotFound,
    NotLeader,
    NoQuorum,
    MembershipRefused,
    NeedsUpgrade,
    InvalidName,
    UnknownUser,
    UserExists,
    UnknownGroup,
    GroupExists,
    NameTaken,
    NotInvited,
    AlreadyMember,
    AlreadyAdmin,
    LastAdmin,
    ShareExists,
    UnknownShare,
    SelfShare,
    IdentExists,
    UnknownKey,
    NestedBatch,
    UnknownCommand,
    InvalidAccount,
    InvalidInvitation,
    AccountDisabled,
    TokenExists,
    UnknownToken,
    InvalidSetting,
    InvalidFilter,
    WeakPassword,
    WrongPassword,
    SignInLimited,
    Internal,
}

// ---- health ----

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Whether a load balancer should send clients here, and why not.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub draining: bool,
    pub accepting_clients: bool,
    pub leader_known: bool,
    pub caught_up: bool,
    pub peer_links_replayed: bool,
    pub unreachable_peers: Vec<u64>,
    pub awaiting_replay_from: Vec<u64>,
    pub last_applied: Option<u64>,
}

// ---- users ----

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1 to 64 of ASCII letters, digits, `.`, `_`, `@` and `-`.
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub name: String,
    /// The rest is shown to the operator, and to a user about themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_token: Option<bool>,
    /// Can sign in to the web app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_password: Option<bool>,
    /// An invitation or password-reset link is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A one-time link to set a password: give it to the person, it is not shown again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvitationLink {
    pub user: String,
    pub link: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// A new API token: shown once, stored only as a hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    pub user: String,
    pub token: String,
}

// ---- groups ----

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// 1 to 64 of ASCII letters, digits, `.`, `_`, `@` and `-`.
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    /// The first admin; the calling user when a user creates it.
    #[serde(default)]
    pub admin: Option<String>,
}

/// The user a membership change is about: required to invite or remove;
/// to join or leave, the caller (the operator names the user).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupInfo {
    pub name: String,
    /// Shown to the group's admins, members and invited users (and the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admins: Option<Vec<String>>,
    /// Shown to the group's admins and members (and the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberInfo>>,
}

impl GroupInfo {
    pub fn admins(&self) -> &[String] {
        self.admins.as_deref().unwrap_or_default()
    }
    pub fn members(&self) -> &[MemberInfo] {
        self.members.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberInfo {
    pub user: String,
    /// False while the user is only invited.
    pub accepted: bool,
}

// ---- shares ----

/// One share: to offer (with `kind`), accept or remove. `from` is the
/// caller when a user sends it; the operator names it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    #[serde(default)]
    pub from: Option<String>,
    /// A user, or `group:NAME`.
    #[schema(value_type = String)]
    pub to: Target,
    /// 1 to 255 bytes, no control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub channel: String,
    #[serde(default)]
    pub kind: Option<ShareKind>,
    /// Offering: once accepted, the recipient reads the archive from before
    /// too (docs/sharing.md, "The past"). Ignored when accepting or removing.
    #[serde(default)]
    pub with_history: bool,
    /// Offering or `/shares/filter`: what the share lets through and in which
    /// form (docs/sharing.md, "Filters"); absent or null on `/shares/filter`
    /// clears it. Ignored when accepting or removing.
    #[serde(default)]
    pub filter: Option<hpfriends_graph::Filter>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShareList {
    pub shares: Vec<ShareRecord>,
}

// ---- keys ----

/// What a key may publish and subscribe to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyChannels {
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// 1 to 255 bytes, no control characters (it travels as a str8).
    #[schema(min_length = 1, max_length = 255)]
    pub ident: String,
    /// The caller when a user creates it; the operator names the owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Generated (32 hex characters) when absent.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Subscriptions resume where the key's last connection left off
    /// (docs/protocol.md, "Resume").
    #[serde(default)]
    pub resume: bool,
}

/// A key as created, its secret included (shown this once to its owner).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub key: AuthKey,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<AuthKey>,
}

/// How long the archive keeps an owner's messages on one channel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepSetting {
    pub channel: String,
    /// `off` (not archived), `default` (the node's `archive_keep`) or a length
    /// of time such as `12h` or `2d` (the node's keep, if that is shorter).
    pub keep: String,
    /// Whose messages: the caller when a user sets it; the operator names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// What one owner keeps, by channel (channels not listed: the node's keep).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeepList {
    pub owner: String,
    pub keeps: Vec<KeepSetting>,
}

/// Whose keeps to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeepsQuery {
    /// The owner (the caller, for a user; the operator must name one).
    pub owner: Option<String>,
    /// Wait until this node has applied everything committed before the request.
    #[allow(dead_code)] // taken by the consistent-reads layer; here to be accepted and described
    pub consistent: Option<bool>,
}

// ---- listings, explain, apply ----

/// Whose things to list (the operator: anyone's, or everyone's without it).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Shares from or to this user.
    pub user: Option<String>,
    /// Keys of this owner.
    pub owner: Option<String>,
    /// Wait until this node has applied everything committed before the request.
    #[allow(dead_code)] // taken by the consistent-reads layer; here to be accepted and described
    pub consistent: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    pub from: String,
    pub to: String,
    pub channel: String,
    /// Wait until this node has applied everything committed before the request.
    #[allow(dead_code)] // taken by the consistent-reads layer; here to be accepted and described
    pub consistent: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExplainAnswer {
    pub explanation: Explanation,
    /// The path for people, e.g. `jojo -[shares]-> mark`.
    pub text: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// Keep keys whose secrets are shorter than `min_key_secret_len` (an
    /// import of an old broker's keys); each is named in `warnings`.
    #[serde(default)]
    pub allow_short_secrets: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Applied {
    pub ok: bool,
    /// Commands the declaration needed (0: the graph held it already).
    pub changes: usize,
    pub warnings: Vec<String>,
}

// ---- cluster ----

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_applied: Option<u64>,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub index_generation: u64,
    pub nodes: Vec<NodeStatus>,
}

/// A member; its addresses only for the operator.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub id: u64,
    pub voter: bool,
    pub leader: bool,
    pub matched_index: Option<u64>,
    pub lag: Option<u64>,
    pub cluster_addr: Option<String>,
    pub http_addr: Option<String>,
    pub hpfeeds_addr: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaveRequest {
    pub node_id: u64,
}

// ---- history ----

/// Which changes of the graph to list, newest first. Every filter narrows.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Changes that touch this user: made by them, naming them (their shares
    /// in and out, their keys) or one of their groups.
    pub user: Option<String>,
    /// Changes about this channel.
    pub channel: Option<String>,
    /// From this time on: RFC 3339 (`2026-12-01T00:00:00Z`) or Unix seconds.
    pub since: Option<String>,
    /// Before this time.
    pub until: Option<String>,
    /// Changes per page, 1 to 1000 (100 when not given).
    pub limit: Option<usize>,
    /// Continue with changes older than this: the `next` of the page before.
    pub before: Option<u64>,
    /// Wait until this node has applied everything committed before the request.
    #[allow(dead_code)] // taken by the consistent-reads layer; here to be accepted and described
    pub consistent: Option<bool>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// The channel to read.
    pub channel: String,
    /// From this time on: RFC 3339 (`2026-12-01T08:00:00.250Z`) or Unix seconds;
    /// the oldest message kept when not given.
    pub since: Option<String>,
    /// Before this time.
    pub until: Option<String>,
    /// Only the messages of this key (ident).
    pub publisher: Option<String>,
    /// Messages per page, 1 to 10000 (1000 when not given). A page may hold
    /// fewer and still link to a next one: pages are also bounded in bytes
    /// and in messages looked at.
    pub limit: Option<usize>,
    /// Continue after the page this came from (its `Link: <…>; rel="next"`).
    pub cursor: Option<String>,
    /// Give every page at once, then each message as the archive keeps it,
    /// until the caller hangs up (no `until`, no `cursor`, no `Link`).
    pub follow: Option<bool>,
    /// Wait until this node has applied everything committed before the request.
    #[allow(dead_code)] // taken by the consistent-reads layer; here to be accepted and described
    pub consistent: Option<bool>,
}

/// One archived message: a line of `GET /api/v1/messages`'s NDJSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArchivedMessage {
    /// When it was published, by its node's clock: RFC 3339 with microseconds.
    pub time: String,
    pub ident: String,
    pub channel: String,
    /// The node it was published on, and its number there: together they name it.
    pub node: u64,
    pub seq: u64,
    /// The payload, base64 (standard, padded).
    pub payload_b64: String,
    /// The payload as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// One page of the history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// Pass as `before` for the next page; absent after the oldest change.
    /// A page may hold fewer than `limit` changes and still have a `next`
    /// (a node looks at a bounded number of changes per request).
    pub next: Option<u64>,
}

/// A change of the graph as every node recorded it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEvent {
    /// Its place in the history (the same on every node).
    pub seq: u64,
    /// The Raft log index of the entry that made it.
    pub index: u64,
    /// Unix seconds when the node that took the request proposed it; absent
    /// for changes proposed by a v0.1.0 node.
    pub at: Option<u64>,
    /// The node the request came in through.
    pub node: Option<u64>,
    /// The user who made it; absent when the operator did.
    pub actor: Option<String>,
    /// The actor's user id then.
    pub actor_id: Option<u32>,
    /// The command with every secret and hash taken out, e.g.
    /// `{"op": "add_share", "from": "alice", "to": "bob", "channel": "…", "kind": "shares"}`.
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
    /// Users it touches.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub channels: Vec<String>,
    /// The ids those users and groups had then: a name taken again later
    /// is another user or group, with another id.
    pub user_ids: BTreeMap<String, u32>,
    pub group_ids: BTreeMap<String, u32>,
}

impl From<hpfriends_graph::history::Event> for HistoryEvent {
    fn from(e: hpfriends_graph::history::Event) -> Self {
        HistoryEvent {
            seq: e.seq,
            index: e.index,
            at: e.at,
            node: e.node,
            actor: match e.actor {
                hpfriends_graph::Actor::Operator => None,
                hpfriends_graph::Actor::User(u) => Some(u),
            },
            actor_id: e.actor_id,
            change: e.change,
            users: e.users,
            groups: e.groups,
            channels: e.channels,
            user_ids: e.ids.users,
            group_ids: e.ids.groups,
        }
    }
}

/// How much history every node keeps: changes older than `max_age_days`
/// or beyond the newest `max_events` are dropped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryRetention {
    /// 1 to 36500.
    pub max_age_days: u32,
    /// 1 to 100000000.
    pub max_events: u64,
}

/// Unix seconds as `2026-12-06T10:00:00Z`.
pub fn time_text(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

impl HistoryEvent {
    /// `2026-12-06T10:00:00Z`, or `unknown time`.
    pub fn when(&self) -> String {
        self.at.map_or_else(|| "unknown time".to_string(), time_text)
    }

    pub fn who(&self) -> &str {
        self.actor.as_deref().unwrap_or("operator")
    }

    /// The change for people: `add_share from=alice to=bob channel=… kind=shares`.
    pub fn what(&self) -> String {
        let Some(fields) = self.change.as_object() else { return self.change.to_string() };
        let op = fields.get("op").and_then(|v| v.as_str()).unwrap_or("change");
        let mut text = op.to_string();
        for (name, value) in fields.iter().filter(|(n, _)| *n != "op") {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            text.push_str(&format!(" {name}={value}"));
        }
        text
    }

    /// Who the names were: `alice=u3 bob=u4 cert=g2` (user and group ids then).
    pub fn identities(&self) -> String {
        let actor = self.actor.as_ref().zip(self.actor_id).filter(|(a, _)| !self.user_ids.contains_key(*a));
        let users = actor.into_iter().chain(self.user_ids.iter().map(|(n, id)| (n, *id)));
        let mut text: Vec<String> = users.map(|(name, id)| format!("{name}=u{id}")).collect();
        text.extend(self.group_ids.iter().map(|(name, id)| format!("{name}=g{id}")));
        text.join(" ")
    }

    /// One line of `ctl history`.
    pub fn line(&self) -> String {
        let node = self.node.map(|n| format!("node {n}")).unwrap_or_else(|| "node ?".to_string());
        let ids = self.identities();
        let ids = if ids.is_empty() { ids } else { format!("  [{ids}]") };
        format!("{}  #{}  {node}  {}  {}{ids}", self.when(), self.index, self.who(), self.what())
    }
}

// ---- activity ----

/// A key's activity summed over every node of the cluster since each started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyActivity {
    pub ident: String,
    pub owner: String,
    /// Publishes the key sent, and their bytes (whole frames).
    pub published: u64,
    pub published_bytes: u64,
    /// Publishes delivered to the key's connections, and their bytes.
    pub delivered: u64,
    pub delivered_bytes: u64,
    /// Unix seconds; absent: never (since the nodes started).
    pub last_publish: Option<u64>,
    pub last_subscribe: Option<u64>,
    /// Its connections now, on every node.
    pub connections: Vec<KeyConnection>,
    /// Its last failed logins (a few per node), newest first.
    pub failed_logins: Vec<KeyFailedLogin>,
    /// Nodes that did not answer within a second: what they hold is not in the sums.
    pub unanswered: Vec<UnansweredNode>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyConnection {
    pub node: u64,
    pub remote: String,
    /// Unix seconds.
    pub since: u64,
    pub channels: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyFailedLogin {
    pub node: u64,
    /// Unix seconds.
    pub at: u64,
    pub remote: String,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnansweredNode {
    pub node: u64,
    pub reason: String,
}

impl KeyActivity {
    /// The activity for people, as `ctl key stats` prints it.
    pub fn text(&self) -> String {
        let last = |t: Option<u64>| t.map_or_else(|| "never".to_string(), time_text);
        let mut out = format!(
            "{} (owner {})\n  published {} messages ({} bytes), last {}\n  delivered {} messages ({} bytes)\n  last subscribed {}",
            self.ident,
            self.owner,
            self.published,
            self.published_bytes,
            last(self.last_publish),
            self.delivered,
            self.delivered_bytes,
            last(self.last_subscribe),
        );
        for c in &self.connections {
            out.push_str(&format!(
                "\n  connected on node {} from {} since {}, subscribed to: {}",
                c.node,
                c.remote,
                time_text(c.since),
                c.channels.join(", ")
            ));
        }
        for f in &self.failed_logins {
            out.push_str(&format!(
                "\n  failed login {} on node {} from {}: {}",
                time_text(f.at),
                f.node,
                f.remote,
                f.reason
            ));
        }
        for n in &self.unanswered {
            out.push_str(&format!("\n  node {} did not answer ({}): its counts are missing", n.node, n.reason));
        }
        out
    }
}

/// A path segment or query value: unreserved characters kept, the rest
/// escaped (the web app's links, `ctl`'s requests, the API's own links).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
