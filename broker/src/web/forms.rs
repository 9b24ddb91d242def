//! Reading forms (each checked against its CSRF token before a handler
//! sees it), and completing names as people type.

use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Form, Json};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::layout::message_page;
use super::session::{check_anonymous_csrf, SignedIn, SignedInUser};
use super::WebState;
use crate::state::AppState;

/// A form that carries a CSRF token.
pub trait CsrfForm: DeserializeOwned + Send {
    fn csrf(&self) -> &str;
}

/// Implements `CsrfForm` for form structs with a `csrf` field.
macro_rules! csrf_forms {
    ($($form:ty),* $(,)?) => { $( impl $crate::web::forms::CsrfForm for $form { fn csrf(&self) -> &str { &self.csrf } } )* };
}
pub(crate) use csrf_forms;

/// The body as `T`, or the page that says it could not be read.
async fn body<T: CsrfForm>(
    parts: axum::http::request::Parts,
    body: axum::body::Body,
    state: &WebState,
) -> Result<T, Response> {
    Form::<T>::from_request(Request::from_parts(parts, body), state).await.map(|Form(f)| f).map_err(|e| {
        message_page(
            StatusCode::BAD_REQUEST,
            "Form not understood",
            &format!("The form could not be read: {}", e.body_text()),
        )
    })
}

/// A signed-in user's form, with this session's CSRF token.
pub struct UserForm<T>(pub SignedInUser, pub T);

impl<T: CsrfForm> FromRequest<WebState> for UserForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &WebState) -> Result<Self, Response> {
        let (mut parts, b) = req.into_parts();
        let user = SignedInUser::from_request_parts(&mut parts, state).await?;
        let form: T = body(parts, b, state).await?;
        user.0.check_csrf(form.csrf())?;
        Ok(UserForm(user, form))
    }
}

/// A form of any signed-in browser (the operator's included).
pub struct SessionForm<T>(pub SignedIn, pub T);

impl<T: CsrfForm> FromRequest<WebState> for SessionForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &WebState) -> Result<Self, Response> {
        let (mut parts, b) = req.into_parts();
        let signed = SignedIn::from_request_parts(&mut parts, state).await?;
        let form: T = body(parts, b, state).await?;
        signed.check_csrf(form.csrf())?;
        Ok(SessionForm(signed, form))
    }
}

/// A form sent before signing in, with its double-submit cookie; the headers
/// come along for rendering the page again.
pub struct AnonymousForm<T>(pub HeaderMap, pub T);

impl<T: CsrfForm> FromRequest<WebState> for AnonymousForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &WebState) -> Result<Self, Response> {
        let (parts, b) = req.into_parts();
        let headers = parts.headers.clone();
        let form: T = body(parts, b, state).await?;
        check_anonymous_csrf(&headers, form.csrf())?;
        Ok(AnonymousForm(headers, form))
    }
}

/// Splits a list of channels typed with commas, spaces or new lines.
pub fn channel_list(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in text.split([',', '\n', '\r', ' ', '\t']).map(str::trim).filter(|c| !c.is_empty()) {
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    out
}

#[derive(Deserialize)]
pub struct NamesQuery {
    #[serde(default)]
    q: String,
    /// `targets` adds groups as `group:NAME`.
    #[serde(default)]
    kind: String,
}

/// At most 20 user (and group) names starting with what was typed.
pub async fn names(State(state): State<AppState>, _signed: SignedIn, Query(q): Query<NamesQuery>) -> Json<Vec<String>> {
    const MAX: usize = 20;
    if q.q.is_empty() || q.q.len() > 64 {
        return Json(Vec::new());
    }
    Json(crate::app::users::names_starting(&state, &q.q, q.kind == "targets", MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_channels_typed_any_way_then_one_list_without_repeats() {
        assert_eq!(super::channel_list(" a.b, c\nd  a.b\t"), vec!["a.b", "c", "d"]);
        assert!(super::channel_list(" , ").is_empty());
    }
}
