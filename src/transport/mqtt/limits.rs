//! Per-device rate limits (token buckets) and the
//! `getSessionLimits` answer.

use std::cell::RefCell;
use std::time::Instant;

use crate::config::LimitsConfig;

/// One `capacity:seconds` bucket, refilled continuously.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

/// All buckets of one limit must admit a message.
#[derive(Debug)]
pub struct RateLimit {
    name: &'static str,
    buckets: RefCell<Vec<Bucket>>,
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
            buckets: RefCell::new(buckets),
        })
    }

    /// Takes `n` tokens from every bucket, or none when any bucket lacks them.
    fn try_take(&self, n: f64) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.borrow_mut();
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

/// The limits of one session.
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
}

fn admit(limit: &Option<RateLimit>, n: f64) -> Result<(), &'static str> {
    match limit {
        Some(l) if !l.try_take(n) => Err(l.name),
        _ => Ok(()),
    }
}

/// The `getSessionLimits` reply.
pub fn session_limits_json(
    max_payload: u32,
    max_inflight: u16,
    config: &LimitsConfig,
) -> serde_json::Value {
    serde_json::json!({
        "maxPayloadSize": max_payload,
        "maxInflightMessages": max_inflight,
        "rateLimits": {
            "messages": config.messages,
            "telemetryMessages": config.telemetry_messages,
            "telemetryDataPoints": config.telemetry_data_points,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
