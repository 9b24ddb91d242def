//! `ctl user …`

use super::client::{enc, Api, Output};
use super::UserCmd;
use crate::app::types::{Done, InvitationLink, IssuedToken, NewUser, UserList};

pub async fn run(api: &Api, cmd: &UserCmd) -> anyhow::Result<Output> {
    match cmd {
        UserCmd::Add { name } => {
            let done: Done = api.post("/api/v1/users", &NewUser { name: name.clone() }).await?;
            Output::new(&done, format!("added user {name}"))
        }
        UserCmd::Remove { name } => {
            let done: Done = api.delete(&format!("/api/v1/users/{}", enc(name))).await?;
            Output::new(&done, format!("removed user {name}"))
        }
        UserCmd::List => {
            let list: UserList = api.get("/api/v1/users").await?;
            let text = list.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join("\n");
            Output::new(&list, text)
        }
        UserCmd::Invite { name } | UserCmd::Reset { name } => {
            let link: InvitationLink =
                api.post(&format!("/api/v1/users/{}/invite", enc(name)), &serde_json::json!({})).await?;
            let text = link.link.clone();
            Output::new(&link, text)
        }
        UserCmd::Disable { name } | UserCmd::Enable { name } => {
            let action = if matches!(cmd, UserCmd::Disable { .. }) { "disable" } else { "enable" };
            let done: Done = api.post(&format!("/api/v1/users/{}/{action}", enc(name)), &serde_json::json!({})).await?;
            Output::new(&done, format!("{action}d user {name}"))
        }
        UserCmd::Token { name } => {
            let issued: IssuedToken =
                api.post(&format!("/api/v1/users/{}/token", enc(name)), &serde_json::json!({})).await?;
            let text = issued.token.clone();
            Output::new(&issued, text)
        }
    }
}
