//! `ctl group …`

use super::client::{enc, Api, Output};
use super::GroupCmd;
use crate::app::types::{Done, GroupList, MemberChange, NewGroup};

pub async fn run(api: &Api, cmd: &GroupCmd) -> anyhow::Result<Output> {
    let change = |group: &str, what: &str, user: &Option<String>| {
        (format!("/api/v1/groups/{}/{what}", enc(group)), MemberChange { user: user.clone() })
    };
    let (path, body, text) = match cmd {
        GroupCmd::Add { name, admin } => {
            let done: Done = api.post("/api/v1/groups", &NewGroup { name: name.clone(), admin: admin.clone() }).await?;
            return Output::new(&done, format!("added group {name}"));
        }
        GroupCmd::List => {
            let list: GroupList = api.get("/api/v1/groups").await?;
            let text = list
                .groups
                .iter()
                .map(|g| {
                    let members: Vec<String> = g
                        .members()
                        .iter()
                        .map(|m| if m.accepted { m.user.clone() } else { format!("{} (invited)", m.user) })
                        .collect();
                    match (&g.admins, &g.members) {
                        (Some(admins), Some(_)) => {
                            format!("{}  admins: {}  members: {}", g.name, admins.join(","), members.join(", "))
                        }
                        (Some(admins), None) => format!("{}  admins: {}  (you are invited)", g.name, admins.join(",")),
                        _ => g.name.clone(),
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            return Output::new(&list, text);
        }
        GroupCmd::Invite { group, user } => {
            let (path, body) = change(group, "invite", &Some(user.clone()));
            (path, body, format!("invited {user} to {group}"))
        }
        GroupCmd::Join { group, user } => {
            let (path, body) = change(group, "join", user);
            (path, body, format!("joined {group}"))
        }
        GroupCmd::Leave { group, user } => {
            let (path, body) = change(group, "leave", user);
            (path, body, format!("left {group}"))
        }
        GroupCmd::RemoveMember { group, user } => {
            let (path, body) = change(group, "remove-member", &Some(user.clone()));
            (path, body, format!("removed {user} from {group}"))
        }
    };
    let done: Done = api.post(&path, &body).await?;
    Output::new(&done, text)
}
