//! Audience: for each channel I publish on, everyone who can read my data
//! there and the path that lets them, from the sharing index; and before I
//! offer a share, who it would add.

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use hpfriends_graph::{explain_all, readers_through, Explanation, Target};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{page, render, text_input, InputAttrs};
use super::session::SignedInUser;
use crate::http::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PreviewQuery {
    to: String,
    channel: String,
}

struct ChannelAudience {
    channel: String,
    /// (reader, path)
    readers: Vec<(String, String)>,
}

fn audience(state: &AppState, me: &str) -> Vec<ChannelAudience> {
    state.node.read_index(|g, index| {
        let mut channels: BTreeSet<&str> = BTreeSet::new();
        for k in g.keys().filter(|k| k.owner == me) {
            channels.extend(k.publish.iter().map(String::as_str));
        }
        channels.extend(g.channels().filter(|c| g.out_shares(me, c).is_some()));
        channels
            .into_iter()
            .map(|channel| {
                // The readers the index holds, each with its path from one search.
                let mut paths = explain_all(g, me, channel);
                let readers = index
                    .reader_names(g, me, channel)
                    .into_iter()
                    .filter(|r| r != me)
                    .map(|r| {
                        let hops = paths.remove(&r).unwrap_or_default();
                        let path = Explanation::Path { hops }.to_string();
                        (r, path)
                    })
                    .collect();
                ChannelAudience { channel: channel.to_string(), readers }
            })
            .collect()
    })
}

/// Who an accepted share to `to` on `channel` would add to my readers.
fn preview(state: &AppState, me: &str, to: &str, channel: &str) -> Result<Vec<String>, String> {
    let to = Target::parse(to);
    state.node.read_index(|g, index| {
        match &to {
            Target::User(u) if !g.has_user(u) => return Err(format!("unknown user {u:?}")),
            Target::Group(x) if g.group(x).is_none() => return Err(format!("unknown group {x:?}")),
            _ => {}
        }
        let now: BTreeSet<String> = index.reader_names(g, me, channel).into_iter().collect();
        Ok(readers_through(g, me, &to, channel).into_iter().filter(|r| !now.contains(r)).collect())
    })
}

pub async fn show(State(state): State<AppState>, u: SignedInUser, Query(q): Query<PreviewQuery>) -> Response {
    let SignedInUser(signed, me) = &u;
    let channels = audience(&state, me);
    let asked = !q.to.trim().is_empty() && !q.channel.trim().is_empty();
    let previewed = asked.then(|| preview(&state, me, q.to.trim(), q.channel.trim()));
    let body: Markup = html! {
        p.lead { "Everyone who can read what your keys publish, channel by channel, and the shares that let them. Relays through shares_all are included." }
        @if channels.is_empty() { p.empty { "You publish on no channel yet." } }
        @for c in &channels {
            section aria-labelledby=(format!("ch-{}", c.channel)) {
                h2 id=(format!("ch-{}", c.channel)) { code { (c.channel) } " " span.count { (c.readers.len()) " reader" @if c.readers.len() != 1 { "s" } } }
                @if c.readers.is_empty() {
                    p.empty { "Only you read this channel's data." }
                } @else {
                    table {
                        caption.visually-hidden { "Readers of " (c.channel) }
                        thead { tr { th scope="col" { "Reader" } th scope="col" { "Path" } } }
                        tbody { @for (reader, path) in &c.readers { tr { td { (reader) } td.path { (path) } } } }
                    }
                }
            }
        }
        h2 #preview { "Before you offer a share" }
        form.card method="get" action="/audience#preview" {
            (text_input(None, "to", "With (a user, or group:NAME)", &q.to, InputAttrs { complete: Some("targets"), autocomplete: Some("off"), ..InputAttrs::text() }))
            (text_input(None, "channel", "Channel", &q.channel, InputAttrs::text()))
            button type="submit" { "Show who would be added" }
        }
        @match &previewed {
            Some(Ok(added)) if added.is_empty() => p role="status" { "Nobody new: everyone it reaches reads your data there already." },
            Some(Ok(added)) => div role="status" {
                p { "Once accepted, " (added.len()) " more would read your data on " code { (q.channel.trim()) } ":" }
                ul.names { @for a in added { li { (a) } } }
            },
            Some(Err(e)) => p.error role="alert" { (e) },
            None => {},
        }
    };
    render(StatusCode::OK, page("Audience", Some(signed), "/audience", body))
}
