//! A key's activity (the original hpfriends' per-key statistics and Logs
//! page): what it published and was delivered, its connections now and its
//! last failed logins, summed over every node.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};

use super::layout::{page, render};
use super::session::SignedIn;
use crate::app::activity;
use crate::app::types::time_text;
use crate::state::AppState;

fn time(secs: u64) -> Markup {
    html! { time datetime=(time_text(secs)) data-unix=(secs) { (time_text(secs)) } }
}

fn last(t: Option<u64>) -> Markup {
    html! { @match t { Some(t) => (time(t)), None => span.muted { "never" } } }
}

pub async fn show(State(state): State<AppState>, signed: SignedIn, Path(ident): Path<String>) -> Response {
    let a = match activity::of_key(&state, &signed.actor, &ident).await {
        Ok(a) => a,
        Err(e) => return super::layout::message_page(e.status(), "Key activity", &e.to_string()),
    };
    let body = html! {
        p.lead { "Since each node started, summed over the cluster. " a href="/keys" { "Back to your keys" } }
        @for n in &a.unanswered {
            p.error role="alert" { "Node " (n.node) " did not answer (" (n.reason) "): what it holds is missing below." }
        }
        dl.stats {
            dt { "Published" } dd { (a.published) " messages, " (a.published_bytes) " bytes; last " (last(a.last_publish)) }
            dt { "Delivered to it" } dd { (a.delivered) " messages, " (a.delivered_bytes) " bytes" }
            dt { "Last subscribed" } dd { (last(a.last_subscribe)) }
        }
        h2 { "Kept" }
        @match &state.archive {
            Some(archive) => {
                @let r = archive.retention();
                p {
                    "What this key publishes is kept in the archive for " (humantime::format_duration(r.keep))
                    " on every node (at most " (r.max_bytes) " bytes per node, oldest first), for those its data is shared with to read back ("
                    code { "ctl messages" } "). This node holds " (archive.messages()) " messages of all keys"
                    @if let Some(oldest) = archive.oldest() { ", the oldest from " (time(oldest.time_us / 1_000_000)) }
                    "."
                }
            }
            None => p { "This node keeps no archive (" code { "archive = false" } "): what this key publishes is delivered live only." },
        }
        h2 { "Connected now" }
        @if a.connections.is_empty() { p.empty { "Not connected anywhere." } }
        @else {
            table {
                caption.visually-hidden { "Connections of " (a.ident) }
                thead { tr { th scope="col" { "Node" } th scope="col" { "From" } th scope="col" { "Since" } th scope="col" { "Subscribed to" } } }
                tbody { @for c in &a.connections { tr { td { (c.node) } td { (c.remote) } td { (time(c.since)) } td { (c.channels.join(", ")) } } } }
            }
        }
        h2 { "Failed logins" }
        @if a.failed_logins.is_empty() { p.empty { "None." } }
        @else {
            table.failed {
                caption.visually-hidden { "Failed logins with " (a.ident) ", newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Node" } th scope="col" { "From" } th scope="col" { "Why" } } }
                tbody { @for f in &a.failed_logins { tr { td { (time(f.at)) } td { (f.node) } td { (f.remote) } td { (f.reason) } } } }
            }
        }
    };
    render(StatusCode::OK, page(&format!("Key {}", a.ident), Some(&signed), "/keys", body))
}
