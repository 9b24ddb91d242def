//! Account: change my password, my API tokens for `ctl` and scripts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hpfriends_graph::Actor;
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{csrf_forms, UserForm};
use super::layout::{action_button, csrf_field, error_for, page, render, text_input, InputAttrs, Problem};
use super::session::{set_cookie, SignedInUser, SESSION_COOKIE};
use super::sign_in::confirmed;
use crate::app::{accounts, Field};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AccountForm {
    csrf: String,
    current: String,
    password: String,
    confirm: String,
    label: String,
    /// The password, asked again to make a token.
    token_password: String,
    /// "on" when a password change also revokes every API token.
    revoke_tokens: String,
}

csrf_forms!(AccountForm);

fn render_account(state: &AppState, u: &SignedInUser, new_token: Option<&str>, problem: Option<&Problem>) -> Markup {
    let SignedInUser(signed, me) = u;
    let sessions = accounts::live_sessions(state, me);
    let tokens = accounts::api_tokens(state, me);
    let body = html! {
        p { "Signed in as " strong { (me) } "." }
        h2 { "Password" }
        form.card method="post" action="/account/password" {
            (csrf_field(signed))
            input type="hidden" name="name" value=(me) autocomplete="username";
            (error_for(problem, "form"))
            (text_input(problem, "current", "Current password", "", InputAttrs { kind: "password", autocomplete: Some("current-password"), ..InputAttrs::text() }))
            (text_input(problem, "password", "New password", "", InputAttrs { kind: "password", autocomplete: Some("new-password"), hint: Some("At least 10 characters. Every other sign-in of yours ends."), ..InputAttrs::text() }))
            (text_input(problem, "confirm", "The same password again", "", InputAttrs { kind: "password", autocomplete: Some("new-password"), ..InputAttrs::text() }))
            @if !tokens.is_empty() {
                label.choice { input type="checkbox" name="revoke_tokens" value="on"; " Also revoke my " (tokens.len()) " API token(s)" }
            }
            button.primary type="submit" { "Change password" }
        }
        h2 { "Where you are signed in" }
        @if sessions.is_empty() { p.empty { "Nowhere else." } }
        ul {
            @for (started, expires) in &sessions {
                li { "Since " time data-unix=(started) { (started) } ", until " time data-unix=(expires) { (expires) } }
            }
        }
        (action_button(signed, "/sign-out/everywhere", &[], "Sign out everywhere", Some("Sign out of every browser, this one included? API tokens keep working: revoke them below.")))
        p.hint { "Signing out everywhere ends browser sign-ins only; API tokens keep working until you revoke them below." }
        h2 { "API tokens" }
        p.lead { "A token lets " code { "hpfriends ctl" } " or a script act as you: " code { "hpfriends ctl --token TOKEN key list" } }
        @if let Some(t) = new_token {
            section.notice role="status" {
                p { "Your new token, shown only now:" }
                p { code #new-token.secret { (t) } " " button.copy type="button" data-copy="#new-token" { "Copy" } }
            }
        }
        @if tokens.is_empty() {
            p.empty { "You have no API tokens." }
        } @else {
            table {
                caption.visually-hidden { "My API tokens" }
                thead { tr { th scope="col" { "Label" } th scope="col" { "Made" } th scope="col" { span.visually-hidden { "Revoke" } } } }
                tbody {
                    @for (label, at) in &tokens {
                        tr {
                            td { (label) }
                            td { time data-unix=(at) { (at) } }
                            td.actions { (action_button(signed, "/account/tokens/revoke", &[("label", label)], "Revoke", Some("Revoke this token?"))) }
                        }
                    }
                }
            }
        }
        form.row method="post" action="/account/tokens" {
            (csrf_field(signed))
            (text_input(problem, "label", "Label of a new token", "", InputAttrs { hint: Some("For example laptop or ci."), ..InputAttrs::text() }))
            (text_input(problem, "token_password", "Your password", "", InputAttrs { kind: "password", autocomplete: Some("current-password"), hint: Some("A token lasts until you revoke it: it is made only with your password."), ..InputAttrs::text() }))
            button type="submit" { "Make token" }
        }
    };
    page("Account", Some(signed), "/account", body)
}

pub async fn show(State(state): State<AppState>, u: SignedInUser) -> Response {
    render(StatusCode::OK, render_account(&state, &u, None, None))
}

pub async fn change_password(State(state): State<AppState>, UserForm(u, f): UserForm<AccountForm>) -> Response {
    let result = match confirmed(&f.password, &f.confirm) {
        Ok(()) => {
            accounts::change_password(&state, &u.0.cookie, &u.1, &f.current, &f.password, f.revoke_tokens == "on")
                .await
                .map_err(|e| Problem::of(e, &[(Field::CurrentPassword, "current"), (Field::Password, "password")]))
        }
        Err(p) => Err(p),
    };
    match result {
        Ok(cookie) => ([set_cookie(&state, SESSION_COOKIE, Some(&cookie))], Redirect::to("/account")).into_response(),
        Err(p) => render(p.status, render_account(&state, &u, None, Some(&p))),
    }
}

pub async fn add_token(State(state): State<AppState>, UserForm(u, f): UserForm<AccountForm>) -> Response {
    match accounts::add_api_token(&state, &u.0.cookie, &u.1, &f.token_password, f.label.trim()).await {
        Ok(token) => render(StatusCode::OK, render_account(&state, &u, Some(&token), None)),
        Err(e) => {
            let p = Problem::of(e, &[(Field::Label, "label"), (Field::CurrentPassword, "token_password")]);
            render(p.status, render_account(&state, &u, None, Some(&p)))
        }
    }
}

pub async fn revoke_token(State(state): State<AppState>, UserForm(u, f): UserForm<AccountForm>) -> Response {
    match accounts::remove_api_token(&state, Actor::User(u.1.clone()), &u.1, f.label).await {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(e) => {
            let p = Problem::of(e, &[]);
            render(p.status, render_account(&state, &u, None, Some(&p)))
        }
    }
}
