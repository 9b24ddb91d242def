//! What a key did, summed over every node: messages and bytes published and
//! delivered, its connections now and its last failed logins.

use std::collections::BTreeMap;

use hpfriends_graph::{Actor, AuthKey};

use super::types::{KeyActivity, KeyConnection, KeyFailedLogin, UnansweredNode};
use super::AppError;
use crate::cluster::proto::nodes::KeyOf;
use crate::cluster::report::gather;
use crate::state::AppState;

/// The key's activity on every node (a node that does not answer is named).
/// Only its owner and the operator may see it.
pub async fn of_key(state: &AppState, actor: &Actor, ident: &str) -> Result<KeyActivity, AppError> {
    let owner = state.node.read_graph(|g| g.key(ident).and_then(|k| Some((k.owner.clone(), g.user_id(&k.owner)?))));
    let (owner, owner_id) = match (owner, actor) {
        (Some(owner), Actor::Operator) => owner,
        (Some(owner), Actor::User(me)) if &owner.0 == me => owner,
        _ => return Err(AppError::NotFound(format!("no key {ident:?} of yours"))),
    };
    let mut a = KeyActivity {
        ident: ident.to_string(),
        owner,
        published: 0,
        published_bytes: 0,
        delivered: 0,
        delivered_bytes: 0,
        last_publish: None,
        last_subscribe: None,
        connections: Vec::new(),
        failed_logins: Vec::new(),
        unanswered: Vec::new(),
    };
    let since = |t: u64| (t != 0).then_some(t);
    let key = KeyOf { ident: ident.to_string(), owner: owner_id };
    for (node, report) in gather(state, &[], &[key]).await {
        let report = match report {
            Ok(r) => r,
            Err(reason) => {
                a.unanswered.push(UnansweredNode { node, reason });
                continue;
            }
        };
        for k in report.activity.into_iter().filter(|k| k.ident == ident) {
            a.published += k.published;
            a.published_bytes += k.published_bytes;
            a.delivered += k.delivered;
            a.delivered_bytes += k.delivered_bytes;
            a.last_publish = a.last_publish.max(since(k.last_publish));
            a.last_subscribe = a.last_subscribe.max(since(k.last_subscribe));
            a.connections.extend(k.live.into_iter().map(|c| KeyConnection {
                node,
                remote: c.remote,
                since: c.since,
                channels: c.channels,
            }));
            a.failed_logins.extend(k.failed_logins.into_iter().map(|f| KeyFailedLogin {
                node,
                at: f.at,
                remote: f.remote,
                reason: f.reason,
            }));
        }
    }
    a.connections.sort_by_key(|c| (c.node, c.since));
    a.failed_logins.sort_by_key(|f| std::cmp::Reverse(f.at));
    Ok(a)
}

/// Where each of `keys` is logged in now, asked of every node: ident →
/// (node, connections); and the nodes that did not answer, with why.
pub type Presence = (BTreeMap<String, Vec<(u64, u32)>>, Vec<(u64, String)>);

pub async fn presence(state: &AppState, keys: &[AuthKey]) -> Presence {
    let idents: Vec<String> = keys.iter().map(|k| k.ident.clone()).collect();
    let (mut live, mut silent): Presence = Default::default();
    for (node, report) in gather(state, &idents, &[]).await {
        match report {
            Ok(r) => r.live.into_iter().for_each(|l| live.entry(l.ident).or_default().push((node, l.connections))),
            Err(why) => silent.push((node, why)),
        }
    }
    (live, silent)
}
