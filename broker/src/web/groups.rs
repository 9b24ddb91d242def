//! Groups: mine and the ones I was invited to; create one; as admin, invite,
//! remove members and make admins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hpfriends_graph::Actor;
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{csrf_forms, UserForm};
use super::layout::{action_button, csrf_field, error_for, page, render, text_input, InputAttrs, Problem};
use super::session::SignedInUser;
use crate::app::groups::{self, Membership};
use crate::app::types::urlencode;
use crate::app::types::GroupInfo;
use crate::app::{AppError, Field};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct GroupForm {
    csrf: String,
    name: String,
    user: String,
}

csrf_forms!(GroupForm);

const GROUP_FIELDS: [(Field, &str); 3] = [(Field::Group, "name"), (Field::Name, "name"), (Field::User, "user")];

fn render_groups(state: &AppState, u: &SignedInUser, form: Option<&GroupForm>, problem: Option<&Problem>) -> Markup {
    let SignedInUser(signed, me) = u;
    let groups: Vec<GroupInfo> = groups::list(state, &Actor::User(me.clone()), true);
    let body = html! {
        p.lead { "Share with a group and every member who accepted reads it. Admins invite and remove members." }
        (error_for(problem, "form"))
        @if groups.is_empty() { p.empty { "You are in no group yet." } }
        @for (gi, g) in groups.iter().enumerate() {
            @let admin = g.admins().contains(me);
            // Of my groups, only one I am invited to hides its members.
            @let invited = g.members.is_none();
            @let base = format!("/groups/{}", urlencode(&g.name));
            section.group aria-labelledby=(format!("g-{}", g.name)) {
                h2 id=(format!("g-{}", g.name)) { (g.name) @if admin { " " span.badge { "admin" } } @if invited { " " span.pending { "invited" } } }
                @if invited {
                    p { "You are invited to this group." }
                    (action_button(signed, &format!("{base}/join"), &[], "Accept", None))
                    (action_button(signed, &format!("{base}/leave"), &[], "Decline", None))
                }
                ul.members {
                    @for m in g.members() {
                        li {
                            (m.user)
                            @if g.admins().contains(&m.user) { " " span.badge { "admin" } }
                            @if !m.accepted { " " span.pending { "invited" } }
                            @if admin && &m.user != me {
                                @if m.accepted && !g.admins().contains(&m.user) {
                                    (action_button(signed, &format!("{base}/admin"), &[("user", &m.user)], "Make admin", None))
                                }
                                (action_button(signed, &format!("{base}/remove"), &[("user", &m.user)], "Remove", Some("Remove this member?")))
                            }
                        }
                    }
                }
                @if admin {
                    form.row method="post" action=(format!("{base}/invite")) {
                        (csrf_field(signed))
                        (text_input(problem.filter(|_| form.is_some_and(|f| f.name == g.name)), "user", &format!("Invite to {}", g.name), "", InputAttrs {
                            complete: Some("users"), autocomplete: Some("off"), id: Some(format!("invite-{gi}")), ..InputAttrs::text()
                        }))
                        input type="hidden" name="name" value=(g.name);
                        button type="submit" { "Invite" }
                    }
                }
                @if !invited && !(admin && g.admins().len() == 1) {
                    (action_button(signed, &format!("{base}/leave"), &[], "Leave group", Some("Leave this group?")))
                }
            }
        }
        h2 { "Create a group" }
        form.card method="post" action="/groups" {
            (csrf_field(signed))
            (text_input(problem.filter(|p| p.field == "name"), "name", "Group name", form.map_or("", |f| &f.name), InputAttrs::text()))
            button.primary type="submit" { "Create group" }
        }
    };
    page("Groups", Some(signed), "/groups", body)
}

pub async fn show(State(state): State<AppState>, u: SignedInUser) -> Response {
    render(StatusCode::OK, render_groups(&state, &u, None, None))
}

/// Back to the groups, or the groups with the reason at its field.
fn done(state: &AppState, u: &SignedInUser, f: &GroupForm, result: Result<(), AppError>) -> Response {
    match result {
        Ok(()) => Redirect::to("/groups").into_response(),
        Err(e) => {
            let p = Problem::of(e, &GROUP_FIELDS);
            render(p.status, render_groups(state, u, Some(f), Some(&p)))
        }
    }
}

pub async fn create(State(state): State<AppState>, UserForm(u, f): UserForm<GroupForm>) -> Response {
    let result = groups::create(&state, Actor::User(u.1.clone()), f.name.trim().to_string(), None).await;
    done(&state, &u, &f, result)
}

pub async fn act(
    State(state): State<AppState>,
    Path((group, action)): Path<(String, String)>,
    UserForm(u, mut f): UserForm<GroupForm>,
) -> Response {
    f.name = group.clone();
    let user = Some(f.user.trim().to_string()).filter(|u| !u.is_empty());
    let result = match Membership::parse(&action) {
        Some(action) => groups::change(&state, Actor::User(u.1.clone()), group, action, user).await,
        None => Err(AppError::NotFound(format!("no group action {action:?}"))),
    };
    done(&state, &u, &f, result)
}
