//! The request and response bodies of the HTTP API: the handlers answer
//! with them, `ctl` reads them back, and the OpenAPI description
//! (`/api/v1/openapi.json`) is generated from them.

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
    pub has_token: bool,
    /// Can sign in to the web app.
    pub has_password: bool,
    /// An invitation or password-reset link is open.
    pub invited: bool,
    pub disabled: bool,
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
    pub admins: Vec<String>,
    pub members: Vec<MemberInfo>,
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
