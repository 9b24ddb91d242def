//! History: the changes of the sharing graph that touch me (for the
//! operator: every change), newest first, with the API's filters.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{page, render, text_input, InputAttrs};
use super::session::SignedIn;
use crate::app::history;
use crate::app::types::urlencode;
use crate::app::types::HistoryQuery;
use crate::state::AppState;

/// The filters as the form sends them (empty fields are no filter).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct HistoryForm {
    user: String,
    channel: String,
    since: String,
    until: String,
    before: Option<u64>,
}

/// Changes per page.
const PAGE: usize = 50;

impl HistoryForm {
    fn query(&self) -> HistoryQuery {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        HistoryQuery {
            user: given(&self.user),
            channel: given(&self.channel),
            since: given(&self.since),
            until: given(&self.until),
            limit: Some(PAGE),
            before: self.before,
            consistent: None,
        }
    }

    /// This page's filters in a link to the next one.
    fn older(&self, next: u64) -> String {
        let mut link = format!("/history?before={next}");
        for (name, value) in
            [("user", &self.user), ("channel", &self.channel), ("since", &self.since), ("until", &self.until)]
        {
            if !value.trim().is_empty() {
                link.push_str(&format!("&{name}={}", urlencode(value.trim())));
            }
        }
        link
    }
}

pub async fn show(State(state): State<AppState>, signed: SignedIn, Query(form): Query<HistoryForm>) -> Response {
    let answer = history::page(&state, &signed.actor, form.query()).await;
    let optional = |hint| InputAttrs { required: false, hint: Some(hint), ..InputAttrs::text() };
    let body: Markup = html! {
        p.lead {
            @if signed.is_operator() { "Every change of the sharing graph, newest first: who made it, when, and through which node." }
            @else { "Every change that touches you: your shares in and out, your keys, your groups. Newest first, with who made it and when." }
        }
        form.card.filters method="get" action="/history" {
            (text_input(None, "user", "User", &form.user, InputAttrs { complete: Some("users"), autocomplete: Some("off"), ..optional("Changes that touch this user") }))
            (text_input(None, "channel", "Channel", &form.channel, optional("Changes about this channel")))
            (text_input(None, "since", "Since", &form.since, optional("2026-12-01, 2026-12-01T08:00:00Z or Unix seconds")))
            (text_input(None, "until", "Until", &form.until, optional("Before this time")))
            button type="submit" { "Show" }
        }
        @match &answer {
            Err(e) => p.error role="alert" { (e.to_string()) },
            Ok(page) if page.events.is_empty() && form.before.is_none() => p.empty { "No changes." },
            Ok(page) => {
                table.history {
                    caption.visually-hidden { "Changes, newest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Node" } th scope="col" { "Change" } } }
                    tbody {
                        @for e in &page.events {
                            tr {
                                td { @match e.at { Some(at) => time datetime=(e.when()) data-unix=(at) { (e.when()) }, None => "unknown" } }
                                td { @if e.actor.is_none() { strong.operator title="the operator token" { (e.who()) } } @else { (e.who()) } }
                                td { @if let Some(n) = e.node { (n) } }
                                td.change {
                                    code { (e.what()) }
                                    @let ids = e.identities();
                                    @if !ids.is_empty() { " " small.ids title="user (u) and group (g) ids then: a name taken again is another id" { (ids) } }
                                }
                            }
                        }
                    }
                }
                @if let Some(next) = page.next { p { a rel="next" href=(form.older(next)) { "Older changes" } } }
            }
        }
    };
    let status = if answer.is_err() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    render(status, page("History", Some(&signed), "/history", body))
}
