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
    Ok(Json(list_groups(&state, None)))
}

/// Every group, or those `member` belongs to, is invited to or administers.
pub fn list_groups(state: &AppState, member: Option<&str>) -> GroupList {
    let groups = state.node.read_graph(|g| {
        g.groups()
            .filter(|(_, grp)| member.is_none_or(|m| grp.members.contains_key(m) || grp.admins.contains(m)))
            .map(|(name, grp)| GroupInfo {
                name: name.to_string(),
                admins: grp.admins.iter().cloned().collect(),
                members: grp.members.iter().map(|(u, a)| MemberInfo { user: u.clone(), accepted: *a }).collect(),
            })
            .collect()
    });
    GroupList { groups }
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

/// The membership routes differ only in the action.
async fn membership(
    state: AppState,
    actor: Actor,
    group: String,
    action: &str,
    body: Body<MemberChange>,
) -> Reply<Done> {
    let Json(change) = body?;
    let command = membership_command(&actor, group, action, change.user)?;
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
    membership(state, actor, group, "invite", body).await
}

/// An invited user accepts (the operator names the user).
#[utoipa::path(post, path = "/api/v1/groups/{group}/join", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn join(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, "join", body).await
}

/// A member leaves, or an invited user declines.
#[utoipa::path(post, path = "/api/v1/groups/{group}/leave", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn leave(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, "leave", body).await
}

/// An admin removes a member.
#[utoipa::path(post, path = "/api/v1/groups/{group}/remove-member", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn remove_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, "remove", body).await
}

/// An admin makes a member an admin too.
#[utoipa::path(post, path = "/api/v1/groups/{group}/admins", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn add_admin(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, "admin", body).await
}

/// The command a membership change stands for: `invite`, `join`, `leave`,
/// `remove` or `admin` (the API's routes and the web app's buttons).
pub fn membership_command(
    actor: &Actor,
    group: String,
    action: &str,
    user: Option<String>,
) -> Result<Command, ApiError> {
    let change = MemberChange { user };
    match action {
        "invite" => Ok(Command::InviteMember { group, user: named(change, "whom to invite")? }),
        "join" => Ok(Command::AcceptMembership { group, user: acting_user(actor, change.user, "join a group")? }),
        "leave" => Ok(Command::RemoveMember { group, user: acting_user(actor, change.user, "leave a group")? }),
        "remove" => Ok(Command::RemoveMember { group, user: named(change, "whom to remove")? }),
        "admin" => Ok(Command::AddGroupAdmin { group, user: named(change, "whom to make an admin")? }),
        other => Err(ApiError::not_found(format!("no group action {other:?}"))),
    }
}
