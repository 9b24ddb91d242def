//! `/api/v1/groups`: create groups; admins invite and remove, users join and leave.

use axum::extract::{Path, State};
use axum::Json;
use hpfriends_graph::{Actor, Command};

use super::openapi::ApiErrors;
use super::{acting_user, write, Body, Reply};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::types::{Done, GroupInfo, GroupList, MemberChange, MemberInfo, NewGroup};
use crate::http::AppState;

/// Every group with its admins and members.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", responses((status = 200, body = GroupList), ApiErrors))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Reply<GroupList> {
    let groups = state.node.read_graph(|g| {
        g.groups()
            .map(|(name, grp)| GroupInfo {
                name: name.to_string(),
                admins: grp.admins.iter().cloned().collect(),
                members: grp.members.iter().map(|(u, a)| MemberInfo { user: u.clone(), accepted: *a }).collect(),
            })
            .collect()
    });
    Ok(Json(GroupList { groups }))
}

/// A new group; its creator is its first admin and a member.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = NewGroup, responses((status = 200, body = Done), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<NewGroup>) -> Reply<Done> {
    let Json(body) = body?;
    let creator = acting_user(&actor, body.admin, "create a group")?;
    write(&state, actor, Command::AddGroup { name: body.name, creator }).await
}

fn named(change: MemberChange, what: &str) -> Result<String, ApiError> {
    change.user.ok_or_else(|| ApiError::bad_request(format!("missing field `user`: {what}")))
}

/// The membership routes differ only in whom they act for and the command.
async fn membership(
    state: AppState,
    actor: Actor,
    body: Body<MemberChange>,
    command: impl FnOnce(&Actor, MemberChange) -> Result<Command, ApiError>,
) -> Reply<Done> {
    let Json(change) = body?;
    let command = command(&actor, change)?;
    write(&state, actor, command).await
}

/// An admin invites a user; the user is a member once they join.
#[utoipa::path(post, path = "/api/v1/groups/{group}/invite", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn invite(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, body, |_, b| Ok(Command::InviteMember { group, user: named(b, "whom to invite")? })).await
}

/// An invited user accepts (the operator names the user).
#[utoipa::path(post, path = "/api/v1/groups/{group}/join", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn join(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, body, |a, b| {
        Ok(Command::AcceptMembership { group, user: acting_user(a, b.user, "join a group")? })
    })
    .await
}

/// A member leaves, or an invited user declines.
#[utoipa::path(post, path = "/api/v1/groups/{group}/leave", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn leave(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, body, |a, b| {
        Ok(Command::RemoveMember { group, user: acting_user(a, b.user, "leave a group")? })
    })
    .await
}

/// An admin removes a member.
#[utoipa::path(post, path = "/api/v1/groups/{group}/remove-member", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn remove_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, body, |_, b| Ok(Command::RemoveMember { group, user: named(b, "whom to remove")? })).await
}
