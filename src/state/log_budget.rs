//! How many request-error lines a worker writes a second. A dead upstream under load
//! fails thousands of requests a second; a line for each would flood the journal (whose
//! own rate limit then drops every other message, the reload and health lines included).
//! Past the budget, lines are counted and the next line written says how many were left
//! out; `/metrics` counts every failure regardless.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines per second per worker.
const PER_SECOND: u32 = 20;

pub struct LogBudget {
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    written: u32,
    left_out: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget {
            window: Mutex::new(Window {
                started: Instant::now(),
                written: 0,
                left_out: 0,
            }),
        }
    }
}

impl LogBudget {
    /// Whether a line may be written now, and if so how many were left out before it.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let Ok(mut w) = self.window.lock() else {
            return Some(0);
        };
        if now.duration_since(w.started) >= Duration::from_secs(1) {
            w.started = now;
            w.written = 0;
        }
        if w.written >= PER_SECOND {
            w.left_out += 1;
            return None;
        }
        w.written += 1;
        Some(std::mem::take(&mut w.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_counted_and_reported_with_the_next_one() {
        let budget = LogBudget::default();
        let start = Instant::now();
        for _ in 0..PER_SECOND {
            assert_eq!(budget.admit(start), Some(0));
        }
        for _ in 0..500 {
            assert_eq!(budget.admit(start + Duration::from_millis(500)), None);
        }
        assert_eq!(budget.admit(start + Duration::from_millis(1001)), Some(500));
        assert_eq!(budget.admit(start + Duration::from_millis(1002)), Some(0));
    }
}
