//! A linearizability checker for one register, as Porcupine checks one: the
//! search of Wing and Gong with Lowe's memo of visited states. A history is
//! linearizable if its operations can be put in one order, each taking
//! effect at a moment between its call and its return, in which every read
//! returns the value of the last write before it.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write(String),
    /// What the read returned.
    Read(String),
}

/// One operation as a client saw it; times in any unit, the same for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub op: Op,
    pub call: u64,
    /// `None`: no answer (a timeout, a refusal that may still be committed):
    /// a write then may take effect at any time after its call, or never.
    /// A read without an answer says nothing and is left out.
    pub ret: Option<u64>,
}

/// Ok, or why no order exists (how far the search got).
pub fn check(history: &[Event], initial: &str) -> Result<(), String> {
    let read: HashSet<&String> = history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Read(v) if e.ret.is_some() => Some(v),
            _ => None,
        })
        .collect();
    // A write without an answer whose value nobody read may as well never
    // have happened: leaving it out keeps the search small.
    let mut ops: Vec<&Event> = history
        .iter()
        .filter(|e| match &e.op {
            Op::Write(v) => e.ret.is_some() || read.contains(v),
            Op::Read(_) => e.ret.is_some(),
        })
        .collect();
    // Earliest call first: the order the search tries them in.
    ops.sort_by_key(|e| e.call);
    let n = ops.len();
    let answered = ops.iter().filter(|e| e.ret.is_some()).count();
    let mut placed = vec![0u64; n.div_ceil(64)];
    let is_placed = |placed: &[u64], i: usize| placed[i / 64] & (1 << (i % 64)) != 0;
    let flip = |placed: &mut [u64], i: usize| placed[i / 64] ^= 1 << (i % 64);

    let mut value = initial.to_string();
    let mut placed_answered = 0;
    // The operations placed so far, each with the value before it.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut seen: HashSet<(Vec<u64>, String)> = HashSet::new();
    let mut next = 0;
    let mut deepest = 0;
    loop {
        if placed_answered == answered {
            return Ok(());
        }
        // Only an operation called before every unplaced one returned can go next.
        let first_return =
            (0..n).filter(|i| !is_placed(&placed, *i)).filter_map(|i| ops[i].ret).min().unwrap_or(u64::MAX);
        let mut advanced = false;
        for i in next..n {
            if is_placed(&placed, i) || ops[i].call >= first_return {
                continue;
            }
            let after = match &ops[i].op {
                Op::Write(v) => v.clone(),
                Op::Read(v) if *v == value => value.clone(),
                Op::Read(_) => continue,
            };
            flip(&mut placed, i);
            if seen.insert((placed.clone(), after.clone())) {
                stack.push((i, std::mem::replace(&mut value, after)));
                placed_answered += usize::from(ops[i].ret.is_some());
                deepest = deepest.max(placed_answered);
                next = 0;
                advanced = true;
                break;
            }
            flip(&mut placed, i);
        }
        if !advanced {
            let Some((i, before)) = stack.pop() else {
                return Err(format!(
                    "not linearizable: at most {deepest} of {answered} answered operations can be put in order"
                ));
            };
            flip(&mut placed, i);
            placed_answered -= usize::from(ops[i].ret.is_some());
            value = before;
            next = i + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &str, call: u64, ret: Option<u64>) -> Event {
        Event { op: Op::Write(v.into()), call, ret }
    }

    fn r(v: &str, call: u64, ret: u64) -> Event {
        Event { op: Op::Read(v.into()), call, ret: Some(ret) }
    }

    #[test]
    fn given_a_stale_read_after_a_newer_write_returned_then_not_linearizable() {
        let history = [w("1", 0, Some(1)), w("2", 2, Some(3)), r("1", 4, 5)];
        let err = check(&history, "0").unwrap_err();
        assert!(err.contains("at most 2 of 3"), "{err}");
    }

    #[test]
    fn given_a_read_that_saw_a_write_then_a_later_read_that_did_not_then_not_linearizable() {
        // The write is still running, but once a read saw it no later read may miss it.
        let history = [w("1", 0, Some(10)), r("1", 1, 2), r("0", 3, 4)];
        assert!(check(&history, "0").is_err());
        let history = [w("1", 0, Some(10)), r("0", 1, 2), r("1", 3, 4)];
        assert_eq!(check(&history, "0"), Ok(()));
    }

    #[test]
    fn given_concurrent_writes_then_reads_may_see_them_in_either_order_but_one_order_for_all() {
        let history = [w("1", 0, Some(10)), w("2", 0, Some(10)), r("2", 11, 12), r("2", 13, 14)];
        assert_eq!(check(&history, "0"), Ok(()));
        let history = [w("1", 0, Some(10)), w("2", 0, Some(10)), r("2", 1, 2), r("1", 3, 4), r("1", 11, 12)];
        assert_eq!(check(&history, "0"), Ok(()));
        let history = [w("1", 0, Some(10)), w("2", 0, Some(10)), r("2", 1, 2), r("1", 3, 4), r("2", 11, 12)];
        assert!(check(&history, "0").is_err(), "2, then 1, then 2 again needs a third write");
    }

    #[test]
    fn given_a_write_without_an_answer_then_it_took_effect_once_or_never() {
        assert_eq!(check(&[w("1", 0, None), r("1", 5, 6)], "0"), Ok(()));
        assert_eq!(check(&[w("1", 0, None), r("0", 5, 6)], "0"), Ok(()));
        assert!(check(&[w("1", 0, None), r("1", 5, 6), r("0", 7, 8)], "0").is_err());
        assert!(check(&[r("1", 0, 1), w("1", 2, None)], "0").is_err(), "read before the write was called");
        assert!(check(&[r("7", 0, 1)], "0").is_err(), "a value never written");
    }

    #[test]
    fn given_hundreds_of_overlapping_operations_then_the_memo_keeps_the_search_short() {
        // Five clients, each write overlapping the four others'; reads see the last.
        let mut history = Vec::new();
        for round in 0..60u64 {
            for client in 0..5u64 {
                history.push(w(&format!("{round}-{client}"), round * 100 + client, Some(round * 100 + 50)));
            }
            history.push(r(&format!("{round}-3"), round * 100 + 60, round * 100 + 70));
        }
        assert_eq!(check(&history, "0"), Ok(()));
        history.push(r("0-1", 6_100, 6_110));
        assert!(check(&history, "0").is_err());
    }
}
