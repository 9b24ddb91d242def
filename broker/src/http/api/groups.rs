//! `/api/v1/groups`: create groups; admins invite and remove, users join and leave.

use axum::extract::{Path, State};
use axum::Json;

use super::openapi::ApiErrors;
use super::{done, Body, Reply};
use crate::app::groups::{self, Membership};
use crate::app::types::{Done, GroupList, MemberChange, NewGroup};
use crate::http::auth::Caller;
use crate::state::AppState;

/// Every group's name; its admins to its admins, members and invited users;
/// its members to its admins and members (the operator sees everything).
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", responses((status = 200, body = GroupList), ApiErrors))]
pub async fn list(State(state): State<AppState>, Caller(actor): Caller) -> Reply<GroupList> {
    Ok(Json(GroupList { groups: groups::list(&state, &actor, false) }))
}

/// A new group; its creator is its first admin and a member.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = NewGroup, responses((status = 200, body = Done), ApiErrors))]
pub async fn add(State(state): State<AppState>, Caller(actor): Caller, body: Body<NewGroup>) -> Reply<Done> {
    let Json(body) = body?;
    done(groups::create(&state, actor, body.name, body.admin).await)
}

/// The membership routes differ only in the action.
async fn membership(
    state: AppState,
    actor: hpfriends_graph::Actor,
    group: String,
    action: Membership,
    body: Body<MemberChange>,
) -> Reply<Done> {
    let Json(change) = body?;
    done(groups::change(&state, actor, group, action, change.user).await)
}

/// An admin invites a user; the user is a member once they join.
#[utoipa::path(post, path = "/api/v1/groups/{group}/invite", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn invite(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, Membership::Invite, body).await
}

/// An invited user accepts (the operator names the user).
#[utoipa::path(post, path = "/api/v1/groups/{group}/join", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn join(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, Membership::Join, body).await
}

/// A member leaves, or an invited user declines.
#[utoipa::path(post, path = "/api/v1/groups/{group}/leave", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn leave(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, Membership::Leave, body).await
}

/// An admin removes a member.
#[utoipa::path(post, path = "/api/v1/groups/{group}/remove-member", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn remove_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, Membership::Remove, body).await
}

/// An admin makes a member an admin too.
#[utoipa::path(post, path = "/api/v1/groups/{group}/admins", tag = "groups", params(("group" = String, Path)), request_body = MemberChange, responses((status = 200, body = Done), ApiErrors))]
pub async fn add_admin(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(group): Path<String>,
    body: Body<MemberChange>,
) -> Reply<Done> {
    membership(state, actor, group, Membership::Admin, body).await
}
