//! Per-session in-flight limit for MQTT 3.1.1 and 5: at most N PUBLISH packets of a session are
//! processed at once, whatever their QoS; beyond that the session stops reading. ntex-mqtt 9.0.0's
//! own limiters let consecutive publishes through (v3) or count only bytes (v5), so they are
//! replaced by this one. When the connection ends (DISCONNECT, closed socket, server stop) the
//! session's shutdown waits for the publishes already read, so each of them runs to completion.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use metrics::Gauge;
use ntex_mqtt::{v3, v5};
use ntex_service::{Ctx, Middleware, Service};
use ntex_util::task::LocalWaker;

/// How long a closing connection waits for its publishes in processing (the contract's shutdown
/// budget); their work goes on afterwards on the main runtime, only their acks are gone.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Publishes in processing, over all sessions of this server, and the most one session has had
/// at once (never above the per-session limit while its connection is open; a closed one may let
/// through what it had buffered).
#[derive(Debug, Default)]
pub struct InflightStats {
    current: AtomicUsize,
    peak_per_session: AtomicUsize,
    /// `ferroboard_mqtt_publishes_in_flight`, resolved on first use (the recorder may be
    /// installed after the server starts) and kept: set twice per PUBLISH.
    gauge: OnceLock<Gauge>,
}

impl InflightStats {
    /// Publishes being processed now, all sessions together.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    /// The most publishes a single session has had in processing at once.
    pub fn peak_per_session(&self) -> usize {
        self.peak_per_session.load(Ordering::SeqCst)
    }

    fn started(&self, in_session: u16) {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_per_session
            .fetch_max(usize::from(in_session), Ordering::SeqCst);
        self.gauge().set(now as f64);
    }

    fn gauge(&self) -> &Gauge {
        self.gauge
            .get_or_init(|| metrics::gauge!("ferroboard_mqtt_publishes_in_flight"))
    }

    fn finished(&self) {
        let now = self
            .current
            .fetch_sub(1, Ordering::SeqCst)
            .saturating_sub(1);
        self.gauge().set(now as f64);
    }
}

/// Middleware factory: the per-session limit and the server's statistics.
#[derive(Clone, Debug)]
pub struct InflightLimit {
    pub max: u16,
    pub stats: Arc<InflightStats>,
}

impl InflightLimit {
    fn service<S>(&self, service: S, open: Box<dyn Fn() -> bool>) -> InflightService<S> {
        InflightService {
            service,
            open,
            counter: Rc::new(Counter {
                max: self.max.max(1),
                current: Cell::new(0),
                granted: Cell::new(false),
                ready: LocalWaker::new(),
                idle: LocalWaker::new(),
                stats: self.stats.clone(),
            }),
        }
    }
}

impl<S, AppSt> Middleware<S, v3::Session<AppSt>> for InflightLimit {
    type Service = InflightService<S>;

    fn create(&self, st: &v3::Session<AppSt>, service: S) -> Self::Service {
        let sink = st.sink().clone();
        self.service(service, Box::new(move || sink.is_open()))
    }
}

impl<S, AppSt> Middleware<S, v5::Session<AppSt>> for InflightLimit {
    type Service = InflightService<S>;

    fn create(&self, st: &v5::Session<AppSt>, service: S) -> Self::Service {
        let sink = st.sink().clone();
        self.service(service, Box::new(move || sink.is_open()))
    }
}

/// A decoded packet that may be a PUBLISH.
pub trait Packet {
    fn is_publish(&self) -> bool;
}

impl Packet for v3::codec::Decoded {
    fn is_publish(&self) -> bool {
        matches!(self, Self::Publish(..))
    }
}

impl Packet for v5::codec::Decoded {
    fn is_publish(&self) -> bool {
        matches!(self, Self::Publish(..))
    }
}

pub struct InflightService<S> {
    service: S,
    /// Whether the connection is open. Once it is not, the packets already read are let through
    /// whatever the bound: ntex-mqtt stops a paused session whose peer is gone without decoding
    /// what it buffered.
    open: Box<dyn Fn() -> bool>,
    counter: Rc<Counter>,
}

struct Counter {
    max: u16,
    current: Cell<u16>,
    /// Readiness was granted and no yield happened since.
    granted: Cell<bool>,
    /// The read side, waiting for a free slot.
    ready: LocalWaker,
    /// The shutdown, waiting for no publish in processing.
    idle: LocalWaker,
    stats: Arc<InflightStats>,
}

/// One publish in processing; dropping it frees the slot.
struct Guard(Rc<Counter>);

impl Guard {
    fn new(counter: &Rc<Counter>) -> Self {
        let now = counter.current.get().saturating_add(1);
        counter.current.set(now);
        counter.stats.started(now);
        Self(counter.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let c = &self.0;
        let before = c.current.get();
        c.current.set(before.saturating_sub(1));
        c.stats.finished();
        if before >= c.max {
            c.ready.wake();
        }
        if before <= 1 {
            c.idle.wake();
        }
    }
}

impl<S, St, R> Service<St, R> for InflightService<S>
where
    S: Service<St, R>,
    R: Packet,
{
    type Res = S::Res;
    type Error = S::Error;

    async fn ready(&self, ctx: Ctx<'_, Self, St>) -> Result<(), S::Error> {
        let (counter, open) = (&self.counter, &self.open);
        // While one packet is in processing the dispatcher spawns the call of the next one, which
        // starts (and is counted) only when that task first runs: yield once per grant so that it
        // does before the next packet is read.
        if counter.granted.replace(false) && open() {
            let mut yielded = false;
            poll_fn(|cx| {
                if yielded || !open() {
                    Poll::Ready(())
                } else {
                    yielded = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
        }
        poll_fn(|cx| {
            counter.ready.register(cx.waker());
            if counter.current.get() < counter.max || !open() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        ctx.ready(&self.service).await?;
        counter.granted.set(true);
        Ok(())
    }

    async fn call(&self, req: R, ctx: Ctx<'_, Self, St>) -> Result<S::Res, S::Error> {
        let _guard = req.is_publish().then(|| Guard::new(&self.counter));
        ctx.call(&self.service, req).await
    }

    /// Waits (bounded) until the publishes already read are processed, then shuts the rest down.
    async fn shutdown(&self, ctx: Ctx<'_, Self, St>) {
        let counter = &self.counter;
        let drained = poll_fn(|cx| {
            counter.idle.register(cx.waker());
            if counter.current.get() == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        if tokio::time::timeout(DRAIN_LIMIT, drained).await.is_err() {
            tracing::warn!(
                publishes = counter.current.get(),
                "MQTT connection closed with publishes still in processing after {DRAIN_LIMIT:?}; they finish without an ack"
            );
        }
        ctx.shutdown(&self.service).await;
    }
}
