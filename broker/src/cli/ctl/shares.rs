//! `ctl share …`

use hpfriends_graph::{ShareKind, Target};

use super::client::{filtered, Api, Output};
use super::{ShareCmd, ShareRef};
use crate::app::types::{Done, ShareList, ShareRequest};

fn request(s: &ShareRef, kind: Option<ShareKind>, with_history: bool) -> ShareRequest {
    ShareRequest {
        from: Some(s.from.clone()),
        to: Target::parse(&s.to),
        channel: s.channel.clone(),
        kind,
        with_history,
        filter: None,
    }
}

fn described(filter: &Option<hpfriends_graph::Filter>) -> String {
    filter.as_ref().map_or_else(String::new, |f| format!("  filter: {f}"))
}

pub async fn run(api: &Api, cmd: &ShareCmd) -> anyhow::Result<Output> {
    let (path, body, text) = match cmd {
        ShareCmd::Add { share, kind, with_history, filter } => {
            let parsed = if kind == "shares_all" { ShareKind::SharesAll } else { ShareKind::Shares };
            let history = if *with_history { ", with its history" } else { "" };
            let filter = filter.filter();
            let text = format!(
                "{} offers {} to {} ({kind}{history}); it carries data once accepted{}",
                share.from,
                share.channel,
                share.to,
                described(&filter)
            );
            ("/api/v1/shares", ShareRequest { filter, ..request(share, Some(parsed), *with_history) }, text)
        }
        ShareCmd::Filter { share, filter } => {
            let filter = filter.filter();
            let text = match &filter {
                Some(f) => format!("{} -> {} on {} now lets through: {f}", share.from, share.to, share.channel),
                None => format!("{} -> {} on {} has no filter", share.from, share.to, share.channel),
            };
            ("/api/v1/shares/filter", ShareRequest { filter, ..request(share, None, false) }, text)
        }
        ShareCmd::Accept(share) => (
            "/api/v1/shares/accept",
            request(share, None, false),
            format!("accepted {} -> {} on {}", share.from, share.to, share.channel),
        ),
        ShareCmd::Remove(share) => (
            "/api/v1/shares/remove",
            request(share, None, false),
            format!("removed {} -> {} on {}", share.from, share.to, share.channel),
        ),
        ShareCmd::List { user } => {
            let list: ShareList = api.get(&filtered("/api/v1/shares", "user", user.as_deref())).await?;
            let text = list
                .shares
                .iter()
                .map(|s| {
                    let kind = match s.kind {
                        ShareKind::Shares => "shares",
                        ShareKind::SharesAll => "shares_all",
                    };
                    let state = if s.accepted { "accepted" } else { "pending" };
                    let history = if s.with_history { "  with history" } else { "" };
                    format!("{} -> {}  {}  {kind}  {state}{history}{}", s.from, s.to, s.channel, described(&s.filter))
                })
                .collect::<Vec<_>>()
                .join("\n");
            return Output::new(&list, text);
        }
    };
    let done: Done = api.post(path, &body).await?;
    Output::new(&done, text)
}
