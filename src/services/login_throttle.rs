//! Failed logins counted per client address (per node, in memory, bounded): past the configured
//! number within a window the address is refused until the window ends, before any password is
//! checked, so one client cannot keep the password hasher busy for everyone. Attempts are counted
//! when they start (concurrent ones too) and given back when they were no failure.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// How often, at most, a full address table is reported in the log (ms).
const FULL_LOG_EVERY_MS: i64 = 60_000;

#[derive(Clone, Copy, Debug)]
struct Window {
    /// The window's first failure (ms).
    start: i64,
    failures: u32,
}

pub struct AddressThrottle {
    /// 0 turns the throttle off.
    max_failures: u32,
    window_ms: i64,
    capacity: usize,
    windows: Mutex<HashMap<IpAddr, Window>>,
    last_full_log: AtomicI64,
}

/// The address failures are counted under: IPv4 as it is (also when mapped into IPv6), IPv6 by
/// its /64 network, which one client typically holds whole.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AddressThrottle {
    pub fn new(max_failures: u32, window_secs: u64, capacity: usize) -> Self {
        Self {
            max_failures,
            window_ms: i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            capacity: capacity.max(1),
            windows: Mutex::new(HashMap::new()),
            last_full_log: AtomicI64::new(i64::MIN),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        // A panic while holding the lock cannot leave a window half-written; keep using it.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a login attempt of `addr` before its password is checked, so that concurrent
    /// attempts count too. Refused, with the seconds until the address may try again, when its
    /// window is used up; else true when this attempt is the one that uses it up. An attempt that
    /// turns out not to be a failure is given back with `forgive`.
    pub fn attempt(&self, addr: IpAddr, now: i64) -> Result<bool, u64> {
        if self.max_failures == 0 {
            return Ok(false);
        }
        let k = key(addr);
        let mut windows = self.lock();
        if !windows.contains_key(&k) && windows.len() >= self.capacity {
            self.make_room(&mut windows, now);
        }
        let w = windows.entry(k).or_insert(Window {
            start: now,
            failures: 0,
        });
        let end = w.start.saturating_add(self.window_ms);
        if now >= end {
            *w = Window {
                start: now,
                failures: 0,
            };
        } else if w.failures >= self.max_failures {
            return Err(u64::try_from((end - now + 999) / 1000).unwrap_or(1).max(1));
        }
        w.failures += 1;
        Ok(w.failures == self.max_failures)
    }

    /// Gives back the attempt `addr` made at `at` (it was no failed password check), unless its
    /// window has ended since.
    pub fn forgive(&self, addr: IpAddr, at: i64) {
        if self.max_failures == 0 {
            return;
        }
        if let Some(w) = self.lock().get_mut(&key(addr))
            && w.start <= at
        {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    /// Drops ended windows; when none has ended, the oldest one.
    fn make_room(&self, windows: &mut HashMap<IpAddr, Window>, now: i64) {
        let window_ms = self.window_ms;
        windows.retain(|_, w| now < w.start.saturating_add(window_ms));
        if windows.len() < self.capacity {
            return;
        }
        if let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k) {
            windows.remove(&oldest);
        }
        let last = self.last_full_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= FULL_LOG_EVERY_MS
            && self
                .last_full_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                limit = self.capacity,
                "auth.address_max_tracked reached: failed logins come from more addresses than are \
                 remembered; the oldest are forgotten"
            );
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let t = AddressThrottle::new(3, 10, 100);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(t.attempt(a, 1_000), Ok(false));
        assert_eq!(t.attempt(a, 2_000), Ok(false));
        assert_eq!(
            t.attempt(a, 3_000),
            Ok(true),
            "the third uses the window up"
        );
        assert_eq!(t.attempt(a, 3_000), Err(8));
        assert_eq!(
            t.attempt(b, 3_000),
            Ok(false),
            "other addresses are not affected"
        );
        assert_eq!(t.attempt(a, 10_999), Err(1));
        assert_eq!(t.attempt(a, 11_000), Ok(false), "a new window starts");
    }

    #[test]
    fn forgiven_attempts_do_not_count() {
        let t = AddressThrottle::new(2, 10, 100);
        let a = ip("10.0.0.1");
        for at in 0..5 {
            assert_eq!(t.attempt(a, at), Ok(false));
            t.forgive(a, at);
        }
        assert_eq!(t.attempt(a, 5), Ok(false));
        assert_eq!(t.attempt(a, 6), Ok(true));
        assert!(t.attempt(a, 7).is_err());
        // An attempt of an ended window is not given back to the next one.
        assert_eq!(t.attempt(a, 20_000), Ok(false));
        t.forgive(a, 6);
        assert_eq!(t.attempt(a, 20_001), Ok(true));
    }

    #[test]
    fn ipv6_counts_by_network_and_mapped_ipv4_as_ipv4() {
        let t = AddressThrottle::new(2, 60, 100);
        t.attempt(ip("2001:db8:1:2::1"), 0).unwrap();
        t.attempt(ip("2001:db8:1:2:ffff::9"), 0).unwrap();
        assert!(t.attempt(ip("2001:db8:1:2::77"), 0).is_err());
        assert!(t.attempt(ip("2001:db8:1:3::1"), 0).is_ok());
        t.attempt(ip("::ffff:192.0.2.1"), 0).unwrap();
        t.attempt(ip("192.0.2.1"), 0).unwrap();
        assert!(t.attempt(ip("192.0.2.1"), 0).is_err());
    }

    #[test]
    fn the_table_stays_within_its_capacity() {
        let t = AddressThrottle::new(5, 60, 4);
        for i in 0..100u8 {
            t.attempt(IpAddr::from([10, 0, 1, i]), i64::from(i))
                .unwrap();
            assert!(t.tracked() <= 4);
        }
        // The newest addresses are the ones remembered.
        for _ in 0..4 {
            t.attempt(IpAddr::from([10, 0, 1, 99]), 200).unwrap();
        }
        assert!(t.attempt(IpAddr::from([10, 0, 1, 99]), 200).is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        let t = AddressThrottle::new(0, 60, 4);
        for _ in 0..10 {
            assert_eq!(t.attempt(ip("10.0.0.1"), 0), Ok(false));
        }
    }
}
