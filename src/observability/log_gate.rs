//! Log lines that input can cause once per message, let through at a bounded rate.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lets at most `per_window` lines through per `window`; counts the ones it holds back.
pub struct LogGate {
    per_window: u32,
    window: Duration,
    state: Mutex<GateState>,
}

struct GateState {
    start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl LogGate {
    pub const fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            state: Mutex::new(GateState {
                start: None,
                passed: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being the lines held back since the last one
    /// that passed; `None` when this one is held back.
    pub fn pass(&self) -> Option<u64> {
        self.pass_at(Instant::now())
    }

    fn pass_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.start
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window)
        {
            s.start = Some(now);
            s.passed = 0;
        }
        if s.passed < self.per_window {
            s.passed += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

/// Refused device or REST input (a bound broken, data the database cannot hold): WARN, a few lines
/// per second at most across the node, each naming the bound.
pub fn refused_input(source: &str, entity: &dyn std::fmt::Display, reason: &dyn std::fmt::Display) {
    static GATE: LogGate = LogGate::new(5, Duration::from_secs(1));
    if let Some(suppressed) = GATE.pass() {
        metrics::counter!("ferroboard_refused_input_logs_suppressed_total").increment(suppressed);
        tracing::warn!(
            source,
            entity = %entity,
            suppressed,
            "input refused: {}",
            reason.to_string().escape_debug()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_pass_up_to_the_bound_per_window_and_the_rest_are_counted() {
        let gate = LogGate::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(gate.pass_at(t0), Some(0));
        assert_eq!(gate.pass_at(t0), Some(0));
        assert_eq!(gate.pass_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(gate.pass_at(t0 + Duration::from_secs(9)), None);
        let next = t0 + Duration::from_secs(10);
        assert_eq!(
            gate.pass_at(next),
            Some(2),
            "the next window reports what was held back"
        );
        assert_eq!(gate.pass_at(next), Some(0));
        assert_eq!(gate.pass_at(next), None);
    }
}
