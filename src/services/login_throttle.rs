//! Failed logins counted per client address (per node, in memory, bounded): past the configured
//! number within a window the address is refused until the window ends, before any password is
//! checked, so one client cannot keep the password hasher busy for everyone.

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

    /// Seconds until `addr` may try again, when it is refused now.
    pub fn refused(&self, addr: IpAddr, now: i64) -> Option<u64> {
        if self.max_failures == 0 {
            return None;
        }
        let windows = self.lock();
        let w = windows.get(&key(addr))?;
        let end = w.start.saturating_add(self.window_ms);
        (w.failures >= self.max_failures && now < end)
            .then(|| u64::try_from((end - now + 999) / 1000).unwrap_or(1).max(1))
    }

    /// Counts a failed login of `addr`; true when this failure is the one that starts refusing it.
    pub fn failed(&self, addr: IpAddr, now: i64) -> bool {
        if self.max_failures == 0 {
            return false;
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
        if now >= w.start.saturating_add(self.window_ms) {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures == self.max_failures
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
        assert!(!t.failed(a, 1_000));
        assert!(!t.failed(a, 2_000));
        assert_eq!(t.refused(a, 2_000), None);
        assert!(t.failed(a, 3_000), "the third failure starts refusing");
        assert_eq!(t.refused(a, 3_000), Some(8));
        assert_eq!(
            t.refused(b, 3_000),
            None,
            "other addresses are not affected"
        );
        assert_eq!(t.refused(a, 10_999), Some(1));
        assert_eq!(t.refused(a, 11_000), None, "the window has ended");
        assert!(!t.failed(a, 11_000), "a new window starts");
        assert_eq!(t.refused(a, 11_000), None);
    }

    #[test]
    fn ipv6_counts_by_network_and_mapped_ipv4_as_ipv4() {
        let t = AddressThrottle::new(2, 60, 100);
        t.failed(ip("2001:db8:1:2::1"), 0);
        t.failed(ip("2001:db8:1:2:ffff::9"), 0);
        assert!(t.refused(ip("2001:db8:1:2::77"), 0).is_some());
        assert!(t.refused(ip("2001:db8:1:3::1"), 0).is_none());
        t.failed(ip("::ffff:192.0.2.1"), 0);
        t.failed(ip("192.0.2.1"), 0);
        assert!(t.refused(ip("192.0.2.1"), 0).is_some());
    }

    #[test]
    fn the_table_stays_within_its_capacity() {
        let t = AddressThrottle::new(5, 60, 4);
        for i in 0..100u8 {
            t.failed(IpAddr::from([10, 0, 1, i]), i64::from(i));
            assert!(t.tracked() <= 4);
        }
        // The newest addresses are the ones remembered.
        for _ in 0..4 {
            t.failed(IpAddr::from([10, 0, 1, 99]), 200);
        }
        assert!(t.refused(IpAddr::from([10, 0, 1, 99]), 200).is_some());
    }

    #[test]
    fn zero_turns_it_off() {
        let t = AddressThrottle::new(0, 60, 4);
        for _ in 0..10 {
            assert!(!t.failed(ip("10.0.0.1"), 0));
        }
        assert_eq!(t.refused(ip("10.0.0.1"), 0), None);
    }
}
