//! Latency samples with bounded memory (reservoir sampling), percentiles, and the server RSS sampler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Latency samples in microseconds of one thread. Keeps every sample up to `cap`, then a uniform
/// random subset of `cap` (Algorithm R), so memory stays bounded on long runs. The maximum is exact.
pub struct Reservoir {
    cap: usize,
    seen: u64,
    max: u32,
    rng: u64,
    samples: Vec<u32>,
}

impl Reservoir {
    pub fn new(cap: usize, seed: u64) -> Self {
        Self {
            cap: cap.max(1),
            seen: 0,
            max: 0,
            // xorshift needs a non-zero state.
            rng: seed | 1,
            samples: Vec::new(),
        }
    }

    pub fn record(&mut self, micros: u32) {
        self.seen += 1;
        self.max = self.max.max(micros);
        if self.samples.len() < self.cap {
            self.samples.push(micros);
            return;
        }
        let slot = self.next_random() % self.seen;
        if let Some(s) = self.samples.get_mut(slot as usize) {
            *s = micros;
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    pub fn into_parts(self) -> (Vec<u32>, u64, u32) {
        (self.samples, self.seen, self.max)
    }
}

/// PUBACK latency figures in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Acks measured (not all of them are kept when sampling kicked in).
    pub count: u64,
    /// Samples kept and sorted.
    pub kept: usize,
}

/// Merges per-thread samples. Threads that hit their cap kept a uniform subset of their own
/// stream; with evenly spread devices the merged set stays representative.
pub fn latency(parts: Vec<(Vec<u32>, u64, u32)>) -> Option<Latency> {
    let count: u64 = parts.iter().map(|p| p.1).sum();
    if count == 0 {
        return None;
    }
    let max = parts.iter().map(|p| p.2).max().unwrap_or(0);
    let mut all: Vec<u32> = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
    for (samples, _, _) in parts {
        all.extend_from_slice(&samples);
    }
    all.sort_unstable();
    let rank = |q: f64| -> f64 {
        // Nearest-rank percentile.
        let n = all.len();
        let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        f64::from(all[idx]) / 1000.0
    };
    Some(Latency {
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        max: f64::from(max) / 1000.0,
        count,
        kept: all.len(),
    })
}

/// VmRSS of a process in KiB, from /proc/PID/status.
pub fn read_rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every 500 ms on its own thread until stopped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(Instant, u64)>>,
}

impl RssSampler {
    /// Samples every `period` until [`RssSampler::finish`].
    pub fn start(pid: u32, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let pid = pid.to_string();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some(kb) = read_rss_kb(&pid) {
                    samples.push((Instant::now(), kb));
                }
                // Sleep in small steps so stopping is prompt.
                let until = Instant::now() + period;
                while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(period.min(Duration::from_millis(20)));
                }
            }
            samples
        });
        Self { stop, handle }
    }

    pub fn finish(self) -> Vec<(Instant, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// min / avg / max of the samples taken in `[from, to]`, in KiB.
pub fn rss_window(
    samples: &[(Instant, u64)],
    from: Instant,
    to: Instant,
) -> Option<(u64, u64, u64)> {
    let window: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .map(|(_, kb)| *kb)
        .collect();
    if window.is_empty() {
        return None;
    }
    let min = *window.iter().min()?;
    let max = *window.iter().max()?;
    let avg = window.iter().sum::<u64>() / window.len() as u64;
    Some((min, avg, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_is_bounded_and_keeps_max() {
        let mut r = Reservoir::new(100, 7);
        for i in 0..10_000u32 {
            r.record(i);
        }
        let (samples, seen, max) = r.into_parts();
        assert_eq!(samples.len(), 100);
        assert_eq!(seen, 10_000);
        assert_eq!(max, 9_999);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let l = latency(vec![((1..=100).map(|v| v * 1000).collect(), 100, 100_000)]).unwrap();
        assert_eq!(l.p50, 50.0);
        assert_eq!(l.p90, 90.0);
        assert_eq!(l.p99, 99.0);
        assert_eq!(l.max, 100.0);
    }
}
