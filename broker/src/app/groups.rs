//! Groups: create one; admins invite and remove, users join and leave.

use hpfriends_graph::{Actor, Command, Graph};

use super::types::{GroupInfo, MemberInfo};
use super::{acting_user, execute, AppError, Field};
use crate::state::AppState;

/// Every group as `viewer` may see it: the operator, a group's admins and
/// members see it whole; an invited user its admins; anyone its name.
/// `mine`: only the groups the viewer administers, belongs to or is invited to.
pub fn list(state: &AppState, viewer: &Actor, mine: bool) -> Vec<GroupInfo> {
    state.node.read_graph(|g| {
        g.groups()
            .filter_map(|(name, grp)| {
                let (inside, invited) = match viewer {
                    Actor::Operator => (true, false),
                    Actor::User(me) => (
                        grp.admins.contains(me) || grp.members.get(me) == Some(&true),
                        grp.members.get(me) == Some(&false),
                    ),
                };
                if mine && !inside && !invited {
                    return None;
                }
                Some(GroupInfo {
                    name: name.to_string(),
                    admins: (inside || invited).then(|| grp.admins.iter().cloned().collect()),
                    members: inside.then(|| {
                        grp.members.iter().map(|(u, a)| MemberInfo { user: u.clone(), accepted: *a }).collect()
                    }),
                })
            })
            .collect()
    })
}

/// A new group; its creator (the caller, or the admin the operator names) is
/// its first admin and a member.
pub async fn create(state: &AppState, actor: Actor, name: String, admin: Option<String>) -> Result<(), AppError> {
    let creator = acting_user(&actor, admin, "create a group")?;
    execute(state, actor, Command::AddGroup { name, creator }).await
}

/// A change of a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// An admin invites a user; the user is a member once they join.
    Invite,
    /// An invited user accepts (the operator names the user).
    Join,
    /// A member leaves, or an invited user declines.
    Leave,
    /// An admin removes a member.
    Remove,
    /// An admin makes a member an admin too.
    Admin,
}

impl Membership {
    /// The action's name in the web app's paths.
    pub fn parse(action: &str) -> Option<Membership> {
        Some(match action {
            "invite" => Membership::Invite,
            "join" => Membership::Join,
            "leave" => Membership::Leave,
            "remove" => Membership::Remove,
            "admin" => Membership::Admin,
            _ => return None,
        })
    }
}

pub async fn change(
    state: &AppState,
    actor: Actor,
    group: String,
    action: Membership,
    user: Option<String>,
) -> Result<(), AppError> {
    let named = |what: &str| {
        user.clone().ok_or_else(|| AppError::invalid(Field::User, format!("missing field `user`: {what}")))
    };
    let command = match action {
        Membership::Invite => Command::InviteMember { group, user: named("whom to invite")? },
        Membership::Join => Command::AcceptMembership { group, user: acting_user(&actor, user, "join a group")? },
        Membership::Leave => removal(state, group, acting_user(&actor, user, "leave a group")?),
        Membership::Remove => removal(state, group, named("whom to remove")?),
        Membership::Admin => {
            let user = named("whom to make an admin")?;
            let accepted = |g: &Graph| g.group(&group).map(|grp| grp.members.get(&user) == Some(&true));
            let member = super::read_before_refusing(state, accepted, |m| *m == Some(false)).await;
            if member == Some(false) {
                return Err(AppError::invalid(
                    Field::User,
                    format!("{user} is not a member of {group}: only members become admins (invite them first)"),
                ));
            }
            Command::AddGroupAdmin { group, user }
        }
    };
    execute(state, actor, command).await
}

/// Removes `user` from `group`. An admin who is not a member (made one before
/// admins had to be members) is invited first, so the removal ends the role.
fn removal(state: &AppState, group: String, user: String) -> Command {
    let admin_only = state.node.read_graph(|g| {
        g.group(&group).is_some_and(|grp| grp.admins.contains(&user) && !grp.members.contains_key(&user))
    });
    let remove = Command::RemoveMember { group: group.clone(), user: user.clone() };
    if admin_only {
        Command::Batch { commands: vec![Command::InviteMember { group, user }, remove] }
    } else {
        remove
    }
}
