//! Audience: who can read what a user publishes, channel by channel, with
//! the path that lets them (from the sharing index), and who a share would add.

use std::collections::BTreeSet;

use hpfriends_graph::{explain_all, readers_through, Explanation, GraphError, Target};

use super::AppError;
use crate::state::AppState;

pub struct Audience {
    /// Every channel I publish on, with its number of readers.
    pub channels: Vec<(String, usize)>,
    /// The chosen channel's readers.
    pub chosen: Option<(String, Vec<Reader>)>,
}

/// One reader of the chosen channel.
pub struct Reader {
    pub name: String,
    /// A path that lets them read (breadth-first, with its shares' filters).
    pub path: String,
    /// What they get: `None` everything; else their chains of filters, best
    /// first (docs/sharing.md, "Several paths").
    pub filtered: Option<Vec<String>>,
}

/// The channels `me` publishes on with their readers' count, and the
/// readers of `wanted` (else the first channel) with their paths.
pub fn of(state: &AppState, me: &str, wanted: &str) -> Audience {
    state.node.read_index(|g, index| {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for k in g.keys().filter(|k| k.owner == me) {
            names.extend(k.publish.iter().map(String::as_str));
        }
        names.extend(g.channels().filter(|c| g.out_shares(me, c).is_some()));
        let my_id = g.user_id(me);
        let count = |c: &str| match my_id.and_then(|id| index.readers(id, c).map(|r| (id, r))) {
            Some((id, readers)) => readers.len() - usize::from(readers.contains(id)),
            None => 0,
        };
        let channels: Vec<(String, usize)> = names.iter().map(|c| (c.to_string(), count(c))).collect();
        let chosen = names.iter().find(|c| **c == wanted).or(names.iter().next()).map(|channel| {
            // The readers the index holds, each with its path from one search.
            let mut paths = explain_all(g, me, channel);
            let mine = my_id.and_then(|id| index.readers(id, channel));
            let readers = index
                .reader_names(g, me, channel)
                .into_iter()
                .filter(|r| r != me)
                .map(|name| {
                    let hops = paths.remove(&name).unwrap_or_default();
                    let routes = g.user_id(&name).and_then(|id| mine?.routes(id));
                    let filtered = routes.map(|r| {
                        let chain = |c: &hpfriends_graph::Chain| {
                            let steps =
                                c.steps().iter().map(|s| format!("{} → {}: {}", s.from, s.to, s.filter().spec()));
                            steps.collect::<Vec<_>>().join(", then ")
                        };
                        r.chains().iter().map(chain).collect()
                    });
                    Reader { name, path: Explanation::Path { hops }.to_string(), filtered }
                })
                .collect();
            (channel.to_string(), readers)
        });
        Audience { channels, chosen }
    })
}

/// Who an accepted share would add to my readers. Only those it reaches
/// directly are named (the user, or the group's members when I am in the
/// group): whom the recipient relays to is theirs to tell; those are counted,
/// and named on the Audience page once the share is accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Preview {
    pub named: Vec<String>,
    pub more: usize,
}

pub fn preview(state: &AppState, me: &str, to: &str, channel: &str) -> Result<Preview, AppError> {
    let to = Target::parse(to);
    state.node.read_index(|g, index| {
        let direct: BTreeSet<&str> = match &to {
            Target::User(u) if !g.has_user(u) => return Err(GraphError::UnknownUser(u.clone()).into()),
            Target::User(u) => BTreeSet::from([u.as_str()]),
            Target::Group(x) => match g.group(x) {
                None => return Err(GraphError::UnknownGroup(x.clone()).into()),
                Some(grp) if grp.admins.contains(me) || grp.members.get(me) == Some(&true) => {
                    grp.accepted_members().collect()
                }
                Some(_) => BTreeSet::new(),
            },
        };
        let now: BTreeSet<String> = index.reader_names(g, me, channel).into_iter().collect();
        let added: Vec<String> =
            readers_through(g, me, &to, channel).into_iter().filter(|r| !now.contains(r)).collect();
        let (named, others): (Vec<String>, Vec<String>) = added.into_iter().partition(|r| direct.contains(r.as_str()));
        Ok(Preview { named, more: others.len() })
    })
}
