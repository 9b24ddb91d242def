//! Authkeys: the hpfeeds credentials of my sensors and readers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hpfriends_graph::{Actor, AuthKey};
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{channel_list, csrf_forms, UserForm};
use super::layout::{action_button, csrf_field, error_for, page, render, text_input, InputAttrs, Problem};
use super::session::SignedInUser;
use crate::app::activity::presence;
use crate::app::types::{urlencode, KeyChannels, NewKey};
use crate::app::{keys, AppError, Field};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KeyForm {
    csrf: String,
    ident: String,
    publish: String,
    subscribe: String,
    /// A checkbox: present when ticked.
    resume: Option<String>,
}

/// How long the archive keeps my messages on a channel.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KeepForm {
    csrf: String,
    channel: String,
    keep: String,
}

csrf_forms!(KeyForm, KeepForm);

const KEY_FIELDS: [(Field, &str); 2] = [(Field::Ident, "ident"), (Field::Channel, "publish")];

async fn render_page(
    state: &AppState,
    u: &SignedInUser,
    created: Option<&AuthKey>,
    form: Option<&KeyForm>,
    problem: Option<&Problem>,
) -> Markup {
    let SignedInUser(signed, me) = u;
    let keys = keys::list(state, &Actor::User(me.clone()), None).unwrap_or_default();
    let kept = crate::app::keeps::list(state, &Actor::User(me.clone()), None).map(|l| l.keeps).unwrap_or_default();
    let archive = state.archive.as_ref().map(|a| humantime::format_duration(a.retention().keep).to_string());
    let (live, silent) = presence(state, &keys).await;
    let hpfeeds = state.accounts.web_url.clone();
    let body = html! {
        @if let Some(key) = created { (created_notice(key, &hpfeeds)) }
        p.lead { "A key is what a sensor or reader logs in to hpfeeds with: an ident and a secret, and the channels it may publish and subscribe to." }
        @if keys.is_empty() {
            p.empty { "You have no keys yet. Create one below." }
        } @else {
            table {
                caption.visually-hidden { "My keys" }
                thead { tr { th scope="col" { "Ident" } th scope="col" { "Publishes" } th scope="col" { "Subscribes" } th scope="col" { "Connected now" } th scope="col" { "Change" } } }
                tbody {
                    @for (i, k) in keys.iter().enumerate() {
                        tr {
                            th scope="row" { a href=(format!("/keys/{}/activity", urlencode(&k.ident))) { code { (k.ident) } } }
                            td { (channels(&k.publish)) }
                            td { (channels(&k.subscribe)) @if k.resume { br; small.muted { "resumes where it left off" } } }
                            td.connected {
                                @match live.get(&k.ident) {
                                    Some(nodes) => @for (node, n) in nodes { span.ok { "node " (node) } " (" (n) ") " },
                                    None => span.muted { "no" },
                                }
                            }
                            td.actions {
                                details {
                                    summary { "Channels" }
                                    form method="post" action=(format!("/keys/{}/channels", urlencode(&k.ident))) {
                                        (csrf_field(signed))
                                        (text_input(None, "publish", &format!("{} publishes to", k.ident), &k.publish.join(", "),
                                            InputAttrs { required: false, id: Some(format!("pub-{i}")), ..InputAttrs::text() }))
                                        (text_input(None, "subscribe", &format!("{} subscribes to", k.ident), &k.subscribe.join(", "),
                                            InputAttrs { required: false, id: Some(format!("sub-{i}")), ..InputAttrs::text() }))
                                        button type="submit" { "Save channels" }
                                    }
                                }
                                (action_button(signed, &format!("/keys/{}/delete", urlencode(&k.ident)), &[], "Delete",
                                    Some("Delete this key? Sensors logged in with it are disconnected at once.")))
                            }
                        }
                    }
                }
            }
        }
        @for (node, why) in &silent { p.hint { "Node " (node) " did not say which keys are connected there: " (why) } }
        h2 { "Create a key" }
        form.card method="post" action="/keys" {
            (csrf_field(signed))
            (error_for(problem, "form"))
            (text_input(problem, "ident", "Ident", form.map_or("", |f| &f.ident), InputAttrs {
                hint: Some("The name the sensor logs in with, for example mysensor-cowrie."), ..InputAttrs::text()
            }))
            (text_input(problem, "publish", "Publishes to", form.map_or("", |f| &f.publish), InputAttrs {
                required: false, hint: Some("Channels, separated by commas, for example cowrie.sessions"), ..InputAttrs::text()
            }))
            (text_input(problem, "subscribe", "Subscribes to", form.map_or("", |f| &f.subscribe), InputAttrs {
                required: false, hint: Some("Channels this key may read."), ..InputAttrs::text()
            }))
            label.choice {
                input type="checkbox" name="resume" value="yes" checked[form.is_some_and(|f| f.resume.is_some())];
                " Resume: when a reader with this key reconnects, it first gets what it missed (kept in the archive), then the live stream."
            }
            p.hint { "The secret is generated and shown once." }
            button.primary type="submit" { "Create key" }
        }
        @if let Some(node_keep) = &archive {
            h2 #keeps { "How long your messages are kept" }
            p { "This node keeps what is published for " (node_keep) ", for readers who missed it. On a channel you can keep yours for less, or not at all." }
            @if !kept.is_empty() {
                table {
                    caption.visually-hidden { "My keeps" }
                    thead { tr { th scope="col" { "Channel" } th scope="col" { "Kept" } } }
                    tbody { @for k in &kept { tr { td { code { (k.channel) } } td { (k.keep) } } } }
                }
            }
            form.card method="post" action="/keys/keeps" {
                (csrf_field(signed))
                (text_input(None, "channel", "Channel", "", InputAttrs { id: Some("keep-channel".into()), ..InputAttrs::text() }))
                (text_input(None, "keep", "Keep", "", InputAttrs {
                    id: Some("keep-for".into()),
                    hint: Some("A time such as 12h or 2d, off (not kept; what was kept is deleted), or default."),
                    ..InputAttrs::text()
                }))
                button type="submit" { "Set" }
            }
        }
    };
    page("Authkeys", Some(signed), "/keys", body)
}

fn channels(list: &[String]) -> Markup {
    html! {
        @if list.is_empty() { span.muted { "none" } }
        @for c in list { code.chip { (c) } " " }
    }
}

/// The secret, once, with settings to paste into the sensors people run.
fn created_notice(key: &AuthKey, web_url: &str) -> Markup {
    let host = web_url.split("://").nth(1).unwrap_or(web_url).split(':').next().unwrap_or("localhost");
    let publish = key.publish.first().map(String::as_str).unwrap_or("CHANNEL");
    let subscribe = key.subscribe.first().map(String::as_str).unwrap_or(publish);
    let cowrie = format!(
        "[output_hpfeeds3]\nenabled = true\nserver = {host}\nport = 10000\nidentifier = {}\nsecret = {}\n",
        key.ident, key.secret
    );
    let dionaea = format!(
        "- name: hpfeeds\n  config:\n    server: \"{host}\"\n    port: 10000\n    ident: \"{}\"\n    secret: \"{}\"\n",
        key.ident, key.secret
    );
    let cli = format!(
        "hpfeeds publish --host {host} -p 10000 -i {} -s {} -c {publish} 'hello'\nhpfeeds subscribe --host {host} -p 10000 -i {} -s {} -c {subscribe}\n",
        key.ident, key.secret, key.ident, key.secret
    );
    html! {
        section.notice role="status" aria-labelledby="created-title" {
            h2 #created-title { "Key " code { (key.ident) } " created" }
            p { "Its secret is shown only now. Copy it into your sensor's settings:" }
            p { "Secret: " code #secret.secret { (key.secret) } " " button.copy type="button" data-copy="#secret" { "Copy" } }
            @for (title, id, text) in [("cowrie (cowrie.cfg)", "snip-cowrie", &cowrie), ("dionaea (ihandlers/hpfeeds.yaml)", "snip-dionaea", &dionaea), ("the hpfeeds command line", "snip-cli", &cli)] {
                details {
                    summary { (title) }
                    pre { code id=(id) { (text) } }
                    button.copy type="button" data-copy=(format!("#{id}")) { "Copy" }
                }
            }
        }
    }
}

pub async fn show(State(state): State<AppState>, u: SignedInUser) -> Response {
    render(StatusCode::OK, render_page(&state, &u, None, None, None).await)
}

pub async fn create(State(state): State<AppState>, UserForm(u, f): UserForm<KeyForm>) -> Response {
    let new = NewKey {
        ident: f.ident.trim().to_string(),
        owner: None,
        secret: None,
        publish: channel_list(&f.publish),
        subscribe: channel_list(&f.subscribe),
        resume: f.resume.is_some(),
    };
    match keys::add(&state, Actor::User(u.1.clone()), new).await {
        Ok(key) => render(StatusCode::OK, render_page(&state, &u, Some(&key), None, None).await),
        Err(e) => {
            let problem = Problem::of(e, &KEY_FIELDS);
            render(problem.status, render_page(&state, &u, None, Some(&f), Some(&problem)).await)
        }
    }
}

pub async fn change(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    UserForm(u, f): UserForm<KeyForm>,
) -> Response {
    let wanted = KeyChannels { publish: channel_list(&f.publish), subscribe: channel_list(&f.subscribe) };
    let result = keys::change_channels(&state, Actor::User(u.1.clone()), &ident, wanted).await.map(drop);
    done(&state, &u, result).await
}

pub async fn set_keep(State(state): State<AppState>, UserForm(u, f): UserForm<KeepForm>) -> Response {
    let setting = crate::app::types::KeepSetting { channel: f.channel.trim().to_string(), keep: f.keep, owner: None };
    done(&state, &u, crate::app::keeps::set(&state, Actor::User(u.1.clone()), setting).await).await
}

pub async fn delete(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    UserForm(u, _): UserForm<KeyForm>,
) -> Response {
    done(&state, &u, keys::remove(&state, Actor::User(u.1.clone()), ident).await).await
}

/// Back to the list, or the list with the reason at its top.
async fn done(state: &AppState, u: &SignedInUser, result: Result<(), AppError>) -> Response {
    match result {
        Ok(()) => Redirect::to("/keys").into_response(),
        Err(e) => {
            let problem = Problem::of(e, &[]);
            render(problem.status, render_page(state, u, None, None, Some(&problem)).await)
        }
    }
}
