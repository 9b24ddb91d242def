//! The operator's page: users (invite, reset, disable, remove) and the
//! cluster, refreshing by itself. Only the operator reaches it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hpfriends_graph::Actor;
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{csrf_forms, SessionForm};
use super::layout::{
    action_button, csrf_field, error_for, message_page, page, render, text_input, InputAttrs, Problem,
};
use super::session::SignedIn;
use crate::app::types::urlencode;
use crate::app::{accounts, cluster, users, Field};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserNameForm {
    csrf: String,
    name: String,
}

csrf_forms!(UserNameForm);

fn only_operator(signed: &SignedIn) -> Result<(), Response> {
    if signed.is_operator() {
        Ok(())
    } else {
        Err(message_page(StatusCode::FORBIDDEN, "Forbidden", "Only the operator may open this page."))
    }
}

/// The cluster as this node sees it (roles, lag) and as every node reports
/// itself (readiness, peer links, connections).
async fn cluster_markup(state: &AppState) -> Markup {
    let status = cluster::status(state, true);
    let reports = cluster::reports(state).await;
    html! {
        div #cluster data-refresh="/operator/cluster" aria-live="polite" {
            p { "Seen from node " (status.node_id) " (" (status.role) ", term " (status.term)
                ", last applied " (status.last_applied.unwrap_or(0)) "); lag is known on the leader." }
            table {
                caption.visually-hidden { "Nodes" }
                thead { tr { th scope="col" { "Node" } th scope="col" { "Role" } th scope="col" { "Lag" } th scope="col" { "Ready" } th scope="col" { "Peer links" } th scope="col" { "hpfeeds connections" } th scope="col" { "hpfeeds" } th scope="col" { "HTTP" } th scope="col" { "Cluster" } } }
                tbody {
                    @for n in &status.nodes {
                        tr {
                            th scope="row" { (n.id) }
                            td { @if n.leader { "leader" } @else if n.voter { "voter" } @else { "learner" } }
                            td { (n.lag.map_or("?".to_string(), |l| l.to_string())) }
                            @match reports.get(&n.id) {
                                Some(Ok(r)) => {
                                    td { @if r.ready { span.ok { "ready" } } @else { span.bad { "not ready" } } }
                                    td { @if r.unreachable_peers.is_empty() { "all up" } @else { "unreachable: " (format!("{:?}", r.unreachable_peers)) } }
                                    td { (r.hpfeeds_connections) }
                                },
                                Some(Err(e)) => td.bad colspan="3" { "does not answer: " (e) },
                                None => td colspan="3" { "?" },
                            }
                            td { code { (n.hpfeeds_addr.clone().unwrap_or_default()) } }
                            td { code { (n.http_addr.clone().unwrap_or_default()) } }
                            td { code { (n.cluster_addr.clone().unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
    }
}

async fn render_operator(
    state: &AppState,
    signed: &SignedIn,
    link: Option<(&str, &str)>,
    problem: Option<&Problem>,
) -> Markup {
    let users = users::list(state, &hpfriends_graph::Actor::Operator);
    let cluster = cluster_markup(state).await;
    let body = html! {
        h2 { "Users" }
        @if let Some((user, link)) = link {
            section.notice role="status" {
                p { "Give " strong { (user) } " this link; it works once and expires in " (state.accounts.invite_ttl.as_secs() / 3600) " hours:" }
                p { code #invite-link.secret { (link) } " " button.copy type="button" data-copy="#invite-link" { "Copy" } }
            }
        }
        (error_for(problem, "form"))
        form.row method="post" action="/operator/users" {
            (csrf_field(signed))
            (text_input(problem, "name", "Invite a new user", "", InputAttrs { hint: Some("Their user name; you get a one-time link to give them."), ..InputAttrs::text() }))
            button.primary type="submit" { "Invite" }
        }
        @if users.is_empty() { p.empty { "No users yet: invite the first." } }
        @else { table {
            caption.visually-hidden { "Users" }
            thead { tr { th scope="col" { "User" } th scope="col" { "Status" } th scope="col" { span.visually-hidden { "Actions" } } } }
            tbody {
                @for u in &users {
                    @let base = format!("/operator/users/{}", urlencode(&u.name));
                    tr {
                        th scope="row" { (u.name) }
                        td {
                            @if u.disabled == Some(true) { span.bad { "disabled" } }
                            @else if u.has_password == Some(true) { span.ok { "active" } }
                            @else if u.invited == Some(true) { span.pending { "invited" } }
                            @else { span.muted { "no password" } }
                        }
                        td.actions {
                            (action_button(signed, &format!("{base}/reset"), &[], if u.has_password == Some(true) { "Reset password" } else { "New invitation" }, None))
                            @if u.disabled == Some(true) {
                                (action_button(signed, &format!("{base}/enable"), &[], "Enable", None))
                            } @else {
                                (action_button(signed, &format!("{base}/disable"), &[], "Disable", Some("Disable this user? Their sessions, tokens and keys stop working at once.")))
                            }
                            (action_button(signed, &format!("{base}/remove"), &[], "Remove", Some("Remove this user with every key, share and membership?")))
                        }
                    }
                }
            }
        } }
        h2 { "Cluster" }
        (cluster)
    };
    page("Operator", Some(signed), "/operator", body)
}

pub async fn show(State(state): State<AppState>, signed: SignedIn) -> Response {
    if let Err(r) = only_operator(&signed) {
        return r;
    }
    render(StatusCode::OK, render_operator(&state, &signed, None, None).await)
}

/// The cluster table alone, for the page's refresh.
pub async fn cluster_fragment(State(state): State<AppState>, signed: SignedIn) -> Response {
    if let Err(r) = only_operator(&signed) {
        return r;
    }
    render(StatusCode::OK, cluster_markup(&state).await)
}

async fn invite_and_show(state: &AppState, signed: &SignedIn, name: &str) -> Response {
    match accounts::invite(state, Actor::Operator, name).await {
        Ok((link, _)) => render(StatusCode::OK, render_operator(state, signed, Some((name, &link)), None).await),
        Err(e) => {
            let p = Problem::of(e, &[(Field::User, "name"), (Field::Name, "name")]);
            render(p.status, render_operator(state, signed, None, Some(&p)).await)
        }
    }
}

pub async fn invite(State(state): State<AppState>, SessionForm(signed, f): SessionForm<UserNameForm>) -> Response {
    if let Err(r) = only_operator(&signed) {
        return r;
    }
    invite_and_show(&state, &signed, f.name.trim()).await
}

pub async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    SessionForm(signed, _): SessionForm<UserNameForm>,
) -> Response {
    if let Err(r) = only_operator(&signed) {
        return r;
    }
    let result = match action.as_str() {
        "reset" => return invite_and_show(&state, &signed, &name).await,
        "disable" => users::set_disabled(&state, Actor::Operator, name, true).await,
        "enable" => users::set_disabled(&state, Actor::Operator, name, false).await,
        "remove" => users::remove(&state, Actor::Operator, name).await,
        _ => return super::not_found(),
    };
    match result {
        Ok(()) => Redirect::to("/operator").into_response(),
        Err(e) => {
            let p = Problem::of(e, &[]);
            render(p.status, render_operator(&state, &signed, None, Some(&p)).await)
        }
    }
}
