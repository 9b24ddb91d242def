//! `ctl archive …`: how long the archive keeps your messages, per channel.

use super::client::{enc, Api, Output};
use super::ArchiveCmd;
use crate::app::types::{Done, KeepList, KeepSetting};

pub async fn run(api: &Api, cmd: &ArchiveCmd) -> anyhow::Result<Output> {
    match cmd {
        ArchiveCmd::Set { channel, keep, owner } => {
            let setting = KeepSetting { channel: channel.clone(), keep: keep.clone(), owner: owner.clone() };
            let done: Done = api.put("/api/v1/archive/keeps", &setting).await?;
            let text = match keep.as_str() {
                "off" => format!("{channel}: no longer archived; what was kept is deleted"),
                "default" => format!("{channel}: kept as long as the node keeps messages"),
                span => format!("{channel}: kept {span} (or the node's keep, if shorter)"),
            };
            Output::new(&done, text)
        }
        ArchiveCmd::List { owner } => {
            let path = match owner {
                Some(o) => format!("/api/v1/archive/keeps?owner={}", enc(o)),
                None => "/api/v1/archive/keeps".into(),
            };
            let list: KeepList = api.get(&path).await?;
            let text = if list.keeps.is_empty() {
                format!("{}: every channel kept as long as the node keeps messages", list.owner)
            } else {
                list.keeps.iter().map(|k| format!("{}  {}", k.channel, k.keep)).collect::<Vec<_>>().join("\n")
            };
            Output::new(&list, text)
        }
    }
}
