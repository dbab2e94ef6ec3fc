//! Rate-limited log lines: a line that input can repeat at will (a refused CONNECT, an invalid
//! payload, a rule's log node) is written at most `per_interval` times per interval, and the next
//! line written says how many were held back.

use std::sync::Mutex;

/// Lets `per_interval` lines through per interval; usable as a `static`.
pub struct LogLimiter {
    interval_ms: u64,
    per_interval: u32,
    state: Mutex<Window>,
}

struct Window {
    /// Epoch milliseconds at which the current window ends.
    end: u64,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(interval_ms: u64, per_interval: u32) -> Self {
        Self {
            interval_ms,
            per_interval,
            state: Mutex::new(Window {
                end: 0,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// One line per second.
    pub const fn per_second() -> Self {
        Self::new(1000, 1)
    }

    /// `Some(lines held back before this one)` when a line may be written now; `None` (and the
    /// line counted as held back) otherwise.
    pub fn allow(&self) -> Option<u64> {
        let now = u64::try_from(crate::domain::now_ms()).unwrap_or(0);
        self.allow_at(now)
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now >= w.end {
            w.end = now.saturating_add(self.interval_ms);
            w.used = 0;
        }
        if w.used < self.per_interval {
            w.used += 1;
            return Some(std::mem::take(&mut w.suppressed));
        }
        w.suppressed += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimiter;

    #[test]
    fn lines_per_interval_and_the_rest_counted() {
        let limiter = LogLimiter::new(1000, 3);
        let t = 1_000_000;
        assert_eq!(limiter.allow_at(t), Some(0));
        assert_eq!(limiter.allow_at(t + 1), Some(0));
        assert_eq!(limiter.allow_at(t + 2), Some(0));
        for i in 0..1000 {
            assert_eq!(limiter.allow_at(t + 3 + i % 900), None);
        }
        // The next window's first line carries the count.
        assert_eq!(limiter.allow_at(t + 1000), Some(1000));
        assert_eq!(limiter.allow_at(t + 1001), Some(0));
    }

    #[test]
    fn the_clock_is_the_real_one() {
        let limiter = LogLimiter::new(3_600_000, 1);
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
    }
}
