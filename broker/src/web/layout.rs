//! The page shell (header, menu, main) and the pieces every page uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::SignedIn;
use crate::app::{AppError, Field};

/// The menu, named as the original hpfriends named it.
const USER_MENU: [(&str, &str); 9] = [
    ("/keys", "Authkeys"),
    ("/shares", "Shares"),
    ("/shared-with-you", "Shared with you"),
    ("/groups", "Groups"),
    ("/audience", "Audience"),
    ("/graph", "Graph"),
    ("/live", "Live"),
    ("/history", "History"),
    ("/account", "Account"),
];

pub fn page(title: &str, signed: Option<&SignedIn>, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hpfriends" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "hpfriends" }
                    @if let Some(s) = signed {
                        nav aria-label="Main" {
                            ul {
                                @if s.is_operator() {
                                    li { a href="/operator" aria-current=[(current == "/operator").then_some("page")] { "Operator" } }
                                    li { a href="/history" aria-current=[(current == "/history").then_some("page")] { "History" } }
                                } @else {
                                    @for (href, name) in USER_MENU {
                                        li { a href=(href) aria-current=[(current == href).then_some("page")] { (name) } }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/sign-out" {
                            (csrf_field(s))
                            span.who { (s.user().unwrap_or("operator")) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
            }
        }
    }
}

pub fn csrf_field(s: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A page with one message (not found, forbidden, a refused form).
pub fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! { p { (text) } p { a href="/" { "Back to hpfriends" } } };
    (status, page(title, None, "", body)).into_response()
}

/// Why a form was refused, shown next to the field it is about.
pub struct Problem {
    pub field: &'static str,
    pub message: String,
    pub status: StatusCode,
}

impl Problem {
    /// A use case's error, at the input of this form that it is about
    /// (`fields`: what an error may be about, and the form's input for it),
    /// else at the form's top. Decided by the error's variant, not its words.
    pub fn of(e: AppError, fields: &[(Field, &'static str)]) -> Problem {
        let field =
            e.field().and_then(|f| fields.iter().find(|(about, _)| *about == f)).map_or("form", |(_, input)| *input);
        Problem { field, status: e.status(), message: e.to_string() }
    }

    pub fn at(field: &'static str, status: StatusCode, message: impl Into<String>) -> Problem {
        Problem { field, message: message.into(), status }
    }
}

/// The error for `field`, if the problem is about it.
pub fn error_for(problem: Option<&Problem>, field: &str) -> Markup {
    html! {
        @if let Some(p) = problem.filter(|p| p.field == field) {
            p.error id=(format!("{field}-error")) role="alert" { (p.message) }
        }
    }
}

/// `aria-describedby` for an input whose field has a problem.
pub fn described_by(problem: Option<&Problem>, field: &str) -> Option<String> {
    problem.filter(|p| p.field == field).map(|_| format!("{field}-error"))
}

/// A labelled text input with its error beneath.
pub fn text_input(
    problem: Option<&Problem>,
    name: &'static str,
    label: &str,
    value: &str,
    attrs: InputAttrs,
) -> Markup {
    let id = attrs.id.clone().unwrap_or_else(|| format!("f-{name}"));
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(attrs.kind) value=(value)
                required[attrs.required] autocomplete=[attrs.autocomplete] list=[attrs.list]
                data-complete=[attrs.complete] aria-invalid=[problem.filter(|p| p.field == name).map(|_| "true")]
                aria-describedby=[described_by(problem, name)];
            @if let Some(hint) = attrs.hint { small.hint { (hint) } }
            (error_for(problem, name))
        }
    }
}

#[derive(Default)]
pub struct InputAttrs {
    pub kind: &'static str,
    pub required: bool,
    pub autocomplete: Option<&'static str>,
    pub list: Option<&'static str>,
    /// `users` or `targets`: app.js completes names as you type.
    pub complete: Option<&'static str>,
    /// The element id, where a page has the field more than once.
    pub id: Option<String>,
    pub hint: Option<&'static str>,
}

impl InputAttrs {
    pub fn text() -> Self {
        InputAttrs { kind: "text", required: true, ..Self::default() }
    }
}

/// A one-button form (revoke, accept, delete …).
pub fn action_button(
    s: &SignedIn,
    action: &str,
    fields: &[(&str, &str)],
    label: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf_field(s))
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

pub fn render(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

#[cfg(test)]
mod tests {
    use hpfriends_graph::{GraphError, Named};

    use super::*;

    /// The input an error lands at follows from its variant: errors whose
    /// words name another input's word stay at their own.
    #[test]
    fn given_errors_whose_words_name_other_inputs_then_each_lands_at_its_own() {
        let keys = [(Field::Ident, "ident"), (Field::Channel, "publish")];
        let groups = [(Field::Group, "name"), (Field::Name, "name"), (Field::User, "user")];
        let cases = [
            (AppError::invalid(Field::Ident, "the channel and the group"), &keys[..], "ident"),
            (
                AppError::Rejected(GraphError::InvalidName {
                    what: Named::Channel,
                    name: "ident".into(),
                    reason: "ident ident".into(),
                }),
                &keys[..],
                "publish",
            ),
            (AppError::Rejected(GraphError::IdentExists("channel".into())), &keys[..], "ident"),
            (AppError::Forbidden("ident channel publish".into()), &keys[..], "form"),
            // "…a member of group …": about the user, whatever the words say.
            (
                AppError::Rejected(GraphError::AlreadyMember { group: "g".into(), user: "group".into() }),
                &groups[..],
                "user",
            ),
            (AppError::Rejected(GraphError::GroupExists("user".into())), &groups[..], "name"),
            (AppError::Rejected(GraphError::NameTaken("user".into())), &groups[..], "name"),
            (AppError::Rejected(GraphError::UnknownUser("group".into())), &groups[..], "user"),
            (
                AppError::WrongPassword,
                &[(Field::CurrentPassword, "current"), (Field::Password, "password")][..],
                "current",
            ),
        ];
        for (error, fields, input) in cases {
            let text = error.to_string();
            assert_eq!(Problem::of(error, fields).field, input, "{text}");
        }
    }
}
