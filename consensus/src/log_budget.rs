//! Log lines about what an attacker can cause (refused connections, failed
//! logins) are capped per second, so they cannot flood the log.

use std::time::{Duration, Instant};

pub struct LogBudget {
    per_second: u32,
    second: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogBudget {
    pub fn per_second(per_second: u32) -> LogBudget {
        LogBudget { per_second, second: None, logged: 0, suppressed: 0 }
    }

    /// `Some(lines suppressed since the last one logged)` when a line may be logged now.
    pub fn take(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.second.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1)) {
            self.second = Some(now);
            self.logged = 0;
        }
        if self.logged >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_many_lines_then_only_the_budget_is_logged_per_second_and_the_rest_counted() {
        let mut budget = LogBudget::per_second(10);
        let logged = (0..1000).filter(|_| budget.take().is_some()).count();
        assert_eq!(logged, 10);
        assert_eq!(budget.suppressed, 990);
    }
}
