//! `ctl import-hpfeeds`: an hpfeeds 3.x JSON auth file as a declaration.
//!
//! hpfeeds 3.x delivers every publish on channel C from any key allowed to
//! publish on C to every key allowed to subscribe to C. The same delivery in
//! hpfriends: each key's owner becomes a user, keys stay as they are, and for
//! every channel each publishing owner shares it (`shares`, accepted) with
//! every other subscribing owner. Owners reading their own data need no share.

use std::collections::{BTreeMap, BTreeSet};

use hpfriends_graph::declare::{Declaration, ShareDecl};
use hpfriends_graph::{AuthKey, ShareKind, Target};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct HpfeedsKey {
    owner: Option<String>,
    secret: String,
    #[serde(default)]
    pubchans: Vec<String>,
    #[serde(default)]
    subchans: Vec<String>,
}

pub fn from_hpfeeds_auth(json: &str) -> anyhow::Result<Declaration> {
    let keys: BTreeMap<String, HpfeedsKey> = serde_json::from_str(json).map_err(|e| {
        anyhow::anyhow!("not an hpfeeds auth file ({{ident: {{owner, secret, pubchans, subchans}}}}): {e}")
    })?;
    let mut decl = Declaration::default();
    let mut publishers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut subscribers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut users = BTreeSet::new();
    for (ident, k) in &keys {
        // hpfeeds 3.x keys without an owner each become their own user.
        let owner = k.owner.clone().unwrap_or_else(|| ident.clone());
        users.insert(owner.clone());
        for c in &k.pubchans {
            publishers.entry(c).or_default().insert(owner.clone());
        }
        for c in &k.subchans {
            subscribers.entry(c).or_default().insert(owner.clone());
        }
        decl.keys.push(AuthKey {
            ident: ident.clone(),
            secret: k.secret.clone(),
            owner,
            publish: k.pubchans.clone(),
            subscribe: k.subchans.clone(),
            resume: false,
        });
    }
    for (channel, pubs) in &publishers {
        for p in pubs {
            for s in subscribers.get(channel).into_iter().flatten().filter(|s| *s != p) {
                decl.shares.push(ShareDecl {
                    from: p.clone(),
                    to: Target::User(s.clone()),
                    channel: channel.to_string(),
                    kind: ShareKind::Shares,
                    accepted: true,
                    with_history: false,
                    filter: None,
                });
            }
        }
    }
    decl.users = users.into_iter().collect();
    Ok(decl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpfriends_graph::declare::plan;
    use hpfriends_graph::{Command, Graph, SharingIndex};

    #[test]
    fn given_hpfeeds_file_then_delivery_matches_global_channels() {
        let json = r#"{
          "sensor1": {"owner": "jojo", "secret": "a", "pubchans": ["dionaea.captures"], "subchans": []},
          "sensor2": {"owner": "mark", "secret": "b", "pubchans": ["dionaea.captures"], "subchans": []},
          "reader":  {"owner": "alice", "secret": "c", "pubchans": [], "subchans": ["dionaea.captures"]},
          "self":    {"owner": "jojo", "secret": "d", "pubchans": [], "subchans": ["dionaea.captures"]},
          "other":   {"owner": "eve", "secret": "e", "pubchans": [], "subchans": ["other.chan"]}
        }"#;
        let decl = from_hpfeeds_auth(json).unwrap();
        let mut g = Graph::new();
        g.apply(&Command::Batch { commands: plan(&decl, &g).unwrap() }).unwrap();
        let idx = SharingIndex::build(&g);
        // Every publisher reaches every subscriber of the channel, as before.
        for p in ["jojo", "mark"] {
            assert!(idx.may_read_by_name(&g, p, "alice", "dionaea.captures"));
            assert!(idx.may_read_by_name(&g, p, "jojo", "dionaea.captures"));
            assert!(!idx.may_read_by_name(&g, p, "eve", "dionaea.captures"));
        }
        assert_eq!(g.key("sensor1").unwrap().owner, "jojo");
        assert_eq!(g.keys().count(), 5);
    }

    #[test]
    fn given_garbage_then_error_says_what_was_expected() {
        let err = from_hpfeeds_auth("[1,2]").unwrap_err().to_string();
        assert!(err.contains("hpfeeds auth file"), "{err}");
    }
}
