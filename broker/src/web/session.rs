//! Who is signed in, and the checks every form passes. A session is its
//! cookie: 256 random bits, kept in the replicated graph only as a hash, so
//! any node knows it and signing out ends it on every node. Forms carry a
//! CSRF token: derived from the session cookie when signed in (a page of
//! another site can read neither), a double-submit cookie before that.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hpfriends_graph::Actor;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::layout::message_page;
use super::WebState;
use crate::app::accounts::{new_secret, session_actor};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "hpfriends_session";
/// The double-submit CSRF cookie of forms sent before signing in.
pub const FORM_COOKIE: &str = "hpfriends_form";
/// Set at each sign-in: the browser is a known client of that name from then
/// on (`app::accounts::sign_in`), with a sign-in budget of its own.
pub const DEVICE_COOKIE: &str = "hpfriends_device";

/// A signed-in browser: the user's, or the operator's.
pub struct SignedIn {
    pub actor: Actor,
    pub cookie: String,
    /// The value every form of this session must send back.
    pub csrf: String,
}

impl SignedIn {
    pub fn user(&self) -> Option<&str> {
        match &self.actor {
            Actor::User(u) => Some(u),
            Actor::Operator => None,
        }
    }

    pub fn is_operator(&self) -> bool {
        self.actor == Actor::Operator
    }

    /// Refuses a form without this session's token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Response> {
        if bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(csrf_refused())
        }
    }
}

pub fn csrf_refused() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form did not come from a page of this site, or the page is too old: reload it and try again.",
    )
}

fn csrf_of(cookie: &str) -> String {
    hex::encode(&Sha256::digest(format!("hpfriends csrf\0{cookie}").as_bytes())[..16])
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| well_formed(v))
}

/// 64 hex digits; an operator's session has two such parts (`RANDOM.MAC`).
fn well_formed(value: &str) -> bool {
    value.split('.').count() <= 2 && value.split('.').all(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` for `value`: HttpOnly, SameSite=Strict, Secure over https;
/// `None` clears it.
pub fn set_cookie(state: &AppState, name: &str, value: Option<&str>) -> (header::HeaderName, HeaderValue) {
    let secure = if state.accounts.secure_cookies { "; Secure" } else { "" };
    let text = match value {
        Some(v) => {
            let max_age = match name {
                SESSION_COOKIE => state.accounts.session_ttl.as_secs(),
                DEVICE_COOKIE => 365 * 24 * 3600,
                _ => 24 * 3600,
            };
            format!("{name}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
        }
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    (header::SET_COOKIE, HeaderValue::from_str(&text).expect("cookie text is ASCII"))
}

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &WebState) -> Result<Self, Response> {
        let state = &web.app;
        let Some(cookie) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/sign-in").into_response());
        };
        let mut actor = session_actor(state, &cookie);
        if actor.is_none() {
            // Signed in through another node a moment ago: wait until this
            // node has applied what the leader committed, then look again.
            // That costs the leader a round trip, so unknown cookies are
            // limited per address (by a limiter of their own: they never
            // cost anyone a sign-in).
            let ip =
                ClientIp::from_request_parts(parts, state).await.map(|c| c.0).unwrap_or(std::net::IpAddr::from([0; 4]));
            let limit = &state.accounts.unknown_cookie_limit;
            if let Some(attempt) = limit.attempt(crate::auth_limit::Client::Address(ip), b"\0unknown cookie") {
                if state.node.read_barrier().await.is_ok() {
                    actor = session_actor(state, &cookie);
                }
                if actor.is_some() {
                    attempt.succeeded();
                }
            }
        }
        match actor {
            Some(actor) => Ok(SignedIn { actor, csrf: csrf_of(&cookie), cookie }),
            None => Err(([set_cookie(state, SESSION_COOKIE, None)], Redirect::to("/sign-in")).into_response()),
        }
    }
}

/// A signed-in user (the operator is sent to the operator's page).
pub struct SignedInUser(pub SignedIn, pub String);

impl FromRequestParts<WebState> for SignedInUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let signed = SignedIn::from_request_parts(parts, state).await?;
        match signed.user().map(str::to_string) {
            Some(user) => Ok(SignedInUser(signed, user)),
            None => Err(Redirect::to("/operator").into_response()),
        }
    }
}

/// The form token of a browser that is not signed in, and whether its cookie
/// must be set.
pub fn anonymous_form_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, FORM_COOKIE) {
        Some(t) => (t, false),
        None => (new_secret(), true),
    }
}

pub fn check_anonymous_csrf(headers: &HeaderMap, presented: &str) -> Result<(), Response> {
    match cookie(headers, FORM_COOKIE) {
        Some(t) if bool::from(t.as_bytes().ct_eq(presented.as_bytes())) => Ok(()),
        _ => Err(csrf_refused()),
    }
}

/// The address a request came from (the load balancer's, behind one).
pub struct ClientIp(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        Ok(ClientIp(ip))
    }
}
