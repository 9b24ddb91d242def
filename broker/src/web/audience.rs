//! Audience: for each channel I publish on, how many can read my data there;
//! for the chosen channel, everyone who can and the path that lets them, from
//! the sharing index; and before I offer a share, who it would add.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{page, render, text_input, InputAttrs};
use super::session::SignedInUser;
use crate::app::audience::{self, Reader};
use crate::app::types::urlencode;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AudienceQuery {
    /// The channel whose readers are listed (the first one when empty).
    channel: String,
    /// The share to preview.
    to: String,
    on: String,
    /// The previewed share would carry its history (a checkbox).
    history: String,
}

fn readers_table(channel: &str, readers: &[Reader]) -> Markup {
    html! {
        section #readers aria-labelledby="readers-title" {
            h2 #readers-title { "Readers of " code { (channel) } " " span.count { (readers.len()) } }
            @if readers.is_empty() {
                p.empty { "Only you read this channel's data." }
            } @else {
                table {
                    caption.visually-hidden { "Readers of " (channel) }
                    thead { tr { th scope="col" { "Reader" } th scope="col" { "Path" } th scope="col" { "Gets" } } }
                    tbody {
                        @for r in readers {
                            tr {
                                td { (r.name) } td.path { (r.path) }
                                td {
                                    @match &r.filtered {
                                        None => "everything",
                                        Some(chains) => {
                                            "what passes "
                                            @for (i, c) in chains.iter().enumerate() {
                                                @if i > 0 { "; or else " }
                                                code { (c) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn show(State(state): State<AppState>, u: SignedInUser, Query(q): Query<AudienceQuery>) -> Response {
    let SignedInUser(signed, me) = &u;
    let a = audience::of(&state, me, q.channel.trim());
    let asked = !q.to.trim().is_empty() && !q.on.trim().is_empty();
    let previewed = asked.then(|| audience::preview(&state, me, q.to.trim(), q.on.trim()));
    let body: Markup = html! {
        p.lead { "Everyone who can read what your keys publish, channel by channel, and the shares that let them. Relays through shares_all are included." }
        @if a.channels.is_empty() { p.empty { "You publish on no channel yet." } }
        @else {
            table {
                caption.visually-hidden { "My channels" }
                thead { tr { th scope="col" { "Channel" } th scope="col" { "Readers" } } }
                tbody {
                    @for (channel, n) in &a.channels {
                        tr {
                            td { a href=(format!("/audience?channel={}#readers", urlencode(channel)))
                                aria-current=[a.chosen.as_ref().filter(|(c, _)| c == channel).map(|_| "true")] { code { (channel) } } }
                            td { (n) }
                        }
                    }
                }
            }
        }
        @if let Some((channel, readers)) = &a.chosen { (readers_table(channel, readers)) }
        h2 #preview { "Before you offer a share" }
        form.card method="get" action="/audience#preview" {
            (text_input(None, "to", "With (a user, or group:NAME)", &q.to, InputAttrs { complete: Some("targets"), autocomplete: Some("off"), ..InputAttrs::text() }))
            (text_input(None, "on", "On channel", &q.on, InputAttrs::text()))
            label.choice {
                input type="checkbox" name="history" value="yes" checked[!q.history.is_empty()];
                " With its history"
            }
            button type="submit" { "Show who would be added" }
        }
        @match &previewed {
            Some(Ok(added)) if added.named.is_empty() && added.more == 0 => p role="status" { "Nobody new: everyone it reaches reads your data there already." },
            Some(Ok(added)) => div role="status" {
                p { "Once accepted, " (added.named.len() + added.more) " more would read your data on " code { (q.on.trim()) } ":" }
                ul.names {
                    @for a in &added.named { li { (a) } }
                    @if added.more > 0 { li.more { (added.more) " further along, through shares that are theirs (named here once yours is accepted)" } }
                }
                @if q.history.is_empty() {
                    p.hint { "They read what you publish from the moment it is accepted, not before." }
                } @else {
                    p.hint { "With its history: they also read what you published before, as far back as the archive keeps it." }
                }
            },
            Some(Err(e)) => p.error role="alert" { (e) },
            None => {},
        }
    };
    render(StatusCode::OK, page("Audience", Some(signed), "/audience", body))
}
