//! `ctl history …`

use super::client::{enc, Api, Output};
use super::{HistoryArgs, HistoryCmd};
use crate::app::history::MAX_LIMIT;
use crate::app::types::{Done, HistoryPage, HistoryRetention};

pub async fn run(api: &Api, args: &HistoryArgs) -> anyhow::Result<Output> {
    match &args.command {
        None => list(api, args).await,
        Some(HistoryCmd::Retention { max_age_days: None, max_events: None }) => {
            let r: HistoryRetention = api.get("/api/v1/history/retention").await?;
            let text = format!("every node keeps {} days of history, at most {} changes", r.max_age_days, r.max_events);
            Output::new(&r, text)
        }
        Some(HistoryCmd::Retention { max_age_days, max_events }) => {
            let now: HistoryRetention = api.get("/api/v1/history/retention").await?;
            let new = HistoryRetention {
                max_age_days: max_age_days.unwrap_or(now.max_age_days),
                max_events: max_events.unwrap_or(now.max_events),
            };
            let done: Done = api.put("/api/v1/history/retention", &new).await?;
            let text = format!(
                "every node now keeps {} days of history, at most {} changes",
                new.max_age_days, new.max_events
            );
            Output::new(&done, text)
        }
    }
}

/// Follows the pages until `--limit` changes or the oldest one.
async fn list(api: &Api, args: &HistoryArgs) -> anyhow::Result<Output> {
    let mut query = String::new();
    for (key, value) in
        [("user", &args.user), ("channel", &args.channel), ("since", &args.since), ("until", &args.until)]
    {
        if let Some(v) = value {
            query.push_str(&format!("&{key}={}", enc(v)));
        }
    }
    let mut all = HistoryPage { events: Vec::new(), next: None };
    let mut before = None;
    while all.events.len() < args.limit {
        let limit = (args.limit - all.events.len()).min(MAX_LIMIT);
        let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let page: HistoryPage = api.get(&format!("/api/v1/history?limit={limit}{cursor}{query}")).await?;
        all.events.extend(page.events);
        all.next = page.next;
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let text = all.events.iter().map(|e| e.line()).collect::<Vec<_>>().join("\n");
    Output::new(&all, text)
}
