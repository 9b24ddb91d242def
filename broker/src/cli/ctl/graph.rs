//! `ctl apply`, `ctl import-hpfeeds`, `ctl explain`

use std::path::Path;

use anyhow::Context;

use super::client::{enc, Api, Output};
use crate::app::types::{Applied, ExplainAnswer};

/// Reads a declaration file: JSON, or TOML when the name ends in `.toml`.
fn read_declaration(file: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "toml") {
        let v: toml::Value = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
        Ok(serde_json::to_value(v)?)
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
    }
}

pub async fn apply(api: &Api, file: &Path) -> anyhow::Result<Output> {
    let applied: Applied = api.post("/api/v1/apply", &read_declaration(file)?).await?;
    let text = format!("applied {}: {} change(s)", file.display(), applied.changes);
    Output::new(&applied, text)
}

pub async fn import_hpfeeds(api: &Api, file: &Path) -> anyhow::Result<Output> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let decl = crate::import::from_hpfeeds_auth(&text)?;
    // Old keys are kept as they are, short secrets too: each is named.
    let applied: Applied = api.post("/api/v1/apply?allow_short_secrets=true", &decl).await?;
    for warning in &applied.warnings {
        eprintln!("warning: {warning}");
    }
    let summary = format!(
        "imported {}: {} users, {} keys, {} shares declared; {} change(s)",
        file.display(),
        decl.users.len(),
        decl.keys.len(),
        decl.shares.len(),
        applied.changes
    );
    Output::new(&applied, summary)
}

pub async fn explain(api: &Api, from: &str, to: &str, channel: &str) -> anyhow::Result<Output> {
    let path = format!("/api/v1/explain?from={}&to={}&channel={}", enc(from), enc(to), enc(channel));
    let answer: ExplainAnswer = api.get(&path).await?;
    let text = answer.text.clone();
    Output::new(&answer, text)
}
