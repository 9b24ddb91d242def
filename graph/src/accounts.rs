//! People's accounts for the web app: passwords, invitations, sessions, API
//! tokens, disabling. Only hashes live here; the node that takes the request
//! hashes and verifies, and fixes the time (`at`) when it proposes the entry,
//! so every node applies the same change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Graph;
use crate::names::check_name;
use crate::{Actor, Command, GraphError};

/// Seconds since the Unix epoch, as the proposing node saw them.
pub type UnixTime = u64;

/// A user keeps at most this many sessions; signing in once more ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 16;
/// And at most this many API tokens.
pub const MAX_API_TOKENS_PER_USER: usize = 32;
/// Longest stored password hash (a PHC string).
const MAX_PASSWORD_HASH_LEN: usize = 256;

/// The account part of a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// An argon2id PHC string; `None` until the user set a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The one open invitation (or password reset) link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Invitation>,
    /// API tokens the user made themselves: label → SHA-256 of the token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub api_tokens: BTreeMap<String, ApiToken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub token_hash: String,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub token_hash: String,
    pub created_at: UnixTime,
}

/// A signed-in browser: a user's, or the operator's (signed in with the
/// operator token). Keyed in the graph by the SHA-256 of its cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub actor: Actor,
    pub started_at: UnixTime,
    pub expires_at: UnixTime,
}

impl Session {
    pub fn live_at(&self, now: UnixTime) -> bool {
        now < self.expires_at
    }
}

fn check_hash(what: &'static str, hash: &str) -> Result<(), GraphError> {
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(GraphError::InvalidAccount(format!("{what} must be 64 hex digits (a SHA-256)")))
    }
}

fn check_password_hash(hash: &str) -> Result<(), GraphError> {
    if hash.starts_with("$argon2id$") && hash.len() <= MAX_PASSWORD_HASH_LEN {
        Ok(())
    } else {
        Err(GraphError::InvalidAccount("a password is stored as an argon2id hash".into()))
    }
}

impl Graph {
    /// The live session whose cookie hashes to `session_hash`.
    pub fn session(&self, session_hash: &str, now: UnixTime) -> Option<&Session> {
        self.sessions.get(session_hash).filter(|s| s.live_at(now))
    }

    /// The actor's sessions, oldest first.
    pub fn sessions_of<'a>(&'a self, actor: &'a Actor) -> impl Iterator<Item = (&'a str, &'a Session)> + 'a {
        let mut mine: Vec<_> = self.sessions.iter().filter(|(_, s)| &s.actor == actor).collect();
        mine.sort_by_key(|(_, s)| s.started_at);
        mine.into_iter().map(|(h, s)| (h.as_str(), s))
    }

    /// Is `name` an enabled user? (Keys, tokens and sessions of a disabled one do nothing.)
    pub fn is_enabled(&self, name: &str) -> bool {
        self.user(name).is_some_and(|u| !u.account.disabled)
    }

    pub(crate) fn apply_account(&mut self, cmd: &Command, keys_changed: &mut bool) -> Result<(), GraphError> {
        match cmd {
            Command::InviteUser { name, token_hash, expires_at } => {
                check_hash("an invitation", token_hash)?;
                if !self.has_user(name) {
                    self.add_user(name)?;
                }
                let account = self.account_mut(name)?;
                account.invitation = Some(Invitation { token_hash: token_hash.clone(), expires_at: *expires_at });
            }
            Command::SetPassword { name, password_hash, invitation, at } => {
                check_password_hash(password_hash)?;
                let account = self.account_mut(name)?;
                if let Some(presented) = invitation {
                    match &account.invitation {
                        Some(i) if &i.token_hash == presented && *at < i.expires_at => {}
                        Some(i) if &i.token_hash == presented => {
                            return Err(GraphError::InvalidInvitation("this link has expired".into()))
                        }
                        _ => return Err(GraphError::InvalidInvitation("this link is not valid".into())),
                    }
                    account.invitation = None;
                }
                account.password_hash = Some(password_hash.clone());
                self.end_sessions_of(name);
            }
            Command::SetUserDisabled { name, disabled } => {
                let account = self.account_mut(name)?;
                if account.disabled != *disabled {
                    account.disabled = *disabled;
                    *keys_changed = true;
                }
                if *disabled {
                    self.end_sessions_of(name);
                }
            }
            Command::StartSession { actor, session_hash, expires_at, at } => {
                check_hash("a session", session_hash)?;
                if let Actor::User(name) = actor {
                    let account = self.account_mut(name)?;
                    if account.disabled {
                        return Err(GraphError::AccountDisabled(name.clone()));
                    }
                    if account.password_hash.is_none() {
                        return Err(GraphError::InvalidAccount(format!("{name} has not set a password")));
                    }
                }
                // Expired sessions go whenever anyone signs in: the table stays
                // bounded by the live ones, and every node drops the same ones.
                self.sessions.retain(|_, s| s.live_at(*at));
                let mine: Vec<String> = self.sessions_of(actor).map(|(h, _)| h.to_string()).collect();
                for oldest in mine.iter().take((mine.len() + 1).saturating_sub(MAX_SESSIONS_PER_USER)) {
                    self.sessions.remove(oldest);
                }
                let session = Session { actor: actor.clone(), started_at: *at, expires_at: *expires_at };
                self.sessions.insert(session_hash.clone(), session);
            }
            Command::EndSession { session_hash } => {
                // Signing out twice, or after expiry, is not an error.
                self.sessions.remove(session_hash);
            }
            Command::EndSessionsOf { actor } => self.sessions.retain(|_, s| s.actor != *actor),
            Command::AddApiToken { name, label, token_hash, at } => {
                check_name(crate::Named::TokenLabel, label)?;
                check_hash("a token", token_hash)?;
                let account = self.account_mut(name)?;
                if account.api_tokens.contains_key(label) {
                    return Err(GraphError::TokenExists { user: name.clone(), label: label.clone() });
                }
                if account.api_tokens.len() >= MAX_API_TOKENS_PER_USER {
                    return Err(GraphError::InvalidAccount(format!(
                        "a user has at most {MAX_API_TOKENS_PER_USER} API tokens; revoke one first"
                    )));
                }
                account.api_tokens.insert(label.clone(), ApiToken { token_hash: token_hash.clone(), created_at: *at });
            }
            Command::RemoveApiToken { name, label } => {
                if self.account_mut(name)?.api_tokens.remove(label).is_none() {
                    return Err(GraphError::UnknownToken { user: name.clone(), label: label.clone() });
                }
            }
            other => unreachable!("not an account command: {other:?}"),
        }
        Ok(())
    }

    /// Whose session `session_hash` names, for authorizing its end.
    pub(crate) fn session_owner(&self, session_hash: &str) -> Option<&Actor> {
        self.sessions.get(session_hash).map(|s| &s.actor)
    }

    pub(crate) fn end_sessions_of(&mut self, name: &str) {
        self.sessions.retain(|_, s| !matches!(&s.actor, Actor::User(u) if u == name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const PW: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

    fn invited(name: &str) -> Graph {
        let mut g = Graph::new();
        g.apply(&Command::InviteUser { name: name.into(), token_hash: H1.into(), expires_at: 100 }).unwrap();
        g
    }

    fn set_password(invitation: Option<&str>, at: UnixTime) -> Command {
        Command::SetPassword {
            name: "jojo".into(),
            password_hash: PW.into(),
            invitation: invitation.map(str::to_string),
            at,
        }
    }

    fn sign_in(hash: String, at: UnixTime) -> Command {
        Command::StartSession { actor: Actor::User("jojo".into()), session_hash: hash, expires_at: at + 50, at }
    }

    #[test]
    fn given_sessions_when_one_signs_out_everywhere_then_every_session_of_theirs_the_log_holds_ends() {
        let mut g = invited("jojo");
        g.apply(&set_password(Some(H1), 10)).unwrap();
        let hash = |n: u8| format!("{n:064x}");
        for (n, at) in [(1, 11), (2, 12)] {
            g.apply(&sign_in(hash(n), at)).unwrap();
        }
        let operator = Command::StartSession { actor: Actor::Operator, session_hash: hash(3), expires_at: 99, at: 12 };
        g.apply(&operator).unwrap();
        g.apply(&Command::EndSessionsOf { actor: Actor::User("jojo".into()) }).unwrap();
        assert!(g.sessions_of(&Actor::User("jojo".into())).next().is_none(), "jojo's sessions, both, ended");
        assert!(g.session(&hash(3), 13).is_some(), "the operator's stays");
        g.apply(&sign_in(hash(4), 14)).unwrap();
        assert!(g.session(&hash(4), 15).is_some(), "a sign-in after it lives");
    }

    #[test]
    fn given_an_invitation_then_it_sets_the_password_once_and_not_after_expiry() {
        let g = invited("jojo");
        assert!(g.has_user("jojo"));
        let mut late = g.clone();
        let err = late.apply(&set_password(Some(H1), 100)).unwrap_err();
        assert_eq!(err, GraphError::InvalidInvitation("this link has expired".into()));
        assert_eq!(late, g, "a refused change leaves the graph as it was");
        let mut wrong = g.clone();
        assert!(wrong.apply(&set_password(Some(H2), 10)).is_err());

        let mut used = g.clone();
        used.apply(&set_password(Some(H1), 99)).unwrap();
        assert_eq!(used.user("jojo").unwrap().account.password_hash.as_deref(), Some(PW));
        let again = used.apply(&set_password(Some(H1), 99)).unwrap_err();
        assert_eq!(again, GraphError::InvalidInvitation("this link is not valid".into()), "one use only");
    }

    #[test]
    fn given_sessions_then_a_password_change_or_disabling_ends_them_all() {
        let mut g = invited("jojo");
        assert_eq!(g.apply(&sign_in(H2.into(), 1)).unwrap_err().code(), "invalid_account", "no password yet");
        g.apply(&set_password(Some(H1), 1)).unwrap();
        g.apply(&sign_in(H2.into(), 2)).unwrap();
        assert_eq!(g.session(H2, 3).map(|s| &s.actor), Some(&Actor::User("jojo".into())));
        assert!(g.session(H2, 52).is_none(), "expired");
        g.apply(&set_password(None, 4)).unwrap();
        assert!(g.session(H2, 5).is_none(), "a password change ends every session");

        g.apply(&sign_in(H2.into(), 6)).unwrap();
        g.apply(&Command::SetUserDisabled { name: "jojo".into(), disabled: true }).unwrap();
        assert!(g.session(H2, 7).is_none());
        assert_eq!(g.apply(&sign_in(H2.into(), 8)).unwrap_err(), GraphError::AccountDisabled("jojo".into()));
        assert!(!g.is_enabled("jojo"));
    }

    #[test]
    fn given_many_sign_ins_then_a_user_keeps_the_newest_sessions_and_expired_ones_go() {
        let mut g = invited("jojo");
        g.apply(&set_password(Some(H1), 1)).unwrap();
        for i in 0..40u64 {
            g.apply(&sign_in(format!("{i:064x}"), 10 + i)).unwrap();
        }
        let kept: Vec<UnixTime> = g.sessions_of(&Actor::User("jojo".into())).map(|(_, s)| s.started_at).collect();
        assert_eq!(kept, (34..50).collect::<Vec<_>>(), "the 16 newest");
        g.apply(&sign_in(H2.into(), 1000)).unwrap();
        assert_eq!(g.sessions.len(), 1, "expired sessions are dropped at the next sign-in");
    }

    #[test]
    fn given_api_tokens_then_labels_are_unique_and_removal_names_a_missing_one() {
        let mut g = invited("jojo");
        let add = |label: &str| Command::AddApiToken {
            name: "jojo".into(),
            label: label.into(),
            token_hash: H2.into(),
            at: 1,
        };
        g.apply(&add("laptop")).unwrap();
        assert_eq!(g.apply(&add("laptop")).unwrap_err().code(), "token_exists");
        assert_eq!(g.apply(&add("bad label")).unwrap_err().code(), "invalid_name");
        let remove = Command::RemoveApiToken { name: "jojo".into(), label: "ci".into() };
        assert_eq!(g.apply(&remove).unwrap_err().code(), "unknown_token");
    }
}
