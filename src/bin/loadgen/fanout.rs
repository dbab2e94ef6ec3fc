//! Fan-out mode (`--fanout-http`): one shared-attribute value saved over REST for every device,
//! timed until each device's MQTT session has received the push.
//!
//! Before connecting, the driver logs in and resolves the device ids (`{PREFIX}{i}` by name). The
//! load threads connect the devices (spread over the `--port` list), subscribe each to
//! `v1/devices/me/attributes` at QoS 1 and record when the push carrying this run's value arrives.
//! Then the driver POSTs `{"<key>": <nonce>}` to `…/DEVICE/{id}/SHARED_SCOPE` for every device,
//! `--fanout-concurrency` requests at a time, and waits until every subscribed device has it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::report::mib;
use crate::stats::{Latency, RssSampler, latency, read_rss_kb, rss_window};

/// What the listeners share with the driver.
pub struct Arrivals {
    key: String,
    nonce: u64,
    slots: Mutex<Slots>,
    pub subscribed: AtomicU64,
    pub subscribe_failed: AtomicU64,
    pub first_subscribe_error: Mutex<Option<String>>,
    /// Devices that received this run's value (first arrival only).
    pub received: AtomicU64,
    /// Pushes received that did not carry this run's value, or repeated it.
    pub other: AtomicU64,
}

#[derive(Default)]
struct Slots {
    /// Time the value arrived, per device.
    at: Vec<Option<Instant>>,
    /// Whether the device's SUBSCRIBE was acknowledged before the update started; only these
    /// devices are expected to receive it (and counted in `received`).
    subscribed: Vec<bool>,
}

impl Arrivals {
    pub fn new(devices: usize, key: String, nonce: u64) -> Self {
        Self {
            key,
            nonce,
            slots: Mutex::new(Slots {
                at: vec![None; devices],
                subscribed: vec![false; devices],
            }),
            subscribed: AtomicU64::new(0),
            subscribe_failed: AtomicU64::new(0),
            first_subscribe_error: Mutex::new(None),
            received: AtomicU64::new(0),
            other: AtomicU64::new(0),
        }
    }

    /// The device's SUBSCRIBE was acknowledged.
    pub fn mark_subscribed(&self, dev: usize) {
        if let Ok(mut s) = self.slots.lock()
            && let Some(flag) = s.subscribed.get_mut(dev)
        {
            *flag = true;
        }
        self.subscribed.fetch_add(1, Ordering::Release);
    }

    /// Called by a listener for every publish on the attributes topic. Only the first arrival of
    /// this run's value at a subscribed device counts as received.
    pub fn record(&self, dev: usize, at: Instant, payload: &[u8]) {
        let ours = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|v| v.get(&self.key).and_then(Value::as_u64))
            == Some(self.nonce);
        let first = ours
            && self.slots.lock().is_ok_and(|mut s| {
                let expected = s.subscribed.get(dev).copied().unwrap_or(false);
                match s.at.get_mut(dev) {
                    Some(slot @ None) if expected => {
                        *slot = Some(at);
                        true
                    }
                    _ => false,
                }
            });
        if first {
            self.received.fetch_add(1, Ordering::Release);
        } else {
            self.other.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn arrival_times(&self) -> Vec<Option<Instant>> {
        self.slots.lock().map(|s| s.at.clone()).unwrap_or_default()
    }
}

/// Everything resolved before the devices connect.
pub struct Plan {
    urls: Vec<String>,
    token: String,
    /// Device id per device index.
    ids: Vec<String>,
    key: String,
    concurrency: usize,
    wait: Duration,
}

pub struct PlanArgs<'a> {
    pub urls: &'a [String],
    pub email: &'a str,
    pub password: &'a str,
    pub prefix: &'a str,
    pub devices: usize,
    pub key: &'a str,
    pub concurrency: usize,
    pub wait: Duration,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .build()
        .context("cannot build the HTTP client")
}

/// Logs in and resolves the id of every device `{prefix}{i}`, i < devices.
pub fn prepare(a: &PlanArgs<'_>) -> anyhow::Result<Plan> {
    let rt = runtime()?;
    rt.block_on(async {
        let http = client()?;
        let base = a.urls.first().ok_or_else(|| anyhow!("--fanout-http is empty"))?;
        let login: Value = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": a.email, "password": a.password}))
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?
            .error_for_status()
            .context("login refused (check --tenant-email and --password)")?
            .json()
            .await?;
        let token = login["token"]
            .as_str()
            .ok_or_else(|| anyhow!("login answer has no token"))?
            .to_owned();

        let mut by_name = std::collections::HashMap::new();
        let mut page = 0;
        loop {
            let url = reqwest::Url::parse_with_params(
                &format!("{base}/api/tenant/devices"),
                [
                    ("pageSize", "1000"),
                    ("page", &page.to_string()),
                    ("textSearch", a.prefix),
                ],
            )
            .with_context(|| format!("bad --fanout-http URL {base}"))?;
            let body: Value = http
                .get(url)
                .header("X-Authorization", format!("Bearer {token}"))
                .send()
                .await?
                .error_for_status()
                .context("cannot list the tenant's devices")?
                .json()
                .await?;
            for d in body["data"].as_array().into_iter().flatten() {
                if let (Some(name), Some(id)) = (d["name"].as_str(), d["id"]["id"].as_str()) {
                    by_name.insert(name.to_owned(), id.to_owned());
                }
            }
            if body["hasNext"].as_bool() != Some(true) {
                break;
            }
            page += 1;
        }
        let ids = (0..a.devices)
            .map(|i| {
                let name = format!("{}{i}", a.prefix);
                by_name.remove(&name).ok_or_else(|| {
                    anyhow!("device {name} does not exist (create the devices with --create-devices first)")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        eprintln!("loadgen: fan-out: logged in, {} device ids resolved", ids.len());
        Ok(Plan {
            urls: a.urls.to_vec(),
            token,
            ids,
            key: a.key.to_owned(),
            concurrency: a.concurrency,
            wait: a.wait,
        })
    })
}

/// RSS of one server process around the update.
pub struct NodeRss {
    pub pid: u32,
    pub before_kb: Option<u64>,
    /// min/avg/max from the update's start until the last arrival (or the wait ended).
    pub during_kb: Option<(u64, u64, u64)>,
}

pub struct Outcome {
    pub expected: u64,
    pub posted: u64,
    pub post_errors: u64,
    pub first_post_error: Option<String>,
    /// Start of the first POST to the last POST's answer.
    pub rest_secs: f64,
    pub received: u64,
    pub other: u64,
    /// Start of the first POST to the last arrival, when every subscribed device received it.
    pub all_received_secs: Option<f64>,
    /// Arrival time after the first POST, over all devices that received it.
    pub since_start: Option<Latency>,
    /// Arrival time after the device's own POST was sent.
    pub per_device: Option<Latency>,
    pub rss: Vec<NodeRss>,
}

/// Saves the value for every device and waits for the arrivals.
pub fn drive(plan: &Plan, arrivals: &Arrivals, pids: &[u32]) -> anyhow::Result<Outcome> {
    let expected = arrivals.subscribed.load(Ordering::Acquire);
    let before: Vec<Option<u64>> = pids.iter().map(|p| read_rss_kb(&p.to_string())).collect();
    let samplers: Vec<RssSampler> = pids
        .iter()
        .map(|&p| RssSampler::start(p, Duration::from_millis(20)))
        .collect();
    let rt = runtime()?;
    let http = client()?;

    let t0 = Instant::now();
    let (sent_at, posted, post_errors, first_post_error, rest_done) =
        rt.block_on(post_all(plan, &http, arrivals, t0, expected));
    // Wait for the stragglers, polling, up to --fanout-wait after the last save was answered.
    let deadline = rest_done + plan.wait;
    let mut next_line = Instant::now() + Duration::from_secs(1);
    while arrivals.received.load(Ordering::Acquire) < expected && Instant::now() < deadline {
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            eprintln!(
                "[{:6.1}s] fan-out  waiting: received {}/{expected}",
                t0.elapsed().as_secs_f64(),
                arrivals.received.load(Ordering::Acquire)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let end = Instant::now();
    let rss = pids
        .iter()
        .zip(samplers)
        .zip(before)
        .map(|((&pid, s), before_kb)| NodeRss {
            pid,
            before_kb,
            during_kb: rss_window(&s.finish(), t0, end),
        })
        .collect();

    let times = arrivals.arrival_times();
    let received = arrivals.received.load(Ordering::Acquire);
    let last = times.iter().flatten().max().copied();
    let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
    let since: Vec<u32> = times
        .iter()
        .flatten()
        .map(|&at| micros(at.saturating_duration_since(t0)))
        .collect();
    let own: Vec<u32> = times
        .iter()
        .zip(&sent_at)
        .filter_map(|(at, sent)| {
            Some(micros(
                at.as_ref()?.saturating_duration_since(*sent.as_ref()?),
            ))
        })
        .collect();
    let summary = |v: Vec<u32>| {
        let (n, max) = (v.len() as u64, v.iter().copied().max().unwrap_or(0));
        latency(vec![(v, n, max)])
    };
    Ok(Outcome {
        expected,
        posted,
        post_errors,
        first_post_error,
        rest_secs: rest_done.saturating_duration_since(t0).as_secs_f64(),
        received,
        other: arrivals.other.load(Ordering::Relaxed),
        all_received_secs: (received >= expected && expected > 0)
            .then(|| last.map(|l| l.saturating_duration_since(t0).as_secs_f64()))
            .flatten(),
        since_start: summary(since),
        per_device: summary(own),
        rss,
    })
}

type PostResult = (Vec<Option<Instant>>, u64, u64, Option<String>, Instant);

/// POSTs the value for every device, `concurrency` at a time, device `i` through
/// `urls[(i + 1) % n]` (with as many URLs as MQTT ports, every update crosses nodes).
async fn post_all(
    plan: &Plan,
    http: &reqwest::Client,
    arrivals: &Arrivals,
    t0: Instant,
    expected: u64,
) -> PostResult {
    let body = json!({ &plan.key: arrivals.nonce }).to_string();
    let auth = format!("Bearer {}", plan.token);
    let mut sent_at = vec![None; plan.ids.len()];
    let (mut posted, mut errors, mut first_error) = (0u64, 0u64, None);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut next_line = t0 + Duration::from_secs(1);
    while next < plan.ids.len() || !tasks.is_empty() {
        while next < plan.ids.len() && tasks.len() < plan.concurrency {
            let url = format!(
                "{}/api/plugins/telemetry/DEVICE/{}/SHARED_SCOPE",
                plan.urls[(next + 1) % plan.urls.len()],
                plan.ids[next]
            );
            sent_at[next] = Some(Instant::now());
            let request = http
                .post(url)
                .header("X-Authorization", &auth)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send();
            tasks.spawn(async move {
                match request.await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!(
                        "HTTP {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            });
            next += 1;
        }
        match tasks.join_next().await {
            Some(Ok(Ok(()))) => posted += 1,
            Some(Ok(Err(e))) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            Some(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(format!("request task failed: {e}"));
            }
            None => {}
        }
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            eprintln!(
                "[{:6.1}s] fan-out  posted {posted}/{} ({errors} errors), received {}/{expected}",
                t0.elapsed().as_secs_f64(),
                plan.ids.len(),
                arrivals.received.load(Ordering::Acquire)
            );
        }
    }
    (sent_at, posted, errors, first_error, Instant::now())
}

fn ms(l: Option<Latency>) -> String {
    match l {
        Some(l) => format!(
            "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            l.p50, l.p90, l.p99, l.max
        ),
        None => "-".to_owned(),
    }
}

fn latency_json(l: Option<Latency>) -> Value {
    l.map_or(
        Value::Null,
        |l| json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "max": l.max, "count": l.count}),
    )
}

/// Prints the summary block and the `RESULT` line.
pub fn print(
    o: &Outcome,
    label: Option<&str>,
    devices: usize,
    failed: u64,
    ports: &[u16],
    urls: &[String],
) {
    println!();
    println!(
        "== loadgen {}: shared-attribute fan-out to {devices} devices over MQTT ports {ports:?}, REST {urls:?} ==",
        label.unwrap_or("run")
    );
    println!(
        "subscribed      {} of {devices} devices ({failed} failed to connect or subscribe)",
        o.expected
    );
    println!(
        "REST            {} saved, {} failed in {:.3} s ({:.0} req/s)",
        o.posted,
        o.post_errors,
        o.rest_secs,
        o.posted as f64 / o.rest_secs.max(1e-9)
    );
    if let Some(e) = &o.first_post_error {
        println!("first failure   {e}");
    }
    match o.all_received_secs {
        Some(s) => println!("all received    {s:.3} s after the first POST"),
        None => println!(
            "NOT all received: {}/{} devices got the value",
            o.received, o.expected
        ),
    }
    println!(
        "arrival         {} (since the first POST)",
        ms(o.since_start)
    );
    println!("per device      {} (since its own POST)", ms(o.per_device));
    if o.other > 0 {
        println!("other pushes    {}", o.other);
    }
    for n in &o.rss {
        let during = n
            .during_kb
            .map(|(min, avg, max)| format!("min {} avg {} max {}", mib(min), mib(avg), mib(max)))
            .unwrap_or_else(|| "-".to_owned());
        println!(
            "server {:<8} RSS before {}, during {during}",
            n.pid,
            n.before_kb.map(mib).unwrap_or_else(|| "-".to_owned())
        );
    }
    let result = json!({
        "mode": "fanout",
        "label": label,
        "devices": devices,
        "subscribed": o.expected,
        "connect_or_subscribe_failures": failed,
        "posted": o.posted,
        "post_errors": o.post_errors,
        "rest_secs": o.rest_secs,
        "received": o.received,
        "other_pushes": o.other,
        "all_received_secs": o.all_received_secs,
        "arrival_since_start_ms": latency_json(o.since_start),
        "arrival_per_device_ms": latency_json(o.per_device),
        "server_rss_kb": o.rss.iter().map(|n| json!({
            "pid": n.pid,
            "before": n.before_kb,
            "min": n.during_kb.map(|r| r.0),
            "avg": n.during_kb.map(|r| r.1),
            "max": n.during_kb.map(|r| r.2),
        })).collect::<Vec<_>>(),
    });
    println!("RESULT {result}");
}

/// Refuses settings the listeners cannot honour.
pub fn check(protocol_v3: bool, idle: bool) -> anyhow::Result<()> {
    if !protocol_v3 {
        bail!("--fanout-http needs --protocol v3 (the listeners speak MQTT 3.1.1)");
    }
    if idle {
        bail!("--fanout-http and --idle exclude each other");
    }
    Ok(())
}
