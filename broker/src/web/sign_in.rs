//! Signing in and out, invitations, and open sign-up.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{csrf_forms, AnonymousForm, SessionForm};
use super::layout::{message_page, page, render, text_input, InputAttrs, Problem};
use super::session::{anonymous_form_token, cookie, set_cookie, ClientIp, DEVICE_COOKIE, FORM_COOKIE, SESSION_COOKIE};
use crate::app::accounts::NewSession;
use crate::app::{accounts, AppError, Field};
use crate::config::Signup;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    csrf: String,
    name: String,
    password: String,
    token: String,
}

csrf_forms!(SignInForm, CsrfOnly, PasswordForm);

/// Renders an anonymous form page, setting its CSRF cookie when new.
fn anonymous(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    build: impl FnOnce(&str) -> Markup,
) -> Response {
    let (token, fresh) = anonymous_form_token(headers);
    let markup = build(&token);
    if fresh {
        (status, [set_cookie(state, FORM_COOKIE, Some(&token))], markup).into_response()
    } else {
        render(status, markup)
    }
}

fn sign_in_markup(state: &AppState, csrf: &str, name: &str, problem: Option<&Problem>) -> Markup {
    let body = html! {
        form.card method="post" action="/sign-in" {
            input type="hidden" name="csrf" value=(csrf);
            (super::layout::error_for(problem, "form"))
            (text_input(problem, "name", "Name", name, InputAttrs { autocomplete: Some("username"), ..InputAttrs::text() }))
            (text_input(problem, "password", "Password", "", InputAttrs { kind: "password", autocomplete: Some("current-password"), ..InputAttrs::text() }))
            button.primary type="submit" { "Sign in" }
        }
        @if state.accounts.signup == Signup::Open {
            p { "New here? " a href="/sign-up" { "Make an account" } "." }
        } @else {
            p.hint { "New users arrive through an invitation link from the operator." }
        }
        details.operator {
            summary { "Operator" }
            form.card method="post" action="/sign-in/operator" {
                input type="hidden" name="csrf" value=(csrf);
                (text_input(problem, "token", "Operator token", "", InputAttrs { kind: "password", autocomplete: Some("off"), ..InputAttrs::text() }))
                button type="submit" { "Sign in as operator" }
            }
        }
    };
    page("Sign in", None, "/sign-in", body)
}

pub async fn form_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    anonymous(&state, &headers, StatusCode::OK, |csrf| sign_in_markup(&state, csrf, "", None))
}

fn signed_in_response(state: &AppState, new: &NewSession, to: &str) -> Response {
    let cookies =
        [set_cookie(state, SESSION_COOKIE, Some(&new.session)), set_cookie(state, DEVICE_COOKIE, Some(&new.device))];
    (AppendHeaders(cookies), Redirect::to(to)).into_response()
}

pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AnonymousForm(headers, f): AnonymousForm<SignInForm>,
) -> Response {
    let device = cookie(&headers, DEVICE_COOKIE);
    match accounts::sign_in(&state, ip, device.as_deref(), f.name.trim(), &f.password).await {
        Ok(new) => signed_in_response(&state, &new, "/keys"),
        Err(e) => {
            let problem = Problem::of(e, &[(Field::Password, "password")]);
            anonymous(&state, &headers, problem.status, |csrf| sign_in_markup(&state, csrf, &f.name, Some(&problem)))
        }
    }
}

pub async fn submit_operator(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AnonymousForm(headers, f): AnonymousForm<SignInForm>,
) -> Response {
    let device = cookie(&headers, DEVICE_COOKIE);
    match accounts::sign_in_operator(&state, ip, device.as_deref(), f.token.trim()).await {
        Ok(new) => signed_in_response(&state, &new, "/operator"),
        Err(e) => {
            let problem = Problem { field: "token", ..Problem::of(e, &[]) };
            anonymous(&state, &headers, problem.status, |csrf| sign_in_markup(&state, csrf, "", Some(&problem)))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn sign_out(State(state): State<AppState>, SessionForm(signed, _): SessionForm<CsrfOnly>) -> Response {
    end_sessions(&state, accounts::sign_out(&state, signed.actor.clone(), &signed.cookie).await)
}

/// Every browser of this user or operator is signed out.
pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    SessionForm(signed, _): SessionForm<CsrfOnly>,
) -> Response {
    end_sessions(&state, accounts::sign_out_everywhere(&state, signed.actor.clone()).await)
}

fn end_sessions(state: &AppState, ended: Result<(), AppError>) -> Response {
    if let Err(e) = ended {
        return message_page(e.status(), "Not signed out", &e.to_string());
    }
    ([set_cookie(state, SESSION_COOKIE, None)], Redirect::to("/sign-in")).into_response()
}

fn password_fields(problem: Option<&Problem>) -> Markup {
    html! {
        (text_input(problem, "password", "New password", "", InputAttrs {
            kind: "password", autocomplete: Some("new-password"),
            hint: Some(PASSWORD_HINT), ..InputAttrs::text()
        }))
        (text_input(problem, "confirm", "The same password again", "", InputAttrs {
            kind: "password", autocomplete: Some("new-password"), ..InputAttrs::text()
        }))
    }
}

/// Kept in step with `MIN_PASSWORD_LEN` by the test below.
const PASSWORD_HINT: &str = "At least 10 characters.";

/// The two password fields must agree.
pub fn confirmed(password: &str, confirm: &str) -> Result<(), Problem> {
    if password != confirm {
        return Err(Problem::at("confirm", StatusCode::BAD_REQUEST, "the two passwords differ"));
    }
    if let Some(problem) = accounts::password_problem(password) {
        return Err(Problem::at("password", StatusCode::BAD_REQUEST, problem));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    csrf: String,
    name: String,
    password: String,
    confirm: String,
}

fn invitation_markup(user: &str, token: &str, csrf: &str, problem: Option<&Problem>) -> Markup {
    let body = html! {
        p { "Welcome, " strong { (user) } ". Choose a password to finish your account." }
        form.card method="post" action=(format!("/invite/{token}")) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="name" value=(user) autocomplete="username";
            (super::layout::error_for(problem, "form"))
            (password_fields(problem))
            button.primary type="submit" { "Set password" }
        }
    };
    page("Set your password", None, "", body)
}

fn invalid_link() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "This invitation link is not valid or has expired. Ask the operator for a new one.",
    )
}

pub async fn invitation_page(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    match accounts::invitation_of(&state, &token) {
        Some(user) => anonymous(&state, &headers, StatusCode::OK, |csrf| invitation_markup(&user, &token, csrf, None)),
        None => invalid_link(),
    }
}

pub async fn accept_invitation(
    State(state): State<AppState>,
    Path(token): Path<String>,
    AnonymousForm(headers, f): AnonymousForm<PasswordForm>,
) -> Response {
    let Some(user) = accounts::invitation_of(&state, &token) else {
        return invalid_link();
    };
    let result = match confirmed(&f.password, &f.confirm) {
        Ok(()) => accounts::accept_invitation(&state, &token, &f.password)
            .await
            .map_err(|e| Problem::of(e, &[(Field::Password, "password")])),
        Err(p) => Err(p),
    };
    match result {
        Ok(cookie) => signed_in_response(&state, &cookie, "/keys"),
        Err(problem) => {
            anonymous(&state, &headers, problem.status, |csrf| invitation_markup(&user, &token, csrf, Some(&problem)))
        }
    }
}

fn sign_up_markup(csrf: &str, name: &str, problem: Option<&Problem>) -> Markup {
    let body = html! {
        form.card method="post" action="/sign-up" {
            input type="hidden" name="csrf" value=(csrf);
            (super::layout::error_for(problem, "form"))
            (text_input(problem, "name", "Name", name, InputAttrs {
                autocomplete: Some("username"),
                hint: Some("Letters, digits, '.', '_', '@' and '-'; others find you by it."),
                ..InputAttrs::text()
            }))
            (password_fields(problem))
            button.primary type="submit" { "Make my account" }
        }
    };
    page("Make an account", None, "/sign-up", body)
}

pub async fn sign_up_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.accounts.signup != Signup::Open {
        return message_page(
            StatusCode::FORBIDDEN,
            "Sign-up closed",
            "Accounts are made by invitation here: ask the operator.",
        );
    }
    anonymous(&state, &headers, StatusCode::OK, |csrf| sign_up_markup(csrf, "", None))
}

pub async fn sign_up(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AnonymousForm(headers, f): AnonymousForm<PasswordForm>,
) -> Response {
    let name = f.name.trim();
    let result = match confirmed(&f.password, &f.confirm) {
        Ok(()) => accounts::sign_up(&state, ip, name, &f.password).await.map_err(|e| {
            Problem::of(e, &[(Field::User, "name"), (Field::Name, "name"), (Field::Password, "password")])
        }),
        Err(p) => Err(p),
    };
    match result {
        Ok(()) => match accounts::sign_in(&state, ip, None, name, &f.password).await {
            Ok(new) => signed_in_response(&state, &new, "/keys"),
            Err(e) => message_page(
                e.status(),
                "Account made",
                &format!("Your account is ready, but signing in failed: {}", e),
            ),
        },
        Err(problem) => {
            anonymous(&state, &headers, problem.status, |csrf| sign_up_markup(csrf, &f.name, Some(&problem)))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_the_password_hint_then_it_names_the_minimum() {
        assert!(super::PASSWORD_HINT.contains(&crate::app::accounts::MIN_PASSWORD_LEN.to_string()));
    }
}
