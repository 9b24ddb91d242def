//! `ctl key …`

use super::client::{enc, filtered, Api, Output};
use super::KeyCmd;
use crate::app::types::{CreatedKey, Done, KeyActivity, KeyList, NewKey};

pub async fn run(api: &Api, cmd: &KeyCmd) -> anyhow::Result<Output> {
    match cmd {
        KeyCmd::Add { owner, ident, secret, publish, subscribe, resume } => {
            let new = NewKey {
                ident: ident.clone(),
                owner: Some(owner.clone()),
                secret: secret.clone(),
                publish: publish.clone(),
                subscribe: subscribe.clone(),
                resume: *resume,
            };
            let created: CreatedKey = api.post("/api/v1/keys", &new).await?;
            let resumes = if *resume { " (resume)" } else { "" };
            let text = format!("added key {ident}{resumes}\nsecret: {}", created.key.secret);
            Output::new(&created, text)
        }
        KeyCmd::Remove { ident } => {
            let done: Done = api.delete(&format!("/api/v1/keys/{}", enc(ident))).await?;
            Output::new(&done, format!("removed key {ident}"))
        }
        KeyCmd::Stats { ident } => {
            let idents = match ident {
                Some(i) => vec![i.clone()],
                None => api.get::<KeyList>("/api/v1/keys").await?.keys.into_iter().map(|k| k.ident).collect(),
            };
            let mut all: Vec<KeyActivity> = Vec::new();
            for ident in idents {
                all.push(api.get::<KeyActivity>(&format!("/api/v1/keys/{}/activity", enc(&ident))).await?);
            }
            let text = all.iter().map(KeyActivity::text).collect::<Vec<_>>().join("\n");
            match (ident, all.as_slice()) {
                (Some(_), [one]) => Output::new(one, text),
                _ => Output::new(&all, text),
            }
        }
        KeyCmd::List { owner } => {
            let list: KeyList = api.get(&filtered("/api/v1/keys", "owner", owner.as_deref())).await?;
            let text = list
                .keys
                .iter()
                .map(|k| {
                    format!(
                        "{}  owner: {}  publish: {}  subscribe: {}{}",
                        k.ident,
                        k.owner,
                        k.publish.join(","),
                        k.subscribe.join(","),
                        if k.resume { "  resume" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Output::new(&list, text)
        }
    }
}
