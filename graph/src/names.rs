//! Validation of the names that appear in the graph and on the wire.

use crate::model::Graph;
use crate::{Command, GraphError, Named};

/// Longest user or group name.
pub const MAX_NAME_LEN: usize = 64;
/// Channels and idents travel as `str8` on the hpfeeds wire.
pub const MAX_WIRE_NAME_LEN: usize = 255;
/// Longest authkey secret.
pub const MAX_SECRET_LEN: usize = 1024;

/// User and group names: short, printable, no `:` (reserved for `group:NAME`).
pub fn check_name(what: Named, name: &str) -> Result<(), GraphError> {
    let reason = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("is {} bytes long, the limit is {MAX_NAME_LEN}", name.len()))
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')) {
        Some("may only contain ASCII letters, digits, '-', '_', '.' and '@'".to_string())
    } else {
        None
    };
    reason.map_or(Ok(()), |reason| Err(invalid(what, name, reason)))
}

/// Channels and idents: 1..=255 bytes (they must fit a `str8`), no control characters.
pub fn check_wire_name(what: Named, name: &str) -> Result<(), GraphError> {
    let reason = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.len() > MAX_WIRE_NAME_LEN {
        Some(format!("is {} bytes long, the limit is {MAX_WIRE_NAME_LEN}", name.len()))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters".to_string())
    } else {
        None
    };
    reason.map_or(Ok(()), |reason| Err(invalid(what, name, reason)))
}

pub fn check_secret(secret: &str) -> Result<(), GraphError> {
    if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
        return Err(GraphError::InvalidName {
            what: Named::Secret,
            name: String::new(),
            reason: format!("must be 1..={MAX_SECRET_LEN} bytes"),
        });
    }
    Ok(())
}

/// Names the system speaks as: nobody may take them as a user or group name
/// (in any case), so nothing a user does can show as the operator's.
pub const RESERVED_NAMES: [&str; 4] = ["operator", "admin", "root", "system"];

/// Unicode controls that reorder the text around them (bidirectional
/// embeddings, overrides and isolates): a channel or ident holding one reads
/// differently from what it is.
fn reorders_text(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The rules for names that are new to the graph, stricter than what
/// `apply` accepts from the log: they are checked before a command is
/// proposed, so entries written before them still apply the same on every
/// node. A user or group name is not reserved and not dots only; an ident
/// is not a path (no `/` or `\\`, not dots only); a channel or ident has no
/// control that reorders text and no space (History shows `field=value`).
pub fn check_new_names(command: &Command, graph: &Graph) -> Result<(), GraphError> {
    let person = |what: Named, name: &str| -> Result<(), GraphError> {
        if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(invalid(what, name, "is reserved for the system".into()));
        }
        if !name.is_empty() && name.chars().all(|c| c == '.') {
            return Err(invalid(what, name, "must not be dots only".into()));
        }
        Ok(())
    };
    let wire = |what: Named, name: &str| -> Result<(), GraphError> {
        if name.chars().any(reorders_text) {
            return Err(invalid(what, name, "must not contain controls that reorder text".into()));
        }
        if name.chars().any(char::is_whitespace) {
            return Err(invalid(what, name, "must not contain spaces".into()));
        }
        Ok(())
    };
    match command {
        Command::AddUser { name } => person(Named::User, name),
        Command::InviteUser { name, .. } if !graph.has_user(name) => person(Named::User, name),
        Command::AddGroup { name, .. } => person(Named::Group, name),
        Command::AddShare { channel, .. } => wire(Named::Channel, channel),
        Command::AddKey(key) if graph.key(&key.ident).is_none() => {
            wire(Named::Ident, &key.ident)?;
            if key.ident.contains(['/', '\\']) || key.ident.chars().all(|c| c == '.') {
                return Err(invalid(Named::Ident, &key.ident, "must not look like a path".into()));
            }
            key.publish.iter().chain(&key.subscribe).try_for_each(|c| wire(Named::Channel, c))
        }
        Command::AddKey(key) => key.publish.iter().chain(&key.subscribe).try_for_each(|c| wire(Named::Channel, c)),
        Command::Batch { commands } => commands.iter().try_for_each(|c| check_new_names(c, graph)),
        _ => Ok(()),
    }
}

fn invalid(what: Named, name: &str, reason: String) -> GraphError {
    // Never echo a huge name back in full.
    let shown: String = name.chars().take(40).collect();
    let shown = if shown.len() < name.len() { format!("{shown}…") } else { shown };
    GraphError::InvalidName { what, name: shown, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_empty_or_300_byte_channel_then_rejected() {
        assert!(check_wire_name(Named::Channel, "").is_err());
        assert!(check_wire_name(Named::Channel, &"c".repeat(300)).is_err());
        assert!(check_wire_name(Named::Channel, &"c".repeat(255)).is_ok());
        assert!(check_wire_name(Named::Channel, "dionaea.captures").is_ok());
    }

    #[test]
    fn given_new_names_then_reserved_dotted_path_like_and_reordering_ones_are_refused() {
        let g = crate::synthetic::Fixture::new().users(&["jojo"]).graph();
        let refused = |c: Command| check_new_names(&c, &g).is_err();
        for name in ["operator", "Operator", "ROOT", "admin", "system", ".", ".."] {
            assert!(refused(Command::AddUser { name: name.into() }), "{name}");
            assert!(refused(Command::AddGroup { name: name.into(), creator: "jojo".into() }), "{name}");
        }
        assert!(!refused(Command::AddUser { name: "operators".into() }));
        assert!(!refused(Command::AddUser { name: "a.b".into() }));
        let key = |ident: &str, channel: &str| crate::AuthKey {
            ident: ident.into(),
            secret: "secret".into(),
            owner: "jojo".into(),
            publish: vec![channel.into()],
            subscribe: vec![],
            resume: false,
        };
        for ident in ["../../../tmp/x", "a\\b", "..", "evil\u{202E}txt"] {
            assert!(refused(Command::AddKey(key(ident, "c"))), "{ident:?}");
        }
        assert!(refused(Command::AddKey(key("k", "c\u{2066}x"))));
        assert!(!refused(Command::AddKey(key("cowrie-1.sensor", "cowrie.sessions"))));
        let share = |channel: &str| Command::AddShare {
            from: "jojo".into(),
            to: crate::Target::User("mark".into()),
            channel: channel.into(),
            kind: crate::ShareKind::Shares,
            with_history: false,
        };
        assert!(refused(share("x\u{202E}y")));
        assert!(refused(Command::Batch { commands: vec![Command::AddUser { name: "root".into() }] }));
    }

    #[test]
    fn given_names_with_colon_or_space_then_rejected() {
        assert!(check_name(Named::User, "group:x").is_err());
        assert!(check_name(Named::User, "a b").is_err());
        assert!(check_name(Named::User, "jojo").is_ok());
    }
}
