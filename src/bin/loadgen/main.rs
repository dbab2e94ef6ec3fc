//! `loadgen`: MQTT telemetry load generator for ferroboard benchmarks (any MQTT broker on loopback).
//!
//! Devices connect with the access token as username, publish JSON telemetry at QoS 0 or 1 and
//! time each PUBACK. The run has phases: connect (ramped), warm-up, measured window, drain. Each
//! `--threads` thread runs its own ntex system with an even share of the devices.

mod create;
mod fanout;
mod report;
mod stats;
mod worker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;

use crate::report::{Measured, Report, mib};
use crate::stats::{RssSampler, read_rss_kb, rss_window};
use crate::worker::{Counters, MEASURE, Protocol, STOP, Settings, Shared, WARMUP};

/// Most latency samples kept in memory over all threads; beyond it they are sampled.
const LATENCY_SAMPLE_CAP: usize = 5_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "MQTT telemetry load generator for ferroboard benchmarks (loopback targets only)",
    long_about = "MQTT telemetry load generator for ferroboard benchmarks (loopback targets only).\n\n\
        Device i connects with username (access token) and client id `{token-prefix}{i}`, then \
        publishes JSON telemetry ({\"key0\":..,\"key1\":..}) to --topic. The run ramps the \
        connections at --connect-rate, warms up for --warmup seconds, measures for --duration \
        seconds, then drains outstanding PUBACKs and disconnects. With QoS 1 the PUBACK latency \
        of every message sent and acked inside the measured window is recorded.\n\n\
        Prints a progress line per second on stderr, a human-readable summary on stdout and one \
        JSON line prefixed `RESULT `. Exit status: 0 ok, 1 no device connected, 2 nothing acked."
)]
struct Args {
    /// Broker host: a loopback address (127.0.0.0/8, ::1) or `localhost`.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Broker MQTT port(s), comma-separated; device i connects to the (i mod n)-th, so several
    /// ferroboard nodes share the devices.
    #[arg(long, default_value = "1883", value_delimiter = ',', num_args = 1..)]
    port: Vec<u16>,

    /// MQTT protocol version.
    #[arg(long, value_enum, default_value_t = Protocol::V3)]
    protocol: Protocol,

    /// Number of devices (one MQTT connection each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    devices: u32,

    /// Connections opened per second while ramping up.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,

    /// Publish QoS: 0 (fire and forget) or 1 (wait for PUBACK, measure latency).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,

    /// Total messages per second over all devices; 0 = as fast as PUBACKs (QoS 1) or socket
    /// backpressure (QoS 0) allow.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,

    /// Outstanding QoS 1 messages per device (the client also honours the broker's receive maximum).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    inflight: u16,

    /// Data points (keys) per message.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
    keys: u16,

    /// Size in bytes of each string value; 0 sends numeric values.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    value_bytes: u32,

    /// Seconds of the measured window (after the warm-up); with --idle, how long to stay idle.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Seconds of publishing before the measured window starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,

    /// Device i uses the access token (MQTT username) and client id `{PREFIX}{i}`.
    #[arg(long, default_value = "loadgen-", value_name = "PREFIX")]
    token_prefix: String,

    /// Topic to publish to.
    #[arg(long, default_value = "v1/devices/me/telemetry")]
    topic: String,

    /// Gateway mode: each connection is a gateway (its token must belong to a device with
    /// `additionalInfo.gateway`) publishing to `v1/gateway/telemetry` for N devices behind it,
    /// named `{PREFIX}gw-sub{j}`; message k carries the values of device k mod N,
    /// `{"name": [{"key0":..}]}`. Meant for `--devices 1` (gateways of one run share the names).
    /// 0 = off.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    gateway_devices: u32,

    /// Sample this process's VmRSS (/proc/PID/status) every 500 ms: before connecting, and
    /// min/avg/max while the run lasts. Comma-separated pids: the fan-out mode reports each
    /// (every 20 ms); the other modes sample the first.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    server_pid: Vec<u32>,

    /// Only connect the devices and keep them idle for --duration; reports the server RSS
    /// before/after and the delta per connection (needs --server-pid for the RSS figures).
    #[arg(long)]
    idle: bool,

    /// Threads (each its own ntex system) to spread the devices over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,

    /// Seconds to wait for a CONNACK before counting the connection as failed.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,

    /// MQTT keep-alive in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..))]
    keep_alive: u16,

    /// Before the run, create the --devices devices (access tokens `{PREFIX}{i}`) in this
    /// ferroboard database (sqlite://PATH or postgres://...); existing tokens are skipped. The
    /// database must have been started once by `ferroboard serve` (it creates the tenant).
    #[arg(long, value_name = "DATABASE_URL")]
    create_devices: Option<String>,

    /// Tenant administrator whose tenant owns the created devices.
    #[arg(long, default_value = "tenant@thingsboard.org", value_name = "EMAIL")]
    tenant_email: String,

    /// With --create-devices: create the devices and exit without generating load.
    #[arg(long, requires = "create_devices")]
    create_only: bool,

    /// Fan-out mode: ferroboard REST base URL(s), comma-separated (e.g. http://127.0.0.1:8080).
    /// The devices subscribe to shared attributes instead of publishing; then one value is saved
    /// to SHARED_SCOPE of every device over REST (device i through the ((i+1) mod n)-th URL) and
    /// the time until every device received it is reported. Needs --password.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    fanout_http: Vec<String>,

    /// Password of --tenant-email, for the fan-out mode's REST calls.
    #[arg(long, env = "LOADGEN_PASSWORD", hide_env_values = true)]
    password: Option<String>,

    /// Shared attribute key the fan-out mode saves (its value is a fresh number per run).
    #[arg(long, default_value = "fanout")]
    fanout_key: String,

    /// REST requests in flight during the fan-out.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    fanout_concurrency: u16,

    /// Seconds to wait for every device to receive the fan-out value before giving up.
    #[arg(long, default_value_t = 30.0)]
    fanout_wait: f64,

    /// Free text copied into the RESULT line (e.g. `ferroboard-sqlite`), for side-by-side tables.
    #[arg(long)]
    label: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn targets(args: &Args) -> anyhow::Result<Vec<SocketAddr>> {
    let ip: IpAddr = if args.host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        args.host
            .parse()
            .with_context(|| format!("--host {}: not an IP address", args.host))?
    };
    if !ip.is_loopback() {
        bail!("--host {ip}: loadgen only targets loopback addresses (127.0.0.0/8, ::1)");
    }
    if args.port.is_empty() {
        bail!("--port: give at least one port");
    }
    Ok(args.port.iter().map(|&p| SocketAddr::new(ip, p)).collect())
}

fn validate(args: &Args) -> anyhow::Result<()> {
    let positive = |name: &str, v: f64, max: f64| {
        if v.is_finite() && v > 0.0 && v <= max {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{name} must be > 0 and <= {max}, got {v}"))
        }
    };
    positive("--duration", args.duration, 86_400.0)?;
    positive("--connect-rate", args.connect_rate, 1_000_000.0)?;
    positive("--connect-timeout", args.connect_timeout, 600.0)?;
    if !(args.warmup.is_finite() && (0.0..=3600.0).contains(&args.warmup)) {
        bail!("--warmup must be within 0..=3600, got {}", args.warmup);
    }
    if !(args.rate.is_finite() && (0.0..=10_000_000.0).contains(&args.rate)) {
        bail!("--rate must be within 0..=10000000, got {}", args.rate);
    }
    for pid in &args.server_pid {
        if read_rss_kb(&pid.to_string()).is_none() {
            bail!("--server-pid {pid}: cannot read VmRSS from /proc/{pid}/status");
        }
    }
    if !args.fanout_http.is_empty() {
        fanout::check(args.protocol == Protocol::V3, args.idle)?;
        if args.password.is_none() {
            bail!("--fanout-http needs --password (or LOADGEN_PASSWORD) of --tenant-email");
        }
        positive("--fanout-wait", args.fanout_wait, 3600.0)?;
    }
    Ok(())
}

/// Soft limit of open files of this process, from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let addrs = targets(args)?;
    validate(args)?;
    let devices = args.devices as usize;

    if let Some(url) = &args.create_devices {
        create::create_devices(url, &args.tenant_email, &args.token_prefix, devices)?;
        if args.create_only {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if let Some(limit) = open_files_limit()
        && (devices as u64) + 64 > limit
    {
        eprintln!(
            "loadgen: warning: {devices} connections need more open files than `ulimit -n` ({limit}) allows; \
             raise it (ulimit -n {}) or expect connect failures",
            devices + 1024
        );
    }

    let plan = if args.fanout_http.is_empty() {
        None
    } else {
        Some(fanout::prepare(&fanout::PlanArgs {
            urls: &args.fanout_http,
            email: &args.tenant_email,
            password: args.password.as_deref().unwrap_or_default(),
            prefix: &args.token_prefix,
            devices,
            key: &args.fanout_key,
            concurrency: usize::from(args.fanout_concurrency),
            wait: Duration::from_secs_f64(args.fanout_wait),
        })?)
    };
    let arrivals = plan.as_ref().map(|_| {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        Arc::new(fanout::Arrivals::new(
            devices,
            args.fanout_key.clone(),
            nonce,
        ))
    });

    let first_pid = args.server_pid.first().copied();
    let pid = first_pid.map(|p| p.to_string());
    let rss_before = pid.as_deref().and_then(read_rss_kb);
    let sampler = first_pid
        .filter(|_| plan.is_none())
        .map(|p| RssSampler::start(p, Duration::from_millis(500)));

    let threads = usize::from(args.threads);
    let shared = Arc::new(Shared::default());
    let counters: Vec<Arc<Counters>> = (0..threads)
        .map(|_| Arc::new(Counters::default()))
        .collect();
    let t0 = Instant::now();
    let base = Settings {
        addrs: addrs.clone(),
        protocol: args.protocol,
        qos: args.qos,
        devices: Vec::new(),
        token_prefix: args.token_prefix.clone(),
        topic: if args.gateway_devices > 0 {
            "v1/gateway/telemetry".to_owned()
        } else {
            args.topic.clone()
        },
        gateway_devices: args.gateway_devices as usize,
        connect_rate: args.connect_rate,
        connect_start: t0,
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
        keep_alive: args.keep_alive,
        rate: args.rate / threads as f64,
        inflight: usize::from(args.inflight),
        keys: usize::from(args.keys),
        value_bytes: args.value_bytes as usize,
        idle: args.idle || plan.is_some(),
        latency_cap: LATENCY_SAMPLE_CAP / threads,
        listen: arrivals.clone(),
    };
    let mut handles = Vec::with_capacity(threads);
    for (idx, c) in counters.iter().enumerate() {
        let mut settings = base.clone();
        settings.devices = (idx..devices).step_by(threads).collect();
        let (shared, c) = (shared.clone(), c.clone());
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{idx}"))
            .spawn(move || worker::run_thread(idx, settings, shared, c))
            .context("cannot start a load thread")?;
        handles.push(handle);
    }

    let mut progress = Progress::new(t0, pid.clone(), args.qos, counters.clone(), shared.clone());

    // Connect phase: every attempt ends (CONNACK, error or timeout) well before this deadline.
    let ramp = Duration::from_secs_f64(devices as f64 / args.connect_rate);
    // A fan-out listener also waits up to one more timeout for its SUBACK.
    let attempts = if plan.is_some() { 2.0 } else { 1.0 };
    let connect_deadline = t0
        + ramp
        + Duration::from_secs_f64(args.connect_timeout * attempts)
        + Duration::from_secs(5);
    while (shared.connect_done.load(Ordering::Acquire) as usize) < devices
        && Instant::now() < connect_deadline
    {
        progress.tick("connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let connected = shared.connected.load(Ordering::Relaxed);

    let mut measured = Measured::default();
    let mut rss_after = None;
    if let (Some(plan), Some(arrivals)) = (&plan, &arrivals) {
        let outcome = if connected > 0 {
            Some(fanout::drive(plan, arrivals, &args.server_pid))
        } else {
            None
        };
        shared.phase.store(STOP, Ordering::Release);
        eprintln!("loadgen: disconnecting");
        for h in handles {
            let _ = h.join();
        }
        let Some(outcome) = outcome.transpose()? else {
            eprintln!(
                "loadgen: no device connected (first failure: {})",
                shared
                    .first_connect_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_default()
            );
            return Ok(ExitCode::from(1));
        };
        if let Ok(Some(e)) = arrivals.first_subscribe_error.lock().map(|e| e.clone()) {
            eprintln!("loadgen: first subscribe failure: {e}");
        }
        let failed = shared.connect_failed.load(Ordering::Relaxed)
            + arrivals.subscribe_failed.load(Ordering::Relaxed);
        fanout::print(
            &outcome,
            args.label.as_deref(),
            devices,
            failed,
            &args.port,
            &args.fanout_http,
        );
        // Every device must have subscribed and received the value for the figure to stand.
        let complete = outcome.all_received_secs.is_some() && outcome.expected == devices as u64;
        return Ok(if complete {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    if connected > 0 {
        if args.idle {
            // Connected and silent (keep-alive pings only) for the whole window.
            let until = Instant::now() + Duration::from_secs_f64(args.duration);
            progress.run_until("idle", until);
            rss_after = pid.as_deref().and_then(read_rss_kb);
            measured.secs = args.duration;
        } else {
            shared.phase.store(WARMUP, Ordering::Release);
            progress.run_until(
                "warmup",
                Instant::now() + Duration::from_secs_f64(args.warmup),
            );
            let (sent0, acked0) = totals(&counters);
            let start = Instant::now();
            shared.phase.store(MEASURE, Ordering::Release);
            progress.run_until("measure", start + Duration::from_secs_f64(args.duration));
            shared.phase.store(STOP, Ordering::Release);
            let (sent1, acked1) = totals(&counters);
            measured = Measured {
                secs: start.elapsed().as_secs_f64(),
                sent: sent1 - sent0,
                acked: acked1 - acked0,
            };
        }
    }
    let run_end = Instant::now();
    shared.phase.store(STOP, Ordering::Release);
    eprintln!("loadgen: draining and disconnecting");

    let mut parts = Vec::with_capacity(threads);
    for h in handles {
        match h.join() {
            Ok(p) => parts.push(p),
            Err(_) => {
                eprintln!("loadgen: warning: a load thread panicked; its latency samples are lost")
            }
        }
    }
    let latency = stats::latency(parts);
    let samples = sampler.map(RssSampler::finish).unwrap_or_default();
    let (sent, acked) = totals(&counters);

    let report = Report {
        args,
        targets: addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        connected,
        connect_secs,
        sent,
        acked,
        measured,
        latency,
        rss_before,
        rss_run: rss_window(&samples, t0, run_end),
        rss_after,
        shared: &shared,
    };
    report.print();

    Ok(if connected == 0 {
        ExitCode::from(1)
    } else if !args.idle
        && (if args.qos == 1 {
            measured.acked
        } else {
            measured.sent
        }) == 0
    {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn totals(counters: &[Arc<Counters>]) -> (u64, u64) {
    counters.iter().fold((0, 0), |(s, a), c| {
        (
            s + c.sent.load(Ordering::Relaxed),
            a + c.acked.load(Ordering::Relaxed),
        )
    })
}

/// The per-second progress line on stderr.
struct Progress {
    start: Instant,
    next: Instant,
    last: (Instant, u64),
    pid: Option<String>,
    qos: u8,
    counters: Vec<Arc<Counters>>,
    shared: Arc<Shared>,
}

impl Progress {
    fn new(
        start: Instant,
        pid: Option<String>,
        qos: u8,
        counters: Vec<Arc<Counters>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            start,
            next: start + Duration::from_secs(1),
            last: (start, 0),
            pid,
            qos,
            counters,
            shared,
        }
    }

    fn run_until(&mut self, phase: &str, until: Instant) {
        while Instant::now() < until {
            self.tick(phase);
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    fn tick(&mut self, phase: &str) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        let (sent, acked) = totals(&self.counters);
        let done = if self.qos == 1 { acked } else { sent };
        let rate =
            (done - self.last.1) as f64 / now.duration_since(self.last.0).as_secs_f64().max(1e-9);
        self.last = (now, done);
        let rss = match self.pid.as_deref().and_then(read_rss_kb) {
            Some(kb) => format!("  server rss {}", mib(kb)),
            None => String::new(),
        };
        let s = &self.shared;
        eprintln!(
            "[{:6.1}s] {phase:<8} conn {} ok {} failed  sent {sent}  acked {acked}  {rate:.0} msg/s{}  errors {}{rss}",
            now.duration_since(self.start).as_secs_f64(),
            s.connected.load(Ordering::Relaxed),
            s.connect_failed.load(Ordering::Relaxed),
            if self.qos == 1 { " acked" } else { " sent" },
            s.publish_errors.load(Ordering::Relaxed) + s.disconnects.load(Ordering::Relaxed),
        );
    }
}
