//! Pre-Vote (Raft thesis §9.6), which openraft 0.9 lacks: a voter that has
//! not heard from a leader first asks the other voters whether they would
//! vote for it, and starts a real election (a new term) only if a majority
//! says yes. A voter says yes only if it has not heard from a leader within
//! the leader lease itself and the asker's log is at least as complete as
//! its own. So a node cut off from the cluster never raises its term, and
//! when the partition heals it follows the working leader instead of
//! deposing it (a higher term in any answer makes a leader step down).
//!
//! openraft's own election timer is off (`enable_elect: false`); [`run`] is
//! the timer. The timing is openraft's: a voter that followed a leader waits
//! the lease plus a random election timeout after the leader's last message.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cluster_tls::ClusterTls;
use crate::grpc::Signals;
use crate::network::{connect, decode, encode, PeerRpc};
use crate::store::LogStore;
use crate::{LogId, NodeId, Raft};

/// Asked of every other voter before an election.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId>,
}

/// Granted, or why not.
pub type PreVoteOutcome = Result<(), String>;

/// The election timers (as openraft's `Config` takes them).
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

impl Timers {
    /// openraft's leader lease: a voter that heard from a leader within it
    /// refuses to vote for anyone else.
    fn lease(&self) -> Duration {
        self.election_max
    }

    fn random_election_timeout(&self) -> Duration {
        let spread = (self.election_max - self.election_min).as_millis() as u64;
        self.election_min + Duration::from_millis(rand::random::<u64>() % spread.max(1))
    }

    /// How long a pre-vote round waits for the answers.
    fn round(&self) -> Duration {
        self.heartbeat * 3
    }
}

/// What a voter knows of its leader when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub leads: bool,
    /// Since the last message of a leader this node follows (`None`: none).
    pub leader_heard: Option<Duration>,
}

/// Whether this voter would vote for the asker now.
pub(crate) fn answer(
    seen: Seen,
    own_last_log_id: Option<LogId>,
    request: &PreVoteRequest,
    timers: Timers,
) -> PreVoteOutcome {
    if seen.leads {
        return Err("this node leads".into());
    }
    if let Some(heard) = seen.leader_heard.filter(|h| *h <= timers.lease()) {
        return Err(format!("heard from the leader {} ms ago", heard.as_millis()));
    }
    if request.last_log_id < own_last_log_id {
        return Err(format!(
            "the candidate's log ends at {:?}, this node's at {:?}",
            request.last_log_id.map(|l| l.index),
            own_last_log_id.map(|l| l.index)
        ));
    }
    Ok(())
}

/// A majority of each configuration (two during a membership change) granted.
pub(crate) fn quorum(configs: &[Vec<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    configs.iter().all(|voters| voters.iter().filter(|v| granted.contains(v)).count() * 2 > voters.len())
}

/// What this node knows of its leader, read from openraft.
pub(crate) async fn seen(raft: &Raft) -> Option<Seen> {
    raft.with_raft_state(|st| Seen {
        leads: st.server_state == ServerState::Leader,
        leader_heard: st.vote_ref().is_committed().then(|| st.vote_last_modified()).flatten().map(|at| at.elapsed()),
    })
    .await
    .ok()
}

/// The election timer of a voter: asks the others first, then elects. Ends
/// when Raft shuts down.
pub(crate) async fn run(id: NodeId, raft: Raft, log: LogStore, tls: ClusterTls, signals: Arc<Signals>, timers: Timers) {
    let started = Instant::now();
    let mut peers: HashMap<NodeId, (String, PeerRpc)> = HashMap::new();
    let mut wait = timers.random_election_timeout();
    let mut last_attempt: Option<Instant> = None;
    loop {
        tokio::time::sleep(timers.heartbeat).await;
        let Ok(state) = raft
            .with_raft_state(move |st| {
                let effective = st.membership_state.effective();
                let vote = st.vote_ref();
                (
                    st.server_state,
                    effective.voter_ids().any(|v| v == id),
                    vote.is_committed(),
                    st.vote_last_modified(),
                    effective.get_joint_config().clone(),
                    effective
                        .membership()
                        .nodes()
                        .map(|(id, n)| (*id, n.cluster_addr.clone()))
                        .collect::<Vec<(NodeId, String)>>(),
                )
            })
            .await
        else {
            return;
        };
        let (server_state, voter, followed, changed, configs, addrs) = state;
        // Since the vote last changed or the leader last spoke (or since start).
        let quiet = changed.unwrap_or(started).max(started).elapsed();
        if server_state == ServerState::Leader || !voter || signals.handing_off.load(Ordering::Acquire) {
            continue;
        }
        // As openraft's own timer: a follower of a leader also waits out the lease.
        let due = if followed { timers.lease() + wait } else { wait };
        let since_attempt = last_attempt.map(|at| at.elapsed());
        if quiet < due || since_attempt.is_some_and(|s| s < wait) {
            continue;
        }
        last_attempt = Some(Instant::now());
        wait = timers.random_election_timeout();

        let last_log_id = match log.last_log_id() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("pre-vote: cannot read the last log id: {e}");
                continue;
            }
        };
        let request = PreVoteRequest { candidate: id, last_log_id };
        let mut granted = BTreeSet::from([id]);
        let mut asked = tokio::task::JoinSet::new();
        for (peer, addr) in addrs.into_iter().filter(|(p, _)| *p != id && configs.iter().flatten().any(|v| v == p)) {
            let rpc = match peers.get(&peer).filter(|(a, _)| *a == addr) {
                Some((_, rpc)) => rpc.clone(),
                None => match connect(&addr, tls.clone()) {
                    Ok(rpc) => {
                        peers.insert(peer, (addr, rpc.clone()));
                        rpc
                    }
                    Err(e) => {
                        tracing::debug!(peer, "pre-vote: cannot reach: {e}");
                        continue;
                    }
                },
            };
            asked.spawn(ask(peer, rpc, request.clone(), timers.round()));
        }
        let mut refusals = Vec::new();
        while let Some(Ok((peer, outcome))) = asked.join_next().await {
            match outcome {
                Ok(()) => {
                    granted.insert(peer);
                    if quorum(&configs, &granted) {
                        // No need to wait for a voter that does not answer.
                        break;
                    }
                }
                Err(Refused::Unanswered(why)) => {
                    // A new connection next time (see `network::PeerClient::call`).
                    peers.remove(&peer);
                    refusals.push(format!("node {peer}: {why}"));
                }
                Err(Refused::No(why)) => refusals.push(format!("node {peer}: {why}")),
            }
        }
        if quorum(&configs, &granted) {
            tracing::info!(?granted, "pre-vote won: starting an election");
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!("cannot start an election: {e}");
            }
        } else {
            tracing::debug!(?granted, ?refusals, "pre-vote lost: no election");
        }
    }
}

enum Refused {
    No(String),
    Unanswered(String),
}

/// One voter's answer within `within`.
async fn ask(
    peer: NodeId,
    mut rpc: PeerRpc,
    request: PreVoteRequest,
    within: Duration,
) -> (NodeId, Result<(), Refused>) {
    let outcome = match tokio::time::timeout(within, rpc.pre_vote(encode(&request))).await {
        Err(_) => Err(Refused::Unanswered(format!("no answer within {within:?}"))),
        // A v0.1.0 node has no pre-vote and votes as Raft always did: count
        // it as yes, so a rolling upgrade elects exactly as before.
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(()),
        Ok(Err(status)) => Err(Refused::Unanswered(status.message().to_string())),
        Ok(Ok(reply)) => match decode::<PreVoteOutcome>(reply.get_ref()) {
            Ok(outcome) => outcome.map_err(Refused::No),
            Err(e) => Err(Refused::No(format!("cannot read the answer: {e}"))),
        },
    };
    (peer, outcome)
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    const TIMERS: Timers = Timers {
        heartbeat: Duration::from_millis(100),
        election_min: Duration::from_millis(400),
        election_max: Duration::from_millis(800),
    };

    fn log_id(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn ask_with(last: Option<LogId>) -> PreVoteRequest {
        PreVoteRequest { candidate: 3, last_log_id: last }
    }

    #[test]
    fn given_a_leader_heard_within_the_lease_then_the_pre_vote_is_refused() {
        let seen = Seen { leads: false, leader_heard: Some(Duration::from_millis(150)) };
        let err = answer(seen, log_id(2, 10), &ask_with(log_id(2, 10)), TIMERS).unwrap_err();
        assert!(err.contains("heard from the leader 150 ms ago"), "{err}");
        let leader = Seen { leads: true, leader_heard: Some(Duration::ZERO) };
        assert_eq!(answer(leader, log_id(2, 10), &ask_with(log_id(9, 99)), TIMERS).unwrap_err(), "this node leads");
    }

    #[test]
    fn given_no_leader_heard_then_granted_only_to_a_log_at_least_as_complete() {
        for seen in [
            Seen { leads: false, leader_heard: None },
            Seen { leads: false, leader_heard: Some(Duration::from_millis(801)) },
        ] {
            assert_eq!(answer(seen, log_id(2, 10), &ask_with(log_id(2, 10)), TIMERS), Ok(()));
            assert_eq!(answer(seen, log_id(2, 10), &ask_with(log_id(3, 4)), TIMERS), Ok(()), "a later term wins");
            let err = answer(seen, log_id(2, 10), &ask_with(log_id(2, 9)), TIMERS).unwrap_err();
            assert!(err.contains("ends at Some(9), this node's at Some(10)"), "{err}");
            assert!(answer(seen, log_id(2, 10), &ask_with(None), TIMERS).is_err());
            assert_eq!(answer(seen, None, &ask_with(None), TIMERS), Ok(()));
        }
    }

    #[test]
    fn given_joint_configurations_then_a_majority_of_each_is_needed() {
        let granted = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<_>>();
        assert!(quorum(&[vec![1]], &granted(&[1])));
        assert!(quorum(&[vec![1, 2, 3]], &granted(&[1, 3])));
        assert!(!quorum(&[vec![1, 2, 3]], &granted(&[1])));
        assert!(!quorum(&[vec![1, 2, 3, 4]], &granted(&[1, 2])), "half is not a majority");
        assert!(!quorum(&[vec![1, 2, 3], vec![3, 4, 5]], &granted(&[1, 2, 3])));
        assert!(quorum(&[vec![1, 2, 3], vec![3, 4, 5]], &granted(&[1, 3, 4])));
    }
}
