//! Accounts, one place for their rules (the API and the web app both call
//! these): password policy and hashing (argon2id), invitation links, sign-in
//! with its failure limit, the session secrets kept as hashes in the graph,
//! and bearer tokens (the operator token from config, or a user's
//! `USER.SECRET`, stored only as its SHA-256; a disabled user's are refused).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use hpfriends_graph::accounts::UnixTime;
use hpfriends_graph::{Actor, Command};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{execute, AppError};
use crate::auth_limit::Client;
use crate::config::Signup;
use crate::state::AppState;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted (hashing cost grows with it).
pub const MAX_PASSWORD_LEN: usize = 256;

pub fn now() -> UnixTime {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh random secret (a session cookie, an invitation token): 256 bits, hex.
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Why a password is refused, or `None`.
pub fn password_problem(password: &str) -> Option<String> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        Some(format!("a password needs at least {MIN_PASSWORD_LEN} characters (this one has {len})"))
    } else if password.len() > MAX_PASSWORD_LEN {
        Some(format!("a password may have at most {MAX_PASSWORD_LEN} bytes"))
    } else {
        None
    }
}

/// At most one argon2 computation per core at a time (each costs about 19 MiB
/// and tens of milliseconds): sign-in attempts from many names and addresses
/// wait their turn instead of taking every core and all the memory.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
});

/// Runs one argon2 computation off the async threads, in turn.
async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _turn = HASHING.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// argon2id with the crate's defaults (19 MiB, 2 passes).
pub async fn hash_password(password: &str) -> Result<String, AppError> {
    if let Some(problem) = password_problem(password) {
        return Err(AppError::WeakPassword(problem));
    }
    let password = password.to_string();
    let hashed = argon2(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    });
    match hashed.await {
        Some(Ok(hash)) => Ok(hash),
        Some(Err(e)) => Err(AppError::Internal(e.to_string())),
        None => Err(AppError::Internal("password hashing stopped".into())),
    }
}

/// Checks `password` against a stored hash; with no hash, spends the same
/// time and fails, so an unknown name answers as slowly as a wrong password.
async fn verify_password(password: &str, stored: Option<String>) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let password = password.to_string();
    argon2(move || {
        let decoy;
        let phc = match &stored {
            Some(h) => h.as_str(),
            None => {
                decoy = Argon2::default()
                    .hash_password(b"no such user", &SaltString::generate(&mut OsRng))
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                decoy.as_str()
            }
        };
        let ok =
            PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        ok && stored.is_some()
    })
    .await
    .unwrap_or(false)
}

/// A new invitation (or password-reset) link for `name`; creates the user if needed.
/// With `signup = "closed"` nobody new comes in: only existing users get a
/// (password reset) link.
pub async fn invite(state: &AppState, actor: Actor, name: &str) -> Result<(String, UnixTime), AppError> {
    if state.accounts.signup == Signup::Closed && !state.node.read_graph(|g| g.has_user(name)) {
        return Err(AppError::Forbidden(
            "signup = \"closed\": no new accounts; existing users can get a reset link".into(),
        ));
    }
    // The link names its user, so an unknown one costs one lookup.
    let token = format!("{name}.{}", new_secret());
    let expires_at = now() + state.accounts.invite_ttl.as_secs();
    let cmd = Command::InviteUser { name: name.to_string(), token_hash: hash_token(&token), expires_at };
    execute(state, actor, cmd).await?;
    Ok((format!("{}/invite/{token}", state.accounts.web_url), expires_at))
}

/// Whose invitation `token` (`NAME.SECRET`) is, if it is open and unexpired here.
pub fn invitation_of(state: &AppState, token: &str) -> Option<String> {
    let (name, _) = token.rsplit_once('.')?;
    let hash = hash_token(token);
    let now = now();
    state.node.read_graph(|g| {
        let invitation = g.user(name)?.account.invitation.as_ref()?;
        let matches = bool::from(invitation.token_hash.as_bytes().ct_eq(hash.as_bytes()));
        (matches && now < invitation.expires_at).then(|| name.to_string())
    })
}

/// Sets the password through an invitation link (the graph checks the link
/// again) and signs the user in, as a sign-up does: the cookie value to set.
pub async fn accept_invitation(state: &AppState, token: &str, password: &str) -> Result<NewSession, AppError> {
    let name = invitation_of(state, token).ok_or(AppError::InvalidInvitation)?;
    let password_hash = hash_password(password).await?;
    let cmd =
        Command::SetPassword { name: name.clone(), password_hash, invitation: Some(hash_token(token)), at: now() };
    execute(state, Actor::User(name.clone()), cmd).await?;
    let session = start_session(state, Actor::User(name.clone())).await?;
    Ok(NewSession { session, device: device_cookie(state, &name, &new_secret()) })
}

/// `signup = "open"`: a new user with a password, in one entry. Each
/// sign-up counts against the address like a failed sign-in, so one address
/// cannot fill the graph with accounts.
pub async fn sign_up(state: &AppState, ip: IpAddr, name: &str, password: &str) -> Result<(), AppError> {
    if state.accounts.signup != Signup::Open {
        return Err(AppError::Forbidden("accounts are made by invitation here: ask the operator".into()));
    }
    // Charged and never given back: every sign-up counts (the key is the address's own).
    let key = format!("\0sign-up {ip}");
    let Some(_charged) = state.accounts.sign_in_limit.attempt(Client::Address(ip), key.as_bytes()) else {
        return Err(AppError::Limited("too many new accounts from this address: wait a minute"));
    };
    let password_hash = hash_password(password).await?;
    let commands = vec![
        Command::AddUser { name: name.to_string() },
        Command::SetPassword { name: name.to_string(), password_hash, invitation: None, at: now() },
    ];
    // The node grants this on its own setting: it proposes as the operator.
    execute(state, Actor::Operator, Command::Batch { commands }).await
}

/// A new sign-in: the session cookie, and the device cookie that makes the
/// browser a known client of this name from now on.
pub struct NewSession {
    pub session: String,
    pub device: String,
}

/// Checks a name and password and starts a session. Limited per client: a
/// browser whose `device` cookie says it signed in as `name` before has a
/// budget of its own, so failures elsewhere never lock its user out; any
/// other is limited per name and per address (`auth_limit.rs`).
pub async fn sign_in(
    state: &AppState,
    ip: IpAddr,
    device: Option<&str>,
    name: &str,
    password: &str,
) -> Result<NewSession, AppError> {
    let known = device.filter(|d| is_device_of(state, name, d));
    let client = known.map_or(Client::Address(ip), |d| Client::Known(d.as_bytes()));
    let Some(attempt) = state.accounts.sign_in_limit.attempt(client, name.as_bytes()) else {
        return Err(AppError::Limited(
            "too many failed sign-ins for this name or from this address: wait a minute and try again",
        ));
    };
    let stored = state
        .node
        .read_graph(|g| g.user(name).filter(|u| !u.account.disabled).and_then(|u| u.account.password_hash.clone()));
    if !verify_password(password, stored).await {
        return Err(AppError::BadCredentials("wrong name or password"));
    }
    attempt.succeeded();
    let session = start_session(state, Actor::User(name.to_string())).await?;
    Ok(NewSession { session, device: device_cookie(state, name, &new_secret()) })
}

/// The name the operator's sign-ins are limited under.
const OPERATOR_KEY: &str = "\0operator";

/// The operator signs in to the web app with the operator token; limited like a user's sign-in.
pub async fn sign_in_operator(
    state: &AppState,
    ip: IpAddr,
    device: Option<&str>,
    token: &str,
) -> Result<NewSession, AppError> {
    let known = device.filter(|d| is_device_of(state, OPERATOR_KEY, d));
    let client = known.map_or(Client::Address(ip), |d| Client::Known(d.as_bytes()));
    let Some(attempt) = state.accounts.sign_in_limit.attempt(client, OPERATOR_KEY.as_bytes()) else {
        return Err(AppError::Limited("too many failed sign-ins: wait a minute"));
    };
    if !is_operator_token(state, token) {
        return Err(AppError::BadCredentials("that is not the operator token"));
    }
    attempt.succeeded();
    let session = start_session(state, Actor::Operator).await?;
    Ok(NewSession { session, device: device_cookie(state, OPERATOR_KEY, &new_secret()) })
}

/// A device cookie is `NONCE.TAG`, the tag an HMAC of the name and nonce
/// keyed with the node's operator token: any node with the same token knows it.
fn device_cookie(state: &AppState, name: &str, nonce: &str) -> String {
    format!("{nonce}.{}", hex::encode(device_mac(state, name, nonce).finalize().into_bytes()))
}

fn device_mac(state: &AppState, name: &str, nonce: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.operator_token.as_bytes()).expect("HMAC takes any key");
    mac.update(b"hpfriends device\0");
    mac.update(name.as_bytes());
    mac.update(b"\0");
    mac.update(nonce.as_bytes());
    mac
}

fn is_device_of(state: &AppState, name: &str, cookie: &str) -> bool {
    let Some((nonce, tag)) = cookie.split_once('.') else { return false };
    let Ok(tag) = hex::decode(tag) else { return false };
    device_mac(state, name, nonce).verify_slice(&tag).is_ok()
}

async fn start_session(state: &AppState, actor: Actor) -> Result<String, AppError> {
    let secret = match actor {
        Actor::Operator => operator_cookie(state, &new_secret()),
        Actor::User(_) => new_secret(),
    };
    let at = now();
    let cmd = Command::StartSession {
        actor: actor.clone(),
        session_hash: hash_token(&secret),
        expires_at: at + state.accounts.session_ttl.as_secs(),
        at,
    };
    execute(state, actor, cmd).await?;
    Ok(secret)
}

/// When the live session of `cookie` expires.
pub fn session_expiry(state: &AppState, cookie: &str) -> Option<UnixTime> {
    let hash = hash_token(cookie);
    state.node.read_graph(|g| g.session(&hash, now()).map(|s| s.expires_at))
}

/// The actor a session cookie stands for, if it is live and its user
/// enabled; an operator's, if it was made with this node's operator token.
pub fn session_actor(state: &AppState, cookie: &str) -> Option<Actor> {
    let hash = hash_token(cookie);
    let now = now();
    let actor = state.node.read_graph(|g| {
        let actor = g.session(&hash, now)?.actor.clone();
        match &actor {
            Actor::User(u) if !g.is_enabled(u) => None,
            _ => Some(actor),
        }
    })?;
    match actor {
        Actor::Operator if !is_operator_cookie(state, cookie) => None,
        actor => Some(actor),
    }
}

/// An operator's cookie is `RANDOM.MAC`, the MAC keyed with the operator
/// token: when the token changes, every operator session ends with it.
fn operator_cookie(state: &AppState, random: &str) -> String {
    format!("{random}.{}", hex::encode(operator_mac(state, random).finalize().into_bytes()))
}

fn operator_mac(state: &AppState, random: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.operator_token.as_bytes()).expect("HMAC takes any key");
    mac.update(b"hpfriends operator session\0");
    mac.update(random.as_bytes());
    mac
}

fn is_operator_cookie(state: &AppState, cookie: &str) -> bool {
    let Some((random, tag)) = cookie.split_once('.') else { return false };
    let Ok(tag) = hex::decode(tag) else { return false };
    operator_mac(state, random).verify_slice(&tag).is_ok()
}

pub async fn sign_out(state: &AppState, actor: Actor, cookie: &str) -> Result<(), AppError> {
    execute(state, actor, Command::EndSession { session_hash: hash_token(cookie) }).await
}

/// Ends every session of the actor, on every node, in one entry: every
/// session the log holds before it, whichever node it was started through.
pub async fn sign_out_everywhere(state: &AppState, actor: Actor) -> Result<(), AppError> {
    execute(state, actor.clone(), Command::EndSessionsOf { actor }).await
}

/// Changes the signed-in user's password (the old one must be right); every
/// session of theirs ends, and the new cookie to set is returned.
/// With `revoke_tokens`, every API token of theirs is revoked in the same entry.
pub async fn change_password(
    state: &AppState,
    session: &str,
    name: &str,
    old: &str,
    new: &str,
    revoke_tokens: bool,
) -> Result<String, AppError> {
    check_own_password(state, session, name, old).await?;
    let password_hash = hash_password(new).await?;
    let mut commands =
        vec![Command::SetPassword { name: name.to_string(), password_hash, invitation: None, at: now() }];
    if revoke_tokens {
        let labels = api_tokens(state, name).into_iter().map(|(label, _)| label);
        commands.extend(labels.map(|label| Command::RemoveApiToken { name: name.to_string(), label }));
    }
    execute(state, Actor::User(name.to_string()), Command::Batch { commands }).await?;
    start_session(state, Actor::User(name.to_string())).await
}

/// A signed-in user's own password, asked again before a lasting change (a
/// new password, an API token), so a stolen browser session cannot make one.
/// Each session has a budget of its own: a stolen one is no way to guess the
/// password, nor to lock its user out.
async fn check_own_password(state: &AppState, session: &str, name: &str, password: &str) -> Result<(), AppError> {
    let session = hash_token(session);
    let Some(attempt) = state.accounts.sign_in_limit.attempt(Client::Known(session.as_bytes()), name.as_bytes()) else {
        return Err(AppError::Limited("too many wrong passwords for this name: wait a minute and try again"));
    };
    let stored = state.node.read_graph(|g| g.user(name).and_then(|u| u.account.password_hash.clone()));
    if !verify_password(password, stored).await {
        return Err(AppError::WrongPassword);
    }
    attempt.succeeded();
    Ok(())
}

/// A new API token `USER.SECRET` labelled `label`, once the user's password
/// is given again; shown once.
pub async fn add_api_token(
    state: &AppState,
    session: &str,
    name: &str,
    password: &str,
    label: &str,
) -> Result<String, AppError> {
    check_own_password(state, session, name, password).await?;
    let actor = Actor::User(name.to_string());
    let token = format!("{name}.{}", new_secret());
    let cmd = Command::AddApiToken {
        name: name.to_string(),
        label: label.to_string(),
        token_hash: hash_token(&token),
        at: now(),
    };
    execute(state, actor, cmd).await?;
    Ok(token)
}

pub async fn remove_api_token(state: &AppState, actor: Actor, name: &str, label: String) -> Result<(), AppError> {
    execute(state, actor, Command::RemoveApiToken { name: name.to_string(), label }).await
}

/// When each live sign-in of `name` started and when it expires.
pub fn live_sessions(state: &AppState, name: &str) -> Vec<(UnixTime, UnixTime)> {
    let now = now();
    state.node.read_graph(|g| {
        g.sessions_of(&Actor::User(name.to_string()))
            .filter(|(_, s)| s.live_at(now))
            .map(|(_, s)| (s.started_at, s.expires_at))
            .collect()
    })
}

/// The labels of `name`'s API tokens, with when each was made.
pub fn api_tokens(state: &AppState, name: &str) -> Vec<(String, UnixTime)> {
    state.node.read_graph(|g| {
        g.user(name)
            .map(|u| u.account.api_tokens.iter().map(|(l, t)| (l.clone(), t.created_at)).collect())
            .unwrap_or_default()
    })
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh user token and the hash to store.
pub fn new_user_token(user: &str) -> (String, String) {
    let secret: [u8; 24] = rand::random();
    let token = format!("{user}.{}", hex::encode(secret));
    let hash = hash_token(&token);
    (token, hash)
}

pub fn is_operator_token(state: &AppState, token: &str) -> bool {
    bool::from(token.as_bytes().ct_eq(state.operator_token.as_bytes()))
}

/// Who a bearer token stands for: the operator, or an enabled user whose
/// token (the one `ctl user token` issues, or one made in the web app) it is.
pub fn token_actor(state: &AppState, token: &str) -> Option<Actor> {
    if is_operator_token(state, token) {
        return Some(Actor::Operator);
    }
    // The secret part is hex: a user name may hold dots (an e-mail address).
    let user = token.rsplit_once('.').map(|(u, _)| u).unwrap_or("");
    let presented = hash_token(token);
    let matches = |stored: &str| bool::from(stored.as_bytes().ct_eq(presented.as_bytes()));
    let valid = state.node.read_graph(|g| {
        g.user(user).filter(|u| !u.account.disabled).is_some_and(|u| {
            u.token_hash.as_deref().is_some_and(matches)
                || u.account.api_tokens.values().any(|t| matches(&t.token_hash))
        })
    });
    valid.then(|| Actor::User(user.to_string()))
}
