//! The application layer: every use case of hpfriends, a file per resource.
//! The API handlers (`http::api`), the web pages (`web`), `ctl`'s server
//! side and the node reports call these: each takes the actor and typed
//! inputs, builds the `graph::Command`, proposes it, and answers with domain
//! types or an `AppError`. Who may do what is decided by the graph
//! (`graph::authz`, again on every node as the entry is applied); this layer
//! adds only what must be known before proposing (whose listing, which user
//! a command acts for, secrets long enough).

pub mod accounts;
pub(crate) mod activity;
pub(crate) mod audience;
pub(crate) mod cluster;
mod error;
pub(crate) mod graph;
pub(crate) mod groups;
pub(crate) mod history;
pub(crate) mod keeps;
pub(crate) mod keys;
pub(crate) mod messages;
pub(crate) mod shares;
pub(crate) mod types;
pub(crate) mod users;

use hpfriends_graph::{Actor, Command, Graph};

pub use error::{AppError, Field};

use crate::state::AppState;

/// Proposes one command as `actor` and waits until it is applied here. New
/// names are held to the stricter rules first (`graph::names::check_new_names`),
/// and keys to `max_channels_per_key`.
pub async fn execute(state: &AppState, actor: Actor, command: Command) -> Result<(), AppError> {
    refuse_wide_keys(&command, state.max_channels_per_key)?;
    state.node.read_graph(|g| hpfriends_graph::names::check_new_names(&command, g))?;
    state.node.write(actor, command).await.map_err(AppError::from)
}

/// Reads what a change is built from. When what this node holds would refuse
/// the change (`refuses`), it first catches up with the leader and reads
/// again: what was changed through another node a moment ago, or before this
/// node restarted, is not refused for not being known here yet (as
/// `ConsensusNode::write`'s dry run does).
async fn read_before_refusing<T>(state: &AppState, read: impl Fn(&Graph) -> T, refuses: impl Fn(&T) -> bool) -> T {
    let seen = state.node.read_graph(&read);
    if !refuses(&seen) {
        return seen;
    }
    let _ = state.node.read_barrier().await;
    state.node.read_graph(read)
}

/// A key's channel lists are bounded: what a session checks per frame, and
/// what every node keeps, must not grow without limit.
fn refuse_wide_keys(command: &Command, max: usize) -> Result<(), AppError> {
    match command {
        Command::AddKey(k) if k.publish.len() > max || k.subscribe.len() > max => Err(AppError::invalid(
            Field::Channel,
            format!(
                "key {:?} lists {} channels to publish to and {} to subscribe to: at most {max} each (max_channels_per_key)",
                k.ident,
                k.publish.len(),
                k.subscribe.len()
            ),
        )),
        Command::Batch { commands } => commands.iter().try_for_each(|c| refuse_wide_keys(c, max)),
        _ => Ok(()),
    }
}

/// Whose things a listing shows: the operator may ask for anyone's (or
/// everyone's, `None`); a user sees only their own.
fn listing_scope(caller: &Actor, asked: Option<String>, what: &str) -> Result<Option<String>, AppError> {
    match (caller, asked) {
        (Actor::Operator, asked) => Ok(asked),
        (Actor::User(me), None) => Ok(Some(me.clone())),
        (Actor::User(me), Some(u)) if &u == me => Ok(Some(u)),
        (Actor::User(_), Some(_)) => Err(AppError::Forbidden(format!("a user can only list their own {what}"))),
    }
}

/// The user a command acts for: the caller, or for the operator the named one.
fn acting_user(caller: &Actor, named: Option<String>, what: &str) -> Result<String, AppError> {
    match (caller, named) {
        (Actor::User(me), None) => Ok(me.clone()),
        (Actor::User(me), Some(n)) if &n == me => Ok(n),
        (Actor::User(_), Some(_)) => Err(AppError::Forbidden(format!("a user can only {what} for themselves"))),
        (Actor::Operator, Some(n)) => Ok(n),
        (Actor::Operator, None) => {
            Err(AppError::invalid(Field::User, format!("the operator must name the user to {what} for")))
        }
    }
}
