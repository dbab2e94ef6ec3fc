//! The end-of-run summary: a human-readable block and the `RESULT {json}` line.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::Args;
use crate::stats::{Latency, read_rss_kb};
use crate::worker::Shared;

/// Counts of the measured window.
#[derive(Clone, Copy, Default)]
pub struct Measured {
    pub secs: f64,
    pub sent: u64,
    pub acked: u64,
}

pub fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub struct Report<'a> {
    pub args: &'a Args,
    /// Broker address(es), comma-separated.
    pub targets: String,
    pub connected: u64,
    pub connect_secs: f64,
    pub sent: u64,
    pub acked: u64,
    pub measured: Measured,
    pub latency: Option<Latency>,
    pub rss_before: Option<u64>,
    pub rss_run: Option<(u64, u64, u64)>,
    pub rss_after: Option<u64>,
    pub shared: &'a Shared,
}

impl Report<'_> {
    fn first(slot: &std::sync::Mutex<Option<String>>) -> Option<String> {
        slot.lock().ok().and_then(|s| s.clone())
    }

    /// Messages per second over the measured window: acked for QoS 1, sent for QoS 0.
    fn throughput(&self) -> f64 {
        let n = if self.args.qos == 1 {
            self.measured.acked
        } else {
            self.measured.sent
        };
        if self.measured.secs > 0.0 {
            n as f64 / self.measured.secs
        } else {
            0.0
        }
    }

    fn per_connection_kb(&self) -> Option<f64> {
        let (before, after) = (self.rss_before?, self.rss_after?);
        (self.connected > 0).then(|| (after as f64 - before as f64) / self.connected as f64)
    }

    pub fn print(&self) {
        let a = self.args;
        let s = self.shared;
        let failed = s.connect_failed.load(Ordering::Relaxed);
        let first_connect_error = Self::first(&s.first_connect_error);
        let first_publish_error = Self::first(&s.first_publish_error);
        let first_disconnect = Self::first(&s.first_disconnect_error);
        let publish_errors = s.publish_errors.load(Ordering::Relaxed);
        let disconnects = s.disconnects.load(Ordering::Relaxed);
        let mode = if a.idle { "idle" } else { "publish" };
        let own_rss = read_rss_kb("self");

        println!();
        println!(
            "== loadgen {}: {:?} QoS{} -> {} ({mode}{}) ==",
            a.label.as_deref().unwrap_or("run"),
            a.protocol,
            a.qos,
            self.targets,
            if a.idle {
                String::new()
            } else {
                format!(", topic {}", a.topic)
            }
        );
        println!(
            "devices         {} connected, {failed} failed of {} in {:.2} s ({} thread(s))",
            self.connected, a.devices, self.connect_secs, a.threads
        );
        if let Some(e) = &first_connect_error {
            println!("first failure   {e}");
        }
        if !a.idle {
            println!(
                "load            {} keys/msg, {}, inflight {}/device, rate {}",
                a.keys,
                if a.value_bytes == 0 {
                    "numeric values".to_owned()
                } else {
                    format!("{}-byte strings", a.value_bytes)
                },
                a.inflight,
                if a.rate > 0.0 {
                    format!("{} msg/s", a.rate)
                } else {
                    "unlimited".to_owned()
                }
            );
            println!(
                "messages        sent {}, acked {} (whole run incl. warm-up and drain)",
                self.sent, self.acked
            );
            println!(
                "measured        {:.2} s: sent {}, acked {} -> {:.1} msg/s {}",
                self.measured.secs,
                self.measured.sent,
                self.measured.acked,
                self.throughput(),
                if a.qos == 1 {
                    "acked"
                } else {
                    "sent (QoS 0: no acks)"
                }
            );
            match &self.latency {
                Some(l) => println!(
                    "PUBACK latency  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms ({} acks{})",
                    l.p50,
                    l.p90,
                    l.p99,
                    l.max,
                    l.count,
                    if (l.kept as u64) < l.count {
                        format!(", {} sampled", l.kept)
                    } else {
                        String::new()
                    }
                ),
                None => println!("PUBACK latency  n/a"),
            }
            println!("errors          {publish_errors} publish errors, {disconnects} disconnects");
            if let Some(e) = &first_publish_error {
                println!("first error     {e}");
            }
        } else {
            println!(
                "idle            {:.1} s, {disconnects} disconnects",
                self.measured.secs
            );
        }
        if let Some(e) = &first_disconnect {
            println!("first lost      {e}");
        }
        if let Some(before) = self.rss_before {
            let mut line = format!("server RSS      before connecting {}", mib(before));
            if let Some((min, avg, max)) = self.rss_run {
                line += &format!(
                    "; during run min {} avg {} max {}",
                    mib(min),
                    mib(avg),
                    mib(max)
                );
            }
            println!("{line}");
            if let (Some(after), Some(per)) = (self.rss_after, self.per_connection_kb()) {
                println!(
                    "idle RSS        after {} with {} connections: {:.2} KiB/connection",
                    mib(after),
                    self.connected,
                    per
                );
            }
        }
        if let Some(kb) = own_rss {
            println!("loadgen RSS     {}", mib(kb));
        }

        let latency = self.latency.map_or(Value::Null, |l| {
            json!({
                "p50": round3(l.p50), "p90": round3(l.p90), "p99": round3(l.p99), "max": round3(l.max),
                "count": l.count, "kept": l.kept,
            })
        });
        let server_rss = match self.rss_before {
            None => Value::Null,
            Some(before) => json!({
                "before": before,
                "min": self.rss_run.map(|r| r.0),
                "avg": self.rss_run.map(|r| r.1),
                "max": self.rss_run.map(|r| r.2),
                "after": self.rss_after,
                "per_connection_delta_kb": self.per_connection_kb().map(round3),
            }),
        };
        let result = json!({
            "label": a.label,
            "mode": mode,
            "target": self.targets,
            "protocol": format!("{:?}", a.protocol).to_lowercase(),
            "qos": a.qos,
            "devices": a.devices,
            "gateway_devices": a.gateway_devices,
            "threads": a.threads,
            "inflight": a.inflight,
            "keys": a.keys,
            "value_bytes": a.value_bytes,
            "rate_target": a.rate,
            "connected": self.connected,
            "connect_failures": failed,
            "first_connect_error": first_connect_error,
            "connect_secs": round3(self.connect_secs),
            "sent": self.sent,
            "acked": self.acked,
            "measured_secs": round3(self.measured.secs),
            "measured_sent": self.measured.sent,
            "measured_acked": self.measured.acked,
            "msg_per_s": round3(self.throughput()),
            "rate_basis": if a.qos == 1 { "acked" } else { "sent" },
            "latency_ms": latency,
            "publish_errors": publish_errors,
            "first_publish_error": first_publish_error,
            "disconnects": disconnects,
            "server_rss_kb": server_rss,
            "loadgen_rss_kb": own_rss,
        });
        println!("RESULT {result}");
    }
}
