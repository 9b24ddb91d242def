//! Routes and handlers. Every write becomes one graph `Command`, authorized
//! and validated when Raft applies it, on every node alike.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use hpfriends_graph::declare::{plan, Declaration};
use hpfriends_graph::{explain as explain_path, Actor, AuthKey, Command, ShareKind, Target};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{new_user_token, Caller};
use super::error::ApiError;
use super::AppState;

type Reply = Result<Json<Value>, ApiError>;
type Body<T> = Result<Json<T>, JsonRejection>;

/// Declarations (`ctl apply`) can be large; everything else is small.
const MAX_APPLY_BODY: usize = 64 * 1024 * 1024;
/// The longest any request may take, its body included (writes and
/// consistent reads wait at most 10 s for the cluster).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// A user's declaration holds their own keys and shares only.
const MAX_USER_APPLY_BODY: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", delete(remove_user))
        .route("/api/v1/users/{name}/token", post(user_token))
        .route("/api/v1/groups", get(list_groups).post(add_group))
        .route("/api/v1/groups/{group}/invite", membership_route(Membership::Invite))
        .route("/api/v1/groups/{group}/join", membership_route(Membership::Join))
        .route("/api/v1/groups/{group}/leave", membership_route(Membership::Leave))
        .route("/api/v1/groups/{group}/remove-member", membership_route(Membership::RemoveMember))
        .route("/api/v1/shares", get(list_shares).post(add_share))
        .route("/api/v1/shares/accept", post(accept_share))
        .route("/api/v1/shares/remove", post(remove_share))
        .route("/api/v1/keys", get(list_keys).post(add_key))
        .route("/api/v1/keys/{ident}", delete(remove_key))
        .route("/api/v1/notes", get(list_notes).post(add_note))
        .route("/api/v1/explain", get(explain))
        .route("/api/v1/apply", post(apply).layer(DefaultBodyLimit::max(MAX_APPLY_BODY)))
        .route("/api/v1/cluster/status", get(cluster_status))
        .route("/api/v1/cluster/leave", post(cluster_leave))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), consistent_reads))
        .layer(axum::middleware::from_fn_with_state(REQUEST_TIMEOUT, super::serve::request_deadline))
        .with_state(state)
}

/// `GET /api/…?consistent=true`: wait until this node has applied everything
/// the leader had committed when the request arrived, then read locally.
/// Only for an authenticated caller: the wait costs the cluster a round trip.
async fn consistent_reads(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let wanted = req.method() == axum::http::Method::GET
        && req.uri().path().starts_with("/api/")
        && req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "consistent=true"));
    if !wanted {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    if let Err(e) = Caller::from_request_parts(&mut parts, &state).await {
        return e.into_response();
    }
    if let Err(e) = state.node.read_barrier().await {
        return ApiError::from(e).into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body)).await
}

async fn execute(state: &AppState, actor: Actor, command: Command) -> Result<(), ApiError> {
    state.node.write(actor, command).await.map_err(ApiError::from)
}

fn ok() -> Reply {
    Ok(Json(json!({ "ok": true })))
}

/// Whose things a listing shows: the operator may ask for anyone's (or
/// everyone's, `None`); a user sees only their own.
fn listing_scope(caller: &Actor, asked: Option<String>, what: &str) -> Result<Option<String>, ApiError> {
    match (caller, asked) {
        (Actor::Operator, asked) => Ok(asked),
        (Actor::User(me), None) => Ok(Some(me.clone())),
        (Actor::User(me), Some(u)) if &u == me => Ok(Some(u)),
        (Actor::User(_), Some(_)) => Err(ApiError::forbidden(format!("a user can only list their own {what}"))),
    }
}

/// The user a command acts for: the caller, or for the operator the named one.
fn acting_user(caller: &Actor, named: Option<String>, what: &str) -> Result<String, ApiError> {
    match (caller, named) {
        (Actor::User(me), None) => Ok(me.clone()),
        (Actor::User(me), Some(n)) if &n == me => Ok(n),
        (Actor::User(_), Some(_)) => Err(ApiError::forbidden(format!("a user can only {what} for themselves"))),
        (Actor::Operator, Some(n)) => Ok(n),
        (Actor::Operator, None) => Err(ApiError::bad_request(format!("the operator must name the user to {what} for"))),
    }
}

// ---- health ----

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let m = state.node.metrics().borrow().clone();
    let draining = state.draining.load(Ordering::Acquire);
    let leader = m.current_leader.is_some();
    let caught_up = state.node.caught_up();
    let links = state.fanout.links_ready();
    let accepting = state.listening.load(Ordering::Acquire) == state.listeners;
    let ready = !draining && leader && caught_up && links && accepting;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready,
        "draining": draining,
        "accepting_clients": accepting,
        "leader_known": leader,
        "caught_up": caught_up,
        "peer_links_replayed": links,
        "unreachable_peers": state.fanout.unreachable_peers(),
        "awaiting_replay_from": state.fanout.awaiting_replay_from(),
        "last_applied": m.last_applied.map(|l| l.index),
    });
    (status, Json(body))
}

/// Prometheus text format. Unauthenticated, like `/healthz`: keep the HTTP
/// port on a network that only operators and Prometheus reach.
async fn metrics_text(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    use crate::telemetry::*;
    let set = |m: Metric, value: f64| metrics::gauge!(m.name).set(value);
    let m = state.node.metrics().borrow().clone();
    set(RAFT_TERM, m.current_term as f64);
    set(RAFT_IS_LEADER, if m.current_leader == Some(m.id) { 1.0 } else { 0.0 });
    set(RAFT_LEADER_ID, m.current_leader.unwrap_or(0) as f64);
    set(RAFT_LAST_APPLIED, m.last_applied.map_or(0, |l| l.index) as f64);
    set(RAFT_LAST_LOG_INDEX, m.last_log_index.unwrap_or(0) as f64);
    for (role, on) in [
        ("leader", m.state.is_leader()),
        ("follower", m.state.is_follower()),
        ("candidate", m.state.is_candidate()),
        ("learner", m.state.is_learner()),
    ] {
        metrics::gauge!(RAFT_ROLE.name, "role" => role).set(if on { 1.0 } else { 0.0 });
    }
    set(RAFT_KNOWN_COMMIT, state.node.known_commit() as f64);
    set(INDEX_GENERATION, state.router.view().index.generation() as f64);
    set(INDEX_BUILD_SECONDS, state.node.index_build_time().as_secs_f64());
    set(CLUSTER_AUTH_REFUSED, state.node.cluster_tls().refused() as f64);
    set(SUBSCRIPTIONS, state.router.subscription_count() as f64);
    set(SEND_BUFFER_SIZE, state.router.queued_bytes() as f64);
    let (users, groups, shares, keys) =
        state.node.read_graph(|g| (g.user_count(), g.groups().count(), g.share_count(), g.keys().count()));
    for (kind, n) in [("users", users), ("groups", groups), ("shares", shares), ("keys", keys)] {
        metrics::gauge!(GRAPH_SIZE.name, "kind" => kind).set(n as f64);
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], prometheus().render())
}

// ---- users ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

async fn list_users(State(state): State<AppState>, _caller: Caller) -> Reply {
    let users: Vec<Value> = state
        .node
        .read_graph(|g| g.users().map(|(n, u)| json!({ "name": n, "has_token": u.token_hash.is_some() })).collect());
    Ok(Json(json!({ "users": users })))
}

async fn add_user(State(state): State<AppState>, Caller(actor): Caller, body: Body<NameBody>) -> Reply {
    let Json(body) = body?;
    execute(&state, actor, Command::AddUser { name: body.name }).await?;
    ok()
}

async fn remove_user(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply {
    execute(&state, actor, Command::RemoveUser { name }).await?;
    ok()
}

async fn user_token(State(state): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Reply {
    let (token, token_hash) = new_user_token(&name);
    execute(&state, actor, Command::SetUserToken { name: name.clone(), token_hash }).await?;
    Ok(Json(json!({ "user": name, "token": token })))
}

// ---- groups ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddGroupBody {
    name: String,
    /// The first admin; defaults to the calling user.
    admin: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user: Option<String>,
}

async fn list_groups(State(state): State<AppState>, _caller: Caller) -> Reply {
    let groups: Vec<Value> = state.node.read_graph(|g| {
        g.groups()
            .map(|(name, grp)| {
                let members: Vec<Value> =
                    grp.members.iter().map(|(u, a)| json!({ "user": u, "accepted": a })).collect();
                json!({ "name": name, "admins": grp.admins, "members": members })
            })
            .collect()
    });
    Ok(Json(json!({ "groups": groups })))
}

async fn add_group(State(state): State<AppState>, Caller(actor): Caller, body: Body<AddGroupBody>) -> Reply {
    let Json(body) = body?;
    let creator = acting_user(&actor, body.admin, "create a group")?;
    execute(&state, actor, Command::AddGroup { name: body.name, creator }).await?;
    ok()
}

/// The four membership routes differ only in whom they act for and the command.
#[derive(Clone, Copy)]
enum Membership {
    Invite,
    Join,
    Leave,
    RemoveMember,
}

async fn membership(state: AppState, actor: Actor, group: String, body: Body<UserBody>, change: Membership) -> Reply {
    let Json(body) = body?;
    let named =
        |what: &str| body.user.clone().ok_or_else(|| ApiError::bad_request(format!("missing field `user`: {what}")));
    let command = match change {
        Membership::Invite => Command::InviteMember { group, user: named("whom to invite")? },
        Membership::RemoveMember => Command::RemoveMember { group, user: named("whom to remove")? },
        Membership::Join => Command::AcceptMembership { group, user: acting_user(&actor, body.user, "join a group")? },
        Membership::Leave => Command::RemoveMember { group, user: acting_user(&actor, body.user, "leave a group")? },
    };
    execute(&state, actor, command).await?;
    ok()
}

fn membership_route(change: Membership) -> axum::routing::MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>, Caller(actor): Caller, Path(group): Path<String>, body: Body<UserBody>| {
            membership(state, actor, group, body, change)
        },
    )
}

// ---- shares ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    from: Option<String>,
    to: Target,
    channel: String,
    kind: Option<ShareKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    user: Option<String>,
    owner: Option<String>,
    /// Handled by `consistent_reads`.
    #[allow(dead_code)]
    consistent: Option<bool>,
}

async fn list_shares(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Reply {
    let Query(q) = query?;
    let user = listing_scope(&actor, q.user, "shares")?;
    let shares: Vec<Value> = state.node.read_graph(|g| {
        g.all_shares()
            .filter(|s| match &user {
                None => true,
                Some(u) => {
                    &s.from == u
                        || match &s.to {
                            Target::User(t) => t == u,
                            // Members who accepted, not those only invited.
                            Target::Group(grp) => g
                                .group(grp)
                                .is_some_and(|x| x.members.get(u).copied().unwrap_or(false) || x.admins.contains(u)),
                        }
                }
            })
            .map(|s| json!(s))
            .collect()
    });
    Ok(Json(json!({ "shares": shares })))
}

async fn add_share(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareBody>) -> Reply {
    let Json(b) = body?;
    let from = acting_user(&actor, b.from, "offer a share")?;
    let kind = b.kind.ok_or_else(|| ApiError::bad_request("missing field `kind`: shares or shares_all"))?;
    execute(&state, actor, Command::AddShare { from, to: b.to, channel: b.channel, kind }).await?;
    ok()
}

fn share_key(actor: &Actor, b: ShareBody) -> Result<(String, Target, String), ApiError> {
    let from = match (b.from, actor) {
        (Some(f), _) => f,
        (None, Actor::User(me)) => me.clone(),
        (None, Actor::Operator) => return Err(ApiError::bad_request("missing field `from`")),
    };
    Ok((from, b.to, b.channel))
}

async fn accept_share(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareBody>) -> Reply {
    let Json(b) = body?;
    let (from, to, channel) = share_key(&actor, b)?;
    execute(&state, actor, Command::AcceptShare { from, to, channel }).await?;
    ok()
}

async fn remove_share(State(state): State<AppState>, Caller(actor): Caller, body: Body<ShareBody>) -> Reply {
    let Json(b) = body?;
    let (from, to, channel) = share_key(&actor, b)?;
    execute(&state, actor, Command::RemoveShare { from, to, channel }).await?;
    ok()
}

// ---- keys ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    ident: String,
    owner: Option<String>,
    /// Generated when absent.
    secret: Option<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

/// Operator notes in the replicated log (a version-2 entry kind).
async fn list_notes(State(state): State<AppState>, _caller: Caller) -> Reply {
    let notes: Vec<String> = state.node.read_graph(|g| g.notes().to_vec());
    Ok(Json(json!({ "notes": notes })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

async fn add_note(State(state): State<AppState>, Caller(actor): Caller, body: Body<NoteBody>) -> Reply {
    let Json(b) = body?;
    execute(&state, actor, Command::AddNote { text: b.text }).await?;
    ok()
}

async fn list_keys(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Reply {
    let Query(q) = query?;
    let owner = listing_scope(&actor, q.owner, "keys")?;
    let keys: Vec<AuthKey> =
        state.node.read_graph(|g| g.keys().filter(|k| owner.as_ref().is_none_or(|o| &k.owner == o)).cloned().collect());
    Ok(Json(json!({ "keys": keys })))
}

async fn add_key(State(state): State<AppState>, Caller(actor): Caller, body: Body<KeyBody>) -> Reply {
    let Json(b) = body?;
    let owner = acting_user(&actor, b.owner, "create a key")?;
    let secret = b.secret.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let key = AuthKey { ident: b.ident, secret, owner, publish: b.publish, subscribe: b.subscribe };
    refuse_short_secrets(&[Command::AddKey(key.clone())], state.min_key_secret_len)?;
    execute(&state, actor, Command::AddKey(key.clone())).await?;
    Ok(Json(json!({ "key": key })))
}

async fn remove_key(State(state): State<AppState>, Caller(actor): Caller, Path(ident): Path<String>) -> Reply {
    execute(&state, actor, Command::RemoveKey { ident }).await?;
    ok()
}

// ---- explain, apply ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    from: String,
    to: String,
    channel: String,
    /// Handled by `consistent_reads`.
    #[allow(dead_code)]
    consistent: Option<bool>,
}

async fn explain(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<ExplainQuery>, QueryRejection>,
) -> Reply {
    let Query(q) = query?;
    if let Actor::User(me) = &actor {
        if me != &q.from && me != &q.to {
            return Err(ApiError::forbidden("a user can only ask about paths that start or end with them"));
        }
    }
    let result = state.node.read_graph(|g| {
        for u in [&q.from, &q.to] {
            if !g.has_user(u) {
                return Err(ApiError::from(hpfriends_graph::GraphError::UnknownUser(u.clone())));
            }
        }
        Ok(explain_path(g, &q.from, &q.to, &q.channel))
    })?;
    Ok(Json(json!({ "explanation": result, "text": result.to_string() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    /// Keep keys whose secrets are shorter than `min_key_secret_len` (an
    /// import of an old broker's keys); each is named in `warnings`.
    #[serde(default)]
    allow_short_secrets: bool,
}

async fn apply(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<ApplyQuery>, QueryRejection>,
    request: axum::extract::Request,
) -> Reply {
    let Query(q) = query?;
    let limit = if actor == Actor::Operator { MAX_APPLY_BODY } else { MAX_USER_APPLY_BODY };
    let bytes = axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a declaration from this caller may be at most {limit} bytes"),
        )
    })?;
    let decl: Declaration = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("invalid declaration: {e}"))
    })?;
    let commands = state.node.read_graph(|g| plan(&decl, g)).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let warnings = if q.allow_short_secrets {
        short_secrets(&commands, state.min_key_secret_len)
    } else {
        refuse_short_secrets(&commands, state.min_key_secret_len)?;
        Vec::new()
    };
    let changes = commands.len();
    if changes > 0 {
        execute(&state, actor, Command::Batch { commands }).await?;
    }
    Ok(Json(json!({ "ok": true, "changes": changes, "warnings": warnings })))
}

/// What is wrong with each new key whose secret is shorter than `min`.
fn short_secrets(commands: &[Command], min: usize) -> Vec<String> {
    let mut found = Vec::new();
    for c in commands {
        match c {
            Command::AddKey(k) if k.secret.chars().count() < min => found.push(format!(
                "the secret of key {:?} is {} characters long, shorter than {min}",
                k.ident,
                k.secret.chars().count()
            )),
            Command::Batch { commands } => found.extend(short_secrets(commands, min)),
            _ => {}
        }
    }
    found
}

fn refuse_short_secrets(commands: &[Command], min: usize) -> Result<(), ApiError> {
    let short = short_secrets(commands, min);
    if short.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!("{}: give a longer secret, or none to get a generated one", short.join("; "))))
}

// ---- cluster ----

async fn cluster_status(State(state): State<AppState>, Caller(actor): Caller) -> Reply {
    // The nodes' addresses are the operator's to see.
    let addresses = actor == Actor::Operator;
    let m = state.node.metrics().borrow().clone();
    let replication: BTreeMap<u64, Option<u64>> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, log)| (*id, log.map(|l| l.index))).collect())
        .unwrap_or_default();
    let last_log = m.last_log_index.unwrap_or(0);
    let nodes: Vec<Value> = m
        .membership_config
        .nodes()
        .map(|(id, info)| {
            let matched =
                if *id == m.id { m.last_applied.map(|l| l.index) } else { replication.get(id).copied().flatten() };
            json!({
                "id": id,
                "voter": m.membership_config.membership().get_joint_config().iter().any(|c| c.contains(id)),
                "leader": m.current_leader == Some(*id),
                "matched_index": matched,
                "lag": matched.map(|i| last_log.saturating_sub(i)),
                "cluster_addr": addresses.then_some(&info.cluster_addr),
                "http_addr": addresses.then_some(&info.http_addr),
                "hpfeeds_addr": addresses.then_some(&info.hpfeeds_addr),
            })
        })
        .collect();
    Ok(Json(json!({
        "node_id": m.id,
        "role": format!("{:?}", m.state),
        "term": m.current_term,
        "leader": m.current_leader,
        "last_applied": m.last_applied.map(|l| l.index),
        "last_log_index": m.last_log_index,
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "index_generation": state.router.view().index.generation(),
        "nodes": nodes,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaveBody {
    node_id: u64,
}

async fn cluster_leave(State(state): State<AppState>, Caller(actor): Caller, body: Body<LeaveBody>) -> Reply {
    if actor != Actor::Operator {
        return Err(ApiError::forbidden("only the operator changes cluster membership"));
    }
    let Json(b) = body?;
    state.node.remove_member(b.node_id).await?;
    ok()
}
