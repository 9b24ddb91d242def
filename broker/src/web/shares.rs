//! Shares (what I share) and Shared with you (offers to accept, and what I
//! receive now with the path it comes by).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hpfriends_graph::{Actor, Filter, ShareKind, ShareRecord, Target};
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{csrf_forms, UserForm};
use super::layout::{action_button, csrf_field, error_for, page, render, text_input, InputAttrs, Problem};
use super::session::SignedInUser;
use crate::app::types::ShareRequest;
use crate::app::{shares, AppError, Field};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ShareForm {
    csrf: String,
    from: String,
    to: String,
    channel: String,
    kind: String,
    /// A checkbox: present when ticked.
    with_history: Option<String>,
    /// The filter's parts: a CEL condition, and JSON Pointers one per line.
    #[serde(rename = "where")]
    condition: String,
    redact: String,
    pseudonymize: String,
}

impl ShareForm {
    fn request(&self, from: Option<String>) -> ShareRequest {
        let kind = match self.kind.as_str() {
            "shares" => Some(ShareKind::Shares),
            "shares_all" => Some(ShareKind::SharesAll),
            _ => None,
        };
        ShareRequest {
            from,
            to: Target::parse(self.to.trim()),
            channel: self.channel.trim().to_string(),
            kind,
            with_history: self.with_history.is_some(),
            filter: self.filter(),
        }
    }

    fn filter(&self) -> Option<Filter> {
        let pointers = |text: &str| text.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let condition = Some(self.condition.trim()).filter(|c| !c.is_empty()).map(str::to_string);
        let f = Filter { condition, redact: pointers(&self.redact), pseudonymize: pointers(&self.pseudonymize) };
        (!f.is_empty()).then_some(f)
    }
}

csrf_forms!(ShareForm);

const SHARE_FIELDS: [(Field, &str); 6] = [
    (Field::Filter, "where"),
    (Field::Channel, "channel"),
    (Field::Kind, "kind"),
    (Field::User, "to"),
    (Field::Group, "to"),
    (Field::Share, "to"),
];

fn kind_label(kind: ShareKind) -> &'static str {
    match kind {
        ShareKind::Shares => "shares (my own messages)",
        ShareKind::SharesAll => "shares_all (mine and what I receive)",
    }
}

fn status(s: &ShareRecord) -> Markup {
    html! { @if s.accepted { span.ok { "accepted" } } @else { span.pending { "pending" } } }
}

fn share_fields<'a>(s: &'a ShareRecord, to: &'a str) -> [(&'static str, &'a str); 3] {
    [("from", &s.from), ("to", to), ("channel", &s.channel)]
}

fn mine(state: &AppState, me: &str) -> Vec<ShareRecord> {
    shares::list(state, &Actor::User(me.to_string()), None).unwrap_or_default()
}

fn render_shares(state: &AppState, u: &SignedInUser, form: Option<&ShareForm>, problem: Option<&Problem>) -> Markup {
    let SignedInUser(signed, me) = u;
    let out: Vec<ShareRecord> = mine(state, me).into_iter().filter(|s| &s.from == me).collect();
    // A refused offer comes back in the offer form; a refused filter, at its share.
    let offer = form.filter(|f| f.from.is_empty());
    let kind = offer.map_or("shares", |f| f.kind.as_str());
    let body = html! {
        p.lead { "A share lets a user, or every member of a group, read what your keys publish on one channel, once they accept it." }
        @if out.is_empty() {
            p.empty { "You share nothing yet." }
        } @else {
            table {
                caption.visually-hidden { "What I share" }
                thead { tr { th scope="col" { "With" } th scope="col" { "Channel" } th scope="col" { "Kind" } th scope="col" { "Status" } th scope="col" { span.visually-hidden { "Revoke" } } } }
                tbody {
                    @for s in &out {
                        @let to = s.to.to_string();
                        tr {
                            td { (to) } td { code { (s.channel) } }
                            td {
                                (s.kind.as_str()) @if s.with_history { br; small.muted { "with its history" } }
                                @if let Some(f) = &s.filter { br; small.filter { "filter: " code { (f) } } }
                            }
                            td { (status(s)) }
                            td.actions {
                                (action_button(signed, "/shares/revoke", &share_fields(s, &to), "Revoke", Some("Revoke this share? Delivery stops at once.")))
                                details.filter-edit open[problem_for(problem, form, s).is_some()] {
                                    summary { "Filter" }
                                    form method="post" action="/shares/filter" {
                                        (csrf_field(signed))
                                        @for (name, value) in share_fields(s, &to) { input type="hidden" name=(name) value=(value); }
                                        (filter_fields(problem_for(problem, form, s), form.filter(|f| same_share(f, s)), s.filter.as_ref(), &format!("{}-{}", to, s.channel)))
                                        button type="submit" { "Save filter" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Offer a share" }
        form.card method="post" action="/shares" {
            (csrf_field(signed))
            (error_for(problem, "form"))
            (text_input(problem, "to", "With (a user, or group:NAME)", offer.map_or("", |f| &f.to), InputAttrs {
                complete: Some("targets"), autocomplete: Some("off"), ..InputAttrs::text()
            }))
            (text_input(problem, "channel", "Channel", offer.map_or("", |f| &f.channel), InputAttrs::text()))
            fieldset aria-describedby=[super::layout::described_by(problem, "kind")] {
                legend { "Kind" }
                @for k in [ShareKind::Shares, ShareKind::SharesAll] {
                    label.choice {
                        input type="radio" name="kind" value=(k.as_str()) checked[kind == k.as_str()];
                        " " (kind_label(k))
                    }
                }
                (error_for(problem, "kind"))
            }
            label.choice {
                input type="checkbox" name="with_history" value="yes" checked[offer.is_some_and(|f| f.with_history.is_some())];
                " With its history: once accepted, they also read what you published before (within the archive's retention)"
            }
            details.filter-edit open[offer.is_some_and(|f| f.filter().is_some())] {
                summary { "Filter: share only some messages, or hide fields" }
                (filter_fields(problem.filter(|_| offer.is_some()), offer, None, "new"))
            }
            p.hint { "Before offering, see on " a href="/audience" { "Audience" } " who would be added." }
            button.primary type="submit" { "Offer share" }
        }
    };
    page("Shares", Some(signed), "/shares", body)
}

/// The problem belongs to this share's filter form (a refused `/shares/filter`).
fn problem_for<'a>(problem: Option<&'a Problem>, form: Option<&ShareForm>, s: &ShareRecord) -> Option<&'a Problem> {
    problem.filter(|_| form.is_some_and(|f| same_share(f, s)))
}

fn same_share(f: &ShareForm, s: &ShareRecord) -> bool {
    f.from == s.from && f.to.trim() == s.to.to_string() && f.channel.trim() == s.channel
}

/// The filter's inputs (docs/sharing.md, "Filters"), with what was typed, or the share's filter.
fn filter_fields(problem: Option<&Problem>, typed: Option<&ShareForm>, current: Option<&Filter>, id: &str) -> Markup {
    let (condition, redact, pseudonymize) = match (typed, current) {
        (Some(f), _) => (f.condition.clone(), f.redact.clone(), f.pseudonymize.clone()),
        (None, Some(f)) => (f.condition.clone().unwrap_or_default(), f.redact.join("\n"), f.pseudonymize.join("\n")),
        (None, None) => Default::default(),
    };
    let field = |name: &str| format!("f-{name}-{id}");
    html! {
        div.field {
            label for=(field("where")) { "Only messages where (CEL)" }
            textarea id=(field("where")) name="where" rows="2" spellcheck="false"
                placeholder="payload.eventid == \"cowrie.login.success\" && !ip(payload.src_ip).in_cidr(\"192.0.2.0/24\")"
                aria-describedby=[super::layout::described_by(problem, "where")] { (condition) }
            (error_for(problem, "where"))
        }
        div.field {
            label for=(field("redact")) { "Remove these fields (JSON Pointers, one per line)" }
            textarea id=(field("redact")) name="redact" rows="2" spellcheck="false" placeholder="/dst_ip" { (redact) }
        }
        div.field {
            label for=(field("pseudonymize")) { "Pseudonymize these fields (the same value, the same token)" }
            textarea id=(field("pseudonymize")) name="pseudonymize" rows="2" spellcheck="false" placeholder="/src_ip" { (pseudonymize) }
        }
    }
}

pub async fn show(State(state): State<AppState>, u: SignedInUser) -> Response {
    render(StatusCode::OK, render_shares(&state, &u, None, None))
}

/// Runs a share use case with the form's share, then goes to `back`; a
/// refusal renders the page again with the reason at its field.
async fn run<F: std::future::Future<Output = Result<(), AppError>>>(
    u: &SignedInUser,
    f: &ShareForm,
    use_case: impl FnOnce(Actor, ShareRequest) -> F,
    from: Option<String>,
    back: &str,
) -> Result<Response, Problem> {
    use_case(Actor::User(u.1.clone()), f.request(from)).await.map_err(|e| Problem::of(e, &SHARE_FIELDS))?;
    Ok(Redirect::to(back).into_response())
}

pub async fn offer(State(state): State<AppState>, UserForm(u, f): UserForm<ShareForm>) -> Response {
    match run(&u, &f, |a, r| shares::offer(&state, a, r), None, "/shares").await {
        Ok(r) => r,
        Err(p) => render(p.status, render_shares(&state, &u, Some(&f), Some(&p))),
    }
}

pub async fn filter(State(state): State<AppState>, UserForm(u, f): UserForm<ShareForm>) -> Response {
    match run(&u, &f, |a, r| shares::filter(&state, a, r), Some(f.from.clone()), "/shares").await {
        Ok(r) => r,
        Err(p) => render(p.status, render_shares(&state, &u, Some(&f), Some(&p))),
    }
}

pub async fn revoke(State(state): State<AppState>, UserForm(u, f): UserForm<ShareForm>) -> Response {
    match run(&u, &f, |a, r| shares::remove(&state, a, r), Some(f.from.clone()), "/shares").await {
        Ok(r) => r,
        Err(p) => render(p.status, render_shares(&state, &u, None, Some(&p))),
    }
}

// ---- Shared with you ----

fn render_received(state: &AppState, u: &SignedInUser, problem: Option<&Problem>) -> Markup {
    let SignedInUser(signed, me) = u;
    let offers = shares::offers_to(state, me).unwrap_or_default();
    let receiving = shares::receiving(state, me);
    let body = html! {
        (error_for(problem, "form"))
        h2 { "Waiting for you" }
        @if offers.is_empty() {
            p.empty { "No offers are waiting." }
        } @else {
            table {
                caption.visually-hidden { "Offers waiting for me" }
                thead { tr { th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Channel" } th scope="col" { "Kind" } th scope="col" { span.visually-hidden { "Answer" } } } }
                tbody {
                    @for s in &offers {
                        @let to = s.to.to_string();
                        tr {
                            td { (s.from) } td { (to) } td { code { (s.channel) } }
                            td { (s.kind.as_str()) @if let Some(f) = &s.filter { br; small.filter { "filter: " code { (f) } } } }
                            td.actions {
                                (action_button(signed, "/shared-with-you/accept", &share_fields(s, &to), "Accept", None))
                                (action_button(signed, "/shared-with-you/decline", &share_fields(s, &to), "Decline", None))
                            }
                        }
                    }
                }
            }
        }
        h2 { "What you receive now" }
        @if receiving.is_empty() {
            p.empty { "Nobody's data reaches you yet." }
        } @else {
            table {
                caption.visually-hidden { "What I receive" }
                thead { tr { th scope="col" { "Publisher" } th scope="col" { "Channel" } th scope="col" { "Path" } } }
                tbody {
                    @for (publisher, channel, path) in &receiving {
                        tr { td { (publisher) } td { code { (channel) } } td.path { (path) } }
                    }
                }
            }
        }
    };
    page("Shared with you", Some(signed), "/shared-with-you", body)
}

pub async fn received(State(state): State<AppState>, u: SignedInUser) -> Response {
    render(StatusCode::OK, render_received(&state, &u, None))
}

/// Accepting or declining an offer: back to the offers, or the offers with
/// the reason at their top.
async fn answer(state: &AppState, u: &SignedInUser, result: Result<Response, Problem>) -> Response {
    match result {
        Ok(r) => r,
        Err(p) => render(p.status, render_received(state, u, Some(&Problem { field: "form", ..p }))),
    }
}

pub async fn accept(State(state): State<AppState>, UserForm(u, f): UserForm<ShareForm>) -> Response {
    let result = run(&u, &f, |a, r| shares::accept(&state, a, r), Some(f.from.clone()), "/shared-with-you").await;
    answer(&state, &u, result).await
}

pub async fn decline(State(state): State<AppState>, UserForm(u, f): UserForm<ShareForm>) -> Response {
    let result = run(&u, &f, |a, r| shares::remove(&state, a, r), Some(f.from.clone()), "/shared-with-you").await;
    answer(&state, &u, result).await
}
