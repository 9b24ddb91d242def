//! The web app: people manage their own keys, shares and groups in a browser.
//! Server-rendered HTML (maud) on the node's HTTP listener, every asset
//! embedded; the forms work without JavaScript, `app.js` only enhances them.
//! Every change calls the same use case as the API (`app/`), so the graph's
//! commands, authorization and validation are the one place for each rule.

mod account;
mod activity;
mod audience;
mod forms;
mod graph;
mod groups;
mod history;
mod keys;
mod layout;
mod live;
mod operator;
mod session;
mod shares;
mod sign_in;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// Forms are small; nothing a browser sends here needs more.
const MAX_FORM_BODY: usize = 64 * 1024;

/// What the pages need: the node, and the Live pages streaming now.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    live: Arc<live::Streams>,
}

impl FromRef<WebState> for AppState {
    fn from_ref(web: &WebState) -> AppState {
        web.app.clone()
    }
}

impl FromRef<WebState> for Arc<live::Streams> {
    fn from_ref(web: &WebState) -> Arc<live::Streams> {
        web.live.clone()
    }
}

/// The web app's routes, with their state.
pub fn routes(app: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/keys") }))
        .route("/sign-in", get(sign_in::form_page).post(sign_in::submit))
        .route("/sign-in/operator", post(sign_in::submit_operator))
        .route("/sign-up", get(sign_in::sign_up_page).post(sign_in::sign_up))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/sign-out/everywhere", post(sign_in::sign_out_everywhere))
        .route("/invite/{token}", get(sign_in::invitation_page).post(sign_in::accept_invitation))
        .route("/keys", get(keys::show).post(keys::create))
        .route("/keys/keeps", post(keys::set_keep))
        .route("/keys/{ident}/channels", post(keys::change))
        .route("/keys/{ident}/activity", get(activity::show))
        .route("/keys/{ident}/delete", post(keys::delete))
        .route("/shares", get(shares::show).post(shares::offer))
        .route("/shares/revoke", post(shares::revoke))
        .route("/shares/filter", post(shares::filter))
        .route("/shared-with-you", get(shares::received))
        .route("/shared-with-you/accept", post(shares::accept))
        .route("/shared-with-you/decline", post(shares::decline))
        .route("/groups", get(groups::show).post(groups::create))
        .route("/groups/{group}/{action}", post(groups::act))
        .route("/audience", get(audience::show))
        .route("/graph", get(graph::show))
        .route("/history", get(history::show))
        .route("/live", get(live::show))
        .route("/live/events", get(live::events))
        .route("/account", get(account::show))
        .route("/account/password", post(account::change_password))
        .route("/account/tokens", post(account::add_token))
        .route("/account/tokens/revoke", post(account::revoke_token))
        .route("/operator", get(operator::show))
        .route("/operator/cluster", get(operator::cluster_fragment))
        .route("/operator/users", post(operator::invite))
        .route("/operator/users/{name}/{action}", post(operator::act))
        .route("/names", get(forms::names))
        .route("/assets/app.css", get(|| asset("text/css; charset=utf-8", include_str!("assets/app.css"))))
        .route("/assets/app.js", get(|| asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))))
        .layer(DefaultBodyLimit::max(MAX_FORM_BODY))
        .with_state(WebState { app, live: Arc::default() })
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// No script but our own file, no inline script or style, no framing, no
/// referrer (an invitation link carries its token in the path); nothing
/// cached unless the response says so (pages and API answers carry secrets).
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    response
}

pub fn not_found() -> Response {
    layout::message_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}
