//! The HTTP API as `ctl` calls it: typed bodies in, typed bodies out, and an
//! API error turned into its status and message.

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::types::ErrorBody;

pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    consistent: bool,
}

/// What a command prints: the API's JSON (`--json`) or text for people.
pub struct Output {
    pub json: serde_json::Value,
    pub text: String,
}

impl Output {
    pub fn new(answer: &impl Serialize, text: impl Into<String>) -> anyhow::Result<Output> {
        Ok(Output { json: serde_json::to_value(answer)?, text: text.into() })
    }
}

impl Api {
    pub fn new(base: String, token: Option<String>, consistent: bool) -> Api {
        Api { http: reqwest::Client::new(), base, token, consistent }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text).map(|e| e.error.message).unwrap_or(text);
            bail!("{status}: {message}");
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer from {url}: {text}"))
    }

    /// A GET whose answer is lines of JSON (NDJSON), with the path of the
    /// next page from its `Link: <…>; rel="next"`.
    pub async fn get_lines(&self, path: &str) -> anyhow::Result<(String, Option<String>)> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let next = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix('<')?.split_once(">; rel=\"next\"").map(|(p, _)| p.to_string()));
        warn_what_lacks(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text).map(|e| e.error.message).unwrap_or(text);
            bail!("{status}: {message}");
        }
        Ok((text, next))
    }

    /// A GET whose answer is lines that do not end (`follow=true`): `line` is
    /// called with each as it comes, until the server ends the answer.
    pub async fn follow_lines(
        &self,
        path: &str,
        mut line: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ErrorBody>(&text).map(|e| e.error.message).unwrap_or(text);
            bail!("{status}: {message}");
        }
        warn_what_lacks(resp.headers());
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let rest = pending.split_off(end + 1);
                line(std::str::from_utf8(&pending[..end])?)?;
                pending = rest;
            }
        }
        Ok(())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        if self.consistent {
            let sep = if path.contains('?') { '&' } else { '?' };
            return self.call(reqwest::Method::GET, &format!("{path}{sep}consistent=true"), None).await;
        }
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        self.call(reqwest::Method::POST, path, Some(serde_json::to_value(body)?)).await
    }

    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        self.call(reqwest::Method::PUT, path, Some(serde_json::to_value(body)?)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

pub use crate::app::types::urlencode as enc;

/// `path`, with `?key=value` when a filter is given.
pub fn filtered(path: &str, key: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{path}?{key}={}", enc(v)),
        None => path.to_string(),
    }
}

/// The archive's answer may lack messages (`GET /api/v1/messages`): said on
/// stderr, so the lines printed stay the messages.
fn warn_what_lacks(headers: &reqwest::header::HeaderMap) {
    use crate::http::api::messages::{NOT_COPIED, UNREACHABLE};
    let named = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(nodes) = named(UNREACHABLE) {
        eprintln!("warning: node {nodes} did not answer: messages only it holds are missing");
    }
    if let Some(nodes) = named(NOT_COPIED) {
        eprintln!("warning: another node holds messages of node {nodes} that this one has not copied yet");
    }
}
