//! Validation of the names that appear in the graph and on the wire.

use crate::{GraphError, Named};

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
    fn given_names_with_colon_or_space_then_rejected() {
        assert!(check_name(Named::User, "group:x").is_err());
        assert!(check_name(Named::User, "a b").is_err());
        assert!(check_name(Named::User, "jojo").is_ok());
    }
}
