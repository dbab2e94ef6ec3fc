//! One load thread: its own ntex system that connects its share of the devices and publishes.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ntex_bytes::{ByteString, Bytes};
use ntex_mqtt::{v3, v5};
use ntex_service::{Pipeline, cfg::SharedCfg};
use ntex_util::time::{Seconds, sleep, timeout};

use crate::fanout::Arrivals;
use crate::stats::Reservoir;

/// Run phases, driven by the main thread through [`Shared::phase`].
pub const CONNECTING: u8 = 0;
pub const WARMUP: u8 = 1;
pub const MEASURE: u8 = 2;
pub const STOP: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// MQTT 3.1.1
    V3,
    /// MQTT 5
    V5,
}

/// State shared by all threads; counters that are hit per message live in [`Counters`].
#[derive(Default)]
pub struct Shared {
    pub phase: AtomicU8,
    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    /// Connection attempts finished, successful or not.
    pub connect_done: AtomicU64,
    pub first_connect_error: Mutex<Option<String>>,
    /// Connections that closed before the run ended.
    pub disconnects: AtomicU64,
    pub first_disconnect_error: Mutex<Option<String>>,
    /// Publishes that failed (connection lost, or a v5 PUBACK with an error reason).
    pub publish_errors: AtomicU64,
    pub first_publish_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }
}

fn keep_first(slot: &Mutex<Option<String>>, text: impl FnOnce() -> String) {
    if let Ok(mut s) = slot.lock()
        && s.is_none()
    {
        *s = Some(text());
    }
}

/// Per-thread message counters, on their own cache line; the main thread sums them.
#[derive(Default)]
#[repr(align(128))]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
}

/// What one thread does.
#[derive(Clone)]
pub struct Settings {
    /// Broker addresses; device `i` connects to `addrs[i % addrs.len()]`.
    pub addrs: Vec<SocketAddr>,
    pub protocol: Protocol,
    pub qos: u8,
    /// Global device indexes handled by this thread.
    pub devices: Vec<usize>,
    pub token_prefix: String,
    pub topic: String,
    /// Gateway mode: devices behind each connection (0 = off).
    pub gateway_devices: usize,
    /// Global connections per second; device `i` connects at `start + i / connect_rate`.
    pub connect_rate: f64,
    pub connect_start: Instant,
    pub connect_timeout: Duration,
    pub keep_alive: u16,
    /// Messages per second for this thread; 0 = unpaced.
    pub rate: f64,
    pub inflight: usize,
    pub keys: usize,
    pub value_bytes: usize,
    pub idle: bool,
    /// Latency samples this thread keeps at most.
    pub latency_cap: usize,
    /// Fan-out mode: subscribe to the shared-attribute topic and record arrivals instead of
    /// publishing (MQTT 3.1.1 only).
    pub listen: Option<Arc<Arrivals>>,
}

/// Latency samples of one thread: (kept samples in µs, acks measured, max µs).
pub type ThreadResult = (Vec<u32>, u64, u32);

/// Runs one thread's share of the load inside its own ntex system; returns when the phase is STOP
/// and the connections are drained.
pub fn run_thread(
    idx: usize,
    settings: Settings,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
) -> ThreadResult {
    ntex_rt::System::new(&format!("loadgen-{idx}"), ntex_net::DefaultRuntime).block_on(async move {
        let ctx = Rc::new(Ctx::new(idx, settings, shared, counters));
        worker(ctx.clone()).await;
        let lat = std::mem::replace(&mut *ctx.latency.borrow_mut(), Reservoir::new(1, 1));
        lat.into_parts()
    })
}

/// A connected device: MQTT v3 or v5 sink.
#[derive(Clone)]
enum Sink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

impl Sink {
    fn is_open(&self) -> bool {
        match self {
            Self::V3(s) => s.is_open(),
            Self::V5(s) => s.is_open(),
        }
    }

    async fn ready(&self) -> bool {
        match self {
            Self::V3(s) => s.ready().await,
            Self::V5(s) => s.ready().await,
        }
    }

    fn close(&self) {
        match self {
            Self::V3(s) => s.close(),
            Self::V5(s) => s.close(),
        }
    }

    fn send_qos0(&self, topic: ByteString, payload: Bytes) -> Result<(), String> {
        match self {
            Self::V3(s) => s.publish(topic).send_at_most_once(payload),
            Self::V5(s) => s.publish(topic).send_at_most_once(payload),
        }
        .map_err(|e| e.to_string())
    }

    /// Resolves at PUBACK.
    async fn send_qos1(&self, topic: ByteString, payload: Bytes) -> Result<(), String> {
        match self {
            Self::V3(s) => s
                .publish(topic)
                .send_at_least_once(payload)
                .await
                .map_err(|e| e.to_string()),
            Self::V5(s) => {
                let ack = s
                    .publish(topic)
                    .send_at_least_once(payload)
                    .await
                    .map_err(|e| e.to_string())?;
                // Codes below 0x80 are successes (Mosquitto answers 0x10 "no matching subscribers").
                if u8::from(ack.reason_code) < 0x80 {
                    Ok(())
                } else {
                    Err(format!(
                        "PUBACK reason {:?}{}",
                        ack.reason_code,
                        ack.reason_string
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ))
                }
            }
        }
    }
}

/// Display of a client error plus its Debug form where Display hides the cause
/// ("Tcp connect" hides "Connection refused").
fn connect_error<E: std::fmt::Display + std::fmt::Debug>(e: &E) -> String {
    let text = e.to_string();
    if text.starts_with("Connect ack failed") {
        text
    } else {
        format!("{text} ({e:?})")
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T>>>;
/// Connects one device; yields its sink and the connection's dispatcher future (to be spawned).
type ConnectFn = Box<dyn Fn(usize, String) -> BoxFut<Result<(Sink, BoxFut<()>), String>>>;

/// The shared-attribute push topic the fan-out listeners subscribe to.
const ATTRIBUTES_TOPIC: &str = "v1/devices/me/attributes";

fn connector(settings: &Settings) -> ConnectFn {
    let addrs = settings.addrs.clone();
    let keep_alive = Seconds(settings.keep_alive);
    let listen = settings.listen.clone();
    match settings.protocol {
        Protocol::V3 => {
            let pipeline = Rc::new(Pipeline::new(
                SharedCfg::default(),
                v3::client::MqttConnector::new(),
            ));
            Box::new(move |dev: usize, token: String| {
                let pipeline = pipeline.clone();
                let addr = addrs[dev % addrs.len()];
                let listen = listen.clone();
                Box::pin(async move {
                    let connect = v3::client::Connect::new(addr)
                        .client_id(token.clone())
                        .username(token)
                        .clean_session()
                        .keep_alive(keep_alive);
                    let client = pipeline
                        .call(connect)
                        .await
                        .map_err(|e| connect_error(&e))?;
                    let sink = client.sink();
                    let Some(arrivals) = listen else {
                        let run: BoxFut<()> = Box::pin(client.start_default());
                        return Ok((Sink::V3(sink), run));
                    };
                    // Listener: record every push, then subscribe once the dispatcher runs.
                    let router = client.resource(ATTRIBUTES_TOPIC, move |p: v3::Publish| {
                        let arrivals = arrivals.clone();
                        async move {
                            let at = Instant::now();
                            if let Ok(payload) = p.read_all().await {
                                arrivals.record(dev, at, &payload);
                            }
                            Ok::<_, ()>(())
                        }
                    });
                    let run: BoxFut<()> = Box::pin(router.start_default());
                    Ok((Sink::V3(sink), run))
                })
            })
        }
        Protocol::V5 => {
            let pipeline = Rc::new(Pipeline::new(
                SharedCfg::default(),
                v5::client::MqttConnector::new(),
            ));
            Box::new(move |dev: usize, token: String| {
                let pipeline = pipeline.clone();
                let addr = addrs[dev % addrs.len()];
                Box::pin(async move {
                    let connect = v5::client::Connect::new(addr)
                        .client_id(token.clone())
                        .username(ByteString::from(token))
                        .clean_start()
                        .keep_alive(keep_alive);
                    let client = pipeline
                        .call(connect)
                        .await
                        .map_err(|e| connect_error(&e))?;
                    let sink = Sink::V5(client.sink());
                    let run: BoxFut<()> = Box::pin(client.start_default());
                    Ok((sink, run))
                })
            })
        }
    }
}

/// Subscribes a listener to the shared-attribute topic at QoS 1 (as the ThingsBoard SDKs do).
async fn subscribe_attributes(sink: &Sink) -> Result<(), String> {
    let Sink::V3(sink) = sink else {
        return Err("fan-out listeners speak MQTT 3.1.1 only".to_owned());
    };
    let codes = sink
        .subscribe()
        .topic_filter(
            ByteString::from_static(ATTRIBUTES_TOPIC),
            v3::codec::QoS::AtLeastOnce,
        )
        .send()
        .await
        .map_err(|e| format!("SUBSCRIBE failed: {e}"))?;
    match codes.first() {
        Some(v3::codec::SubscribeReturnCode::Failure) | None => {
            Err("SUBSCRIBE refused by the broker".to_owned())
        }
        Some(_) => Ok(()),
    }
}

/// Hands out send slots at a fixed interval to all publishers of a thread.
struct Pacer {
    interval: Duration,
    next: Cell<Instant>,
}

impl Pacer {
    /// Takes the next slot; returns how long to wait for it.
    fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut slot = self.next.get();
        // Catch up at most 100 ms after a stall instead of bursting the whole backlog.
        if slot + Duration::from_millis(100) < now {
            slot = now;
        }
        self.next.set(slot + self.interval);
        slot.saturating_duration_since(now)
    }
}

struct Ctx {
    settings: Settings,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    connect: ConnectFn,
    topic: ByteString,
    sinks: RefCell<Vec<Sink>>,
    /// Dispatchers still running.
    live: Cell<usize>,
    /// QoS 1 publishes waiting for their PUBACK.
    outstanding: Cell<usize>,
    pacer: RefCell<Option<Pacer>>,
    latency: RefCell<Reservoir>,
    seq: Cell<u64>,
    string_value: String,
}

impl Ctx {
    fn new(idx: usize, settings: Settings, shared: Arc<Shared>, counters: Arc<Counters>) -> Self {
        // A JSON-safe string value of the requested size.
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let string_value = (0..settings.value_bytes)
            .map(|i| char::from(alphabet[i % alphabet.len()]))
            .collect();
        Self {
            connect: connector(&settings),
            topic: ByteString::from(settings.topic.clone()),
            latency: RefCell::new(Reservoir::new(
                settings.latency_cap,
                0x9E37_79B9_7F4A_7C15 ^ idx as u64,
            )),
            settings,
            shared,
            counters,
            sinks: RefCell::new(Vec::new()),
            live: Cell::new(0),
            outstanding: Cell::new(0),
            pacer: RefCell::new(None),
            seq: Cell::new(0),
            string_value,
        }
    }

    fn phase(&self) -> u8 {
        self.shared.phase()
    }

    /// `{"key0":v,"key1":v,...}`: numbers that change per message, or fixed strings of `--value-bytes`.
    fn payload(&self) -> Bytes {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let keys = self.settings.keys;
        let mut out = String::with_capacity(64 + keys * (12 + self.string_value.len().max(12)));
        let behind = self.settings.gateway_devices;
        if behind > 0 {
            // Every connection of a worker names the same devices: with one gateway per run
            // (the benchmark's case) they are its own.
            let _ = write!(
                out,
                "{{\"{}gw-sub{}\":[",
                self.settings.token_prefix,
                seq as usize % behind
            );
        }
        out.push('{');
        for k in 0..keys {
            if k > 0 {
                out.push(',');
            }
            if self.string_value.is_empty() {
                let v = (seq % 10_000) as f64 / 10.0 + k as f64;
                let _ = write!(out, "\"key{k}\":{v}");
            } else {
                let _ = write!(out, "\"key{k}\":\"{}\"", self.string_value);
            }
        }
        out.push('}');
        if behind > 0 {
            out.push_str("]}");
        }
        Bytes::from(out)
    }

    fn publish_error(&self, text: &str) {
        if self.phase() < STOP {
            self.shared.publish_errors.fetch_add(1, Ordering::Relaxed);
            keep_first(&self.shared.first_publish_error, || text.to_owned());
        }
    }
}

async fn wait_while(
    ctx: &Ctx,
    step: Duration,
    deadline: Option<Instant>,
    cond: impl Fn(&Ctx) -> bool,
) {
    while cond(ctx) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        sleep(step).await;
    }
}

async fn worker(ctx: Rc<Ctx>) {
    // Ramp: device i connects at start + i / connect_rate, each in its own task.
    for &dev in &ctx.settings.devices {
        if ctx.phase() == STOP {
            break;
        }
        let due = ctx.settings.connect_start
            + Duration::from_secs_f64(dev as f64 / ctx.settings.connect_rate);
        let now = Instant::now();
        if due > now + Duration::from_millis(1) {
            sleep(due - now).await;
        }
        ntex_rt::spawn(connect_one(ctx.clone(), dev));
    }

    wait_while(&ctx, Duration::from_millis(10), None, |c| {
        c.phase() == CONNECTING
    })
    .await;

    if !ctx.settings.idle && ctx.phase() < STOP {
        if ctx.settings.rate > 0.0 {
            *ctx.pacer.borrow_mut() = Some(Pacer {
                interval: Duration::from_secs_f64(1.0 / ctx.settings.rate),
                next: Cell::new(Instant::now()),
            });
        }
        let per_device = if ctx.settings.qos == 0 {
            1
        } else {
            ctx.settings.inflight
        };
        let sinks = ctx.sinks.borrow().clone();
        for sink in sinks {
            for _ in 0..per_device {
                ntex_rt::spawn(publisher(ctx.clone(), sink.clone()));
            }
        }
    }

    wait_while(&ctx, Duration::from_millis(10), None, |c| c.phase() < STOP).await;

    // Let outstanding PUBACKs arrive, then disconnect cleanly.
    let drain = Instant::now() + Duration::from_secs(5);
    wait_while(&ctx, Duration::from_millis(5), Some(drain), |c| {
        c.outstanding.get() > 0
    })
    .await;
    for sink in ctx.sinks.borrow().iter() {
        sink.close();
    }
    let closing = Instant::now() + Duration::from_secs(2);
    wait_while(&ctx, Duration::from_millis(5), Some(closing), |c| {
        c.live.get() > 0
    })
    .await;
}

async fn connect_one(ctx: Rc<Ctx>, dev: usize) {
    let token = format!("{}{dev}", ctx.settings.token_prefix);
    let shared = &ctx.shared;
    match timeout(ctx.settings.connect_timeout, (ctx.connect)(dev, token)).await {
        Ok(Ok((sink, run))) => {
            shared.connected.fetch_add(1, Ordering::Relaxed);
            ctx.sinks.borrow_mut().push(sink.clone());
            ctx.live.set(ctx.live.get() + 1);
            let c = ctx.clone();
            let listener = sink.clone();
            ntex_rt::spawn(async move {
                run.await;
                c.live.set(c.live.get() - 1);
                if c.phase() < STOP {
                    c.shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    keep_first(&c.shared.first_disconnect_error, || {
                        format!("device {dev}: connection closed by the server or network")
                    });
                }
                drop(sink);
            });
            if let Some(arrivals) = &ctx.settings.listen {
                let subscribed = timeout(
                    ctx.settings.connect_timeout,
                    subscribe_attributes(&listener),
                )
                .await
                .unwrap_or_else(|()| Err("no SUBACK in time".to_owned()));
                match subscribed {
                    Ok(()) => arrivals.mark_subscribed(dev),
                    Err(e) => {
                        keep_first(&arrivals.first_subscribe_error, || {
                            format!("device {dev}: {e}")
                        });
                        arrivals.subscribe_failed.fetch_add(1, Ordering::Release);
                    }
                };
            }
        }
        Ok(Err(e)) => {
            shared.connect_failed.fetch_add(1, Ordering::Relaxed);
            keep_first(&shared.first_connect_error, || format!("device {dev}: {e}"));
        }
        Err(()) => {
            shared.connect_failed.fetch_add(1, Ordering::Relaxed);
            keep_first(&shared.first_connect_error, || {
                format!(
                    "device {dev}: no CONNACK within {:?}",
                    ctx.settings.connect_timeout
                )
            });
        }
    }
    shared.connect_done.fetch_add(1, Ordering::Release);
}

async fn publisher(ctx: Rc<Ctx>, sink: Sink) {
    loop {
        if ctx.phase() >= STOP {
            return;
        }
        let wait = ctx.pacer.borrow().as_ref().map(Pacer::reserve);
        if let Some(wait) = wait {
            if wait >= Duration::from_millis(1) {
                sleep(wait).await;
            }
            if ctx.phase() >= STOP {
                return;
            }
        }
        let payload = ctx.payload();
        if ctx.settings.qos == 0 {
            if !sink.ready().await {
                ctx.publish_error("connection closed");
                return;
            }
            if let Err(e) = sink.send_qos0(ctx.topic.clone(), payload) {
                ctx.publish_error(&e);
                if !sink.is_open() {
                    return;
                }
            } else {
                ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            // send_at_most_once never waits: yield so the connection can write and signal backpressure.
            ntex_util::task::yield_to().await;
        } else {
            let measuring = ctx.phase() == MEASURE;
            ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
            ctx.outstanding.set(ctx.outstanding.get() + 1);
            let started = Instant::now();
            let res = sink.send_qos1(ctx.topic.clone(), payload).await;
            let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
            ctx.outstanding.set(ctx.outstanding.get() - 1);
            match res {
                Ok(()) => {
                    ctx.counters.acked.fetch_add(1, Ordering::Relaxed);
                    if measuring && ctx.phase() == MEASURE {
                        ctx.latency.borrow_mut().record(micros);
                    }
                }
                Err(e) => {
                    ctx.publish_error(&e);
                    if !sink.is_open() {
                        return;
                    }
                }
            }
        }
    }
}
