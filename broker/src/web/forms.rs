//! Reading forms, and completing names as people type.

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Form, Json};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::layout::message_page;
use super::session::SignedIn;
use crate::http::AppState;

/// A form body, or the page that says it could not be read.
pub fn read<T: DeserializeOwned>(form: Result<Form<T>, FormRejection>) -> Result<T, Response> {
    form.map(|Form(f)| f).map_err(|e| {
        message_page(StatusCode::BAD_REQUEST, "Form not understood", &format!("The form could not be read: {}", e.body_text()))
    })
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
    let prefix = q.q.strip_prefix("group:").unwrap_or(&q.q).to_string();
    let names = state.node.read_graph(|g| {
        let mut out: Vec<String> = Vec::new();
        if !q.q.starts_with("group:") {
            out.extend(g.users().map(|(n, _)| n).filter(|n| n.starts_with(&prefix)).take(MAX).map(str::to_string));
        }
        if q.kind == "targets" {
            let groups = g.groups().map(|(n, _)| n).filter(|n| n.starts_with(&prefix));
            out.extend(groups.take(MAX.saturating_sub(out.len())).map(|n| format!("group:{n}")));
        }
        out
    });
    Json(names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_channels_typed_any_way_then_one_list_without_repeats() {
        assert_eq!(super::channel_list(" a.b, c\nd  a.b\t"), vec!["a.b", "c", "d"]);
        assert!(super::channel_list(" , ").is_empty());
    }
}
