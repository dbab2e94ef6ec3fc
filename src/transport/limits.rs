//! Per-device rate limits (token buckets) and the `getSessionLimits` answer. As in ThingsBoard the
//! buckets belong to the device, not to its session: a reconnect does not refill them. The
//! devices' buckets live in a bounded map; an entry no session holds is forgotten once its
//! buckets are full again (forgetting it then changes nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LimitsConfig;
use crate::domain::DeviceId;

/// Devices whose buckets are remembered; beyond that, entries no session holds are forgotten,
/// the nearest to full first.
const MAX_TRACKED_DEVICES: usize = 100_000;

/// One `capacity:seconds` bucket, refilled continuously.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// When the bucket is full again at this rate.
    fn full_at(&self) -> Instant {
        // At most ~30 years ahead: far beyond any window, and no overflow of `Instant`.
        let missing = (self.capacity - self.tokens).max(0.0);
        let secs = (missing / self.per_sec).min(1e9);
        let wait = Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(1_000_000_000));
        self.last.checked_add(wait).unwrap_or(self.last)
    }
}

/// All buckets of one limit must admit a message.
#[derive(Debug)]
pub struct RateLimit {
    name: &'static str,
    buckets: Mutex<Vec<Bucket>>,
}

/// Parses `"20:1,600:60"`; empty means unlimited (None).
pub fn parse(spec: &str) -> Result<Option<Vec<(u64, u64)>>, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for entry in spec.split(',') {
        let (cap, secs) = entry
            .split_once(':')
            .ok_or_else(|| format!("rate limit entry '{entry}' is not capacity:seconds"))?;
        let cap: u64 = cap
            .parse()
            .map_err(|_| format!("bad capacity in '{entry}'"))?;
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("bad seconds in '{entry}'"))?;
        if cap == 0 || secs == 0 {
            return Err(format!(
                "rate limit entry '{entry}' must have capacity and seconds above 0"
            ));
        }
        if out.iter().any(|(_, s)| *s == secs) {
            return Err(format!("rate limit '{spec}' repeats the duration {secs}s"));
        }
        out.push((cap, secs));
    }
    Ok(Some(out))
}

impl RateLimit {
    fn new(name: &'static str, spec: Option<&str>) -> Option<Self> {
        let entries = parse(spec?).ok()??;
        let now = Instant::now();
        let buckets = entries
            .into_iter()
            .map(|(cap, secs)| Bucket {
                capacity: cap as f64,
                per_sec: cap as f64 / secs as f64,
                tokens: cap as f64,
                last: now,
            })
            .collect();
        Some(Self {
            name,
            buckets: Mutex::new(buckets),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Bucket>> {
        // Plain arithmetic under the lock: nothing can panic half-way.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When every bucket is full again.
    fn full_at(&self) -> Option<Instant> {
        self.lock().iter().map(Bucket::full_at).max()
    }

    /// Takes `n` tokens from every bucket, or none when any bucket lacks them.
    fn try_take(&self, n: f64) -> bool {
        let now = Instant::now();
        let mut buckets = self.lock();
        for b in buckets.iter_mut() {
            let elapsed = now.duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * b.per_sec).min(b.capacity);
            b.last = now;
        }
        if buckets.iter().any(|b| b.tokens < n) {
            return false;
        }
        for b in buckets.iter_mut() {
            b.tokens -= n;
        }
        true
    }
}

/// The limits of one device, shared by its sessions.
#[derive(Debug)]
pub struct SessionLimits {
    messages: Option<RateLimit>,
    telemetry_messages: Option<RateLimit>,
    telemetry_data_points: Option<RateLimit>,
}

impl SessionLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            messages: RateLimit::new("messages", config.messages.as_deref()),
            telemetry_messages: RateLimit::new(
                "telemetryMessages",
                config.telemetry_messages.as_deref(),
            ),
            telemetry_data_points: RateLimit::new(
                "telemetryDataPoints",
                config.telemetry_data_points.as_deref(),
            ),
        }
    }

    /// Telemetry and attribute posts: one telemetry message and `points` data points.
    pub fn admit_telemetry(&self, points: usize) -> Result<(), &'static str> {
        admit(&self.telemetry_messages, 1.0)?;
        admit(&self.telemetry_data_points, points as f64)
    }

    /// Everything else: one message.
    pub fn admit_message(&self) -> Result<(), &'static str> {
        admit(&self.messages, 1.0)
    }

    /// Whether every bucket is full at `now`: the entry is as good as a new one.
    fn refilled(&self, now: Instant) -> bool {
        self.full_at().is_none_or(|at| at <= now)
    }

    fn full_at(&self) -> Option<Instant> {
        [
            &self.messages,
            &self.telemetry_messages,
            &self.telemetry_data_points,
        ]
        .into_iter()
        .flatten()
        .filter_map(RateLimit::full_at)
        .max()
    }
}

/// The rate-limit state of every device that connected recently, bounded.
#[derive(Debug)]
pub struct DeviceLimits {
    config: LimitsConfig,
    max: usize,
    devices: Mutex<HashMap<DeviceId, Arc<SessionLimits>>>,
}

impl DeviceLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self::with_capacity(config, MAX_TRACKED_DEVICES)
    }

    fn with_capacity(config: &LimitsConfig, max: usize) -> Self {
        Self {
            config: config.clone(),
            max,
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// The device's buckets: those of its earlier sessions while they are not full again.
    pub fn of(&self, device: DeviceId) -> Arc<SessionLimits> {
        let unlimited = [
            &self.config.messages,
            &self.config.telemetry_messages,
            &self.config.telemetry_data_points,
        ]
        .iter()
        .all(|spec| spec.as_deref().is_none_or(|s| s.trim().is_empty()));
        if unlimited {
            // Nothing to remember.
            return Arc::new(SessionLimits::new(&self.config));
        }
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limits) = devices.get(&device) {
            return limits.clone();
        }
        if devices.len() >= self.max {
            let now = Instant::now();
            // Held by a live session (the map's own reference is the other one) or not refilled.
            devices.retain(|_, l| Arc::strong_count(l) > 1 || !l.refilled(now));
            if devices.len() >= self.max {
                let nearest = devices
                    .iter()
                    .filter(|(_, l)| Arc::strong_count(l) == 1)
                    .min_by_key(|(_, l)| l.full_at())
                    .map(|(d, _)| *d);
                // None: every entry belongs to a live session, bounded by the sessions themselves.
                if let Some(d) = nearest {
                    tracing::warn!(
                        limit = self.max,
                        "rate-limit state of more than {} devices; forgetting the one nearest to full",
                        self.max
                    );
                    devices.remove(&d);
                }
            }
        }
        let limits = Arc::new(SessionLimits::new(&self.config));
        devices.insert(device, limits.clone());
        limits
    }

    /// Devices whose state is remembered.
    pub fn len(&self) -> usize {
        self.devices.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn admit(limit: &Option<RateLimit>, n: f64) -> Result<(), &'static str> {
    match limit {
        Some(l) if !l.try_take(n) => Err(l.name),
        _ => Ok(()),
    }
}

/// The `getSessionLimits` reply; a gateway's also has `gatewayRateLimits`, the buckets its
/// devices share (`rateLimits` are then the gateway's own, the per-device ones).
pub fn session_limits_json(
    max_payload: u32,
    max_inflight: u16,
    config: &LimitsConfig,
    gateway: bool,
) -> serde_json::Value {
    let limits = |c: &LimitsConfig| {
        serde_json::json!({
            "messages": c.messages,
            "telemetryMessages": c.telemetry_messages,
            "telemetryDataPoints": c.telemetry_data_points,
        })
    };
    let mut reply = serde_json::json!({
        "maxPayloadSize": max_payload,
        "maxInflightMessages": max_inflight,
        "rateLimits": limits(config),
    });
    if gateway {
        reply["gatewayRateLimits"] = limits(&config.of_gateway_devices());
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_are_told_the_limits_their_devices_share() {
        let config = LimitsConfig {
            messages: Some("10:1".into()),
            gateway_telemetry_data_points: Some("500:1".into()),
            ..LimitsConfig::default()
        };
        let device = session_limits_json(1024, 8, &config, false);
        assert!(device.get("gatewayRateLimits").is_none());
        let gateway = session_limits_json(1024, 8, &config, true);
        assert_eq!(
            gateway["rateLimits"],
            serde_json::json!({"messages": "10:1", "telemetryMessages": null, "telemetryDataPoints": null})
        );
        assert_eq!(
            gateway["gatewayRateLimits"],
            serde_json::json!({"messages": null, "telemetryMessages": null, "telemetryDataPoints": "500:1"})
        );
    }

    #[test]
    fn grammar() {
        assert_eq!(parse("20:1,600:60"), Ok(Some(vec![(20, 1), (600, 60)])));
        assert_eq!(parse(""), Ok(None));
        assert!(parse("20").is_err());
        assert!(parse("20:1,30:1").is_err());
        assert!(parse("a:1").is_err());
    }

    #[test]
    fn buckets_refuse_beyond_capacity() {
        let config = LimitsConfig {
            telemetry_data_points: Some("5:3600".into()),
            ..LimitsConfig::default()
        };
        let limits = SessionLimits::new(&config);
        assert_eq!(limits.admit_telemetry(3), Ok(()));
        assert_eq!(limits.admit_telemetry(3), Err("telemetryDataPoints"));
        assert_eq!(limits.admit_telemetry(2), Ok(()));
        assert_eq!(
            limits.admit_message(),
            Ok(()),
            "no message limit configured"
        );
    }

    #[test]
    fn a_device_keeps_its_buckets_across_sessions() {
        let config = LimitsConfig {
            telemetry_messages: Some("2:3600".into()),
            ..LimitsConfig::default()
        };
        let store = DeviceLimits::new(&config);
        let device = DeviceId::new();
        let first = store.of(device);
        assert_eq!(first.admit_telemetry(1), Ok(()));
        assert_eq!(first.admit_telemetry(1), Ok(()));
        drop(first);
        let second = store.of(device);
        assert_eq!(second.admit_telemetry(1), Err("telemetryMessages"));
        assert_eq!(store.of(DeviceId::new()).admit_telemetry(1), Ok(()));
        let unlimited = DeviceLimits::new(&LimitsConfig::default());
        assert_eq!(unlimited.of(device).admit_message(), Ok(()));
        assert!(unlimited.is_empty(), "no limits, no state kept");
    }

    #[test]
    fn the_map_is_bounded_and_forgets_refilled_devices_first() {
        let config = LimitsConfig {
            telemetry_messages: Some("1:3600".into()),
            ..LimitsConfig::default()
        };
        let store = DeviceLimits::with_capacity(&config, 2);
        let (live, idle, spent) = (DeviceId::new(), DeviceId::new(), DeviceId::new());
        let held = store.of(live);
        assert_eq!(held.admit_telemetry(1), Ok(()));
        drop(store.of(idle)); // full buckets, no session
        assert_eq!(store.of(spent).admit_telemetry(1), Ok(()), "over the bound");
        assert_eq!(store.len(), 2, "the refilled one went");
        assert_eq!(
            store.of(live).admit_telemetry(1),
            Err("telemetryMessages"),
            "a live session's state is kept"
        );
        drop(store.of(DeviceId::new()));
        assert_eq!(store.len(), 2);
        assert_eq!(
            held.admit_telemetry(1),
            Err("telemetryMessages"),
            "still the live device's own"
        );
    }
}
