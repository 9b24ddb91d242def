//! The graph as a whole: `explain` a path, `apply` a declaration.

use hpfriends_graph::declare::{plan, Declaration};
use hpfriends_graph::{explain as explain_path, Actor, Command, Explanation, GraphError};

use super::{execute, AppError, Field};
use crate::state::AppState;

/// The path that lets `to` read `from`'s data on `channel`, or none. A user
/// may ask about paths that start or end with them.
pub fn explain(state: &AppState, actor: &Actor, from: &str, to: &str, channel: &str) -> Result<Explanation, AppError> {
    if let Actor::User(me) = actor {
        if me != from && me != to {
            return Err(AppError::Forbidden("a user can only ask about paths that start or end with them".into()));
        }
    }
    state.node.read_graph(|g| {
        for u in [from, to] {
            if !g.has_user(u) {
                return Err(AppError::from(GraphError::UnknownUser(u.to_string())));
            }
        }
        Ok(explain_path(g, from, to, channel))
    })
}

/// What applying a declaration did: the number of changes, and warnings.
pub struct Applied {
    pub changes: usize,
    pub warnings: Vec<String>,
}

/// Makes the graph contain the declaration (JSON), as one entry: all or
/// nothing. Short key secrets are refused unless `allow_short_secrets`,
/// which keeps them with a warning each (an import of existing sensors).
pub async fn apply(
    state: &AppState,
    actor: Actor,
    declaration: &[u8],
    allow_short_secrets: bool,
) -> Result<Applied, AppError> {
    if allow_short_secrets && actor != Actor::Operator {
        return Err(AppError::Forbidden("only the operator keeps short key secrets (an import of old sensors)".into()));
    }
    let decl: Declaration =
        serde_json::from_slice(declaration).map_err(|e| AppError::MalformedDeclaration(e.to_string()))?;
    let mut commands =
        state.node.read_graph(|g| plan(&decl, g)).map_err(|e| AppError::invalid(Field::Group, e.to_string()))?;
    super::shares::with_pseudonym_keys(&mut commands);
    let warnings = if allow_short_secrets {
        short_secrets(&commands, state.min_key_secret_len)
    } else {
        refuse_short_secrets(&commands, state.min_key_secret_len)?;
        Vec::new()
    };
    let changes = commands.len();
    if changes > 0 {
        execute(state, actor, Command::Batch { commands }).await?;
    }
    Ok(Applied { changes, warnings })
}

/// What is wrong with each new key whose secret is shorter than `min`.
fn short_secrets(commands: &[Command], min: usize) -> Vec<String> {
    let mut found = Vec::new();
    for c in commands {
        match c {
            Command::AddKey(k) if k.secret.chars().count() < min => found.push(format!(
                "the secret of key {:?} is {} characters long, shorter than {min}",
                k.ident,
                k.secret.chars().count()
            )),
            Command::Batch { commands } => found.extend(short_secrets(commands, min)),
            _ => {}
        }
    }
    found
}

pub fn refuse_short_secrets(commands: &[Command], min: usize) -> Result<(), AppError> {
    let short = short_secrets(commands, min);
    if short.is_empty() {
        return Ok(());
    }
    Err(AppError::invalid(
        Field::Secret,
        format!("{}: give a longer secret, or none to get a generated one", short.join("; ")),
    ))
}
