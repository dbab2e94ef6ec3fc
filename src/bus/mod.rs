//! The cross-node bus: server→device traffic and RPC replies reach whichever node holds the session.
//! One `Bus` trait, two implementations: in-process (single node) and Redis (many nodes).

pub mod live;
pub mod local;
pub mod mailbox;
pub mod owners;
pub mod redis;
pub mod registry;
pub mod sent;
pub mod waiters;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{DeviceId, TenantId};
pub use registry::{CloseReason, PollKind, Registry, SessionCmd};
pub use sent::SentRpcs;
pub use waiters::{Duplicate, RpcWaiters, WaiterKey, Waiting};

/// Traffic between nodes. Every node receives every event and acts on what concerns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A session of `device` opened on `node`; other nodes close theirs (newest wins).
    SessionOpened {
        device: Uuid,
        node: String,
        session: u64,
    },
    /// The device waits for a server-side RPC in an HTTP long poll on some node: RPCs waiting for
    /// it are offered again, as when it connects (no session is taken over).
    RpcPolled { device: Uuid },
    /// Something for a device's live session, wherever it is.
    ToDevice { device: Uuid, downlink: Downlink },
    /// A device answered a server-side RPC (or it was delivered); the node where the caller
    /// waits completes it, and every node forgets the request ids it was sent under.
    RpcReply {
        tenant: Uuid,
        device: Uuid,
        rpc: Uuid,
        reply: RpcReply,
    },
    /// A two-way RPC was published to the device under `request_id`: every node can match the
    /// answer, whichever session of the device sends it.
    RpcSent {
        /// The sending node, which recorded it already.
        node: String,
        tenant: Uuid,
        device: Uuid,
        request_id: i32,
        request: RpcRequest,
    },
    /// Persistent RPCs of the device wait in the database; the node holding its session sends them.
    RpcPending { device: Uuid },
    /// The device's credentials changed or it was deleted: its session, wherever it is, is closed.
    CloseSessions { device: Uuid },
    /// A device profile's settings changed: sessions of its devices, wherever they are, close.
    CloseProfileSessions { profile: Uuid },
    /// `node` subscribed again after a Redis outage and may have missed requests published
    /// meanwhile: every node re-offers the RPC requests its callers still wait on.
    BusRecovered { node: String },
    /// Every message of `device` is traced until `until_ms` (epoch ms; in the past: no longer).
    TraceDevice { device: Uuid, until_ms: i64 },
    /// `node` has WebSocket subscribers of `entities`: all of them when `full` (its previous list is
    /// replaced), else some it added. Changes of other entities are not published at all.
    Watching {
        node: String,
        entities: Vec<Uuid>,
        full: bool,
    },
    /// Values of a watched entity were committed; nodes with subscribers of it push them.
    EntityChanged(live::Changed),
}

/// Server→device messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Downlink {
    /// Shared attributes changed: `{"k": v}`, or `{"deleted": ["k"]}`.
    Attributes { payload: String },
    /// A server-side RPC request.
    Rpc(RpcRequest),
    /// The answer to a client-side RPC of one session.
    ClientRpcReply {
        session: u64,
        request_id: String,
        body: String,
    },
}

/// A server-side RPC on its way to a device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcRequest {
    pub rpc: Uuid,
    /// The integer id the device sees in its topic.
    pub request_id: i32,
    pub method: String,
    /// Params as JSON text.
    pub params: String,
    pub oneway: bool,
    pub persistent: bool,
    /// Epoch ms after which the request is no longer delivered.
    pub expiration_time: i64,
    /// The W3C trace context of the call that made it, when it is traced: the node holding the
    /// session continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What came back from a device (or why nothing did).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RpcReply {
    /// The device's reply payload (JSON text, or any text it sent).
    Ok { body: String },
    /// Delivered (PUBACK) for a one-way request.
    Delivered,
    /// The device published nothing parseable or the session closed.
    Failed { error: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusStatus {
    /// Single node, in-process.
    Local,
    Up,
    Down,
}

#[derive(Debug, thiserror::Error)]
#[error("bus unavailable: {0}")]
pub struct BusError(pub String);

#[async_trait]
pub trait Bus: Send + Sync {
    /// Hands the event to every node, this one included. Local delivery never fails; an error
    /// means other nodes may not have received it.
    async fn publish(&self, event: Event) -> Result<(), BusError>;
    fn status(&self) -> BusStatus;
}

/// Acts on events for this node: local sessions and local RPC waiters.
pub struct Dispatcher {
    pub node: String,
    pub sessions: Arc<Registry>,
    pub waiters: Arc<RpcWaiters>,
    pub sent: Arc<SentRpcs>,
    /// WebSocket subscribers of this node.
    pub live: Arc<live::LiveHub>,
    /// Set once the bus exists; used to re-offer waiting RPCs when a device connects.
    pub bus: std::sync::OnceLock<std::sync::Weak<dyn Bus>>,
}

impl Dispatcher {
    pub fn new(
        node: String,
        sessions: Arc<Registry>,
        waiters: Arc<RpcWaiters>,
        sent: Arc<SentRpcs>,
        live: Arc<live::LiveHub>,
    ) -> Self {
        Self {
            node,
            sessions,
            waiters,
            sent,
            live,
            bus: std::sync::OnceLock::new(),
        }
    }

    pub fn dispatch(&self, event: Event) {
        metrics::counter!("ferroboard_bus_events_total", "kind" => event.kind()).increment(1);
        match event {
            Event::SessionOpened { device, node, .. } => {
                if node != self.node {
                    self.sessions
                        .close(DeviceId(device), CloseReason::TakenOver);
                }
                self.reoffer(DeviceId(device));
            }
            Event::RpcPolled { device } => self.reoffer(DeviceId(device)),
            Event::ToDevice {
                device,
                downlink: Downlink::Rpc(mut request),
            } => {
                // A traced call continues here: the delivery span is the parent of what follows.
                let span = crate::observability::trace::remote_child(
                    request.traceparent.as_deref(),
                    || {
                        tracing::info_span!(
                            target: crate::observability::trace::TARGET,
                            "bus.rpc.deliver",
                            otel.kind = "consumer",
                            ferroboard.node = %self.node,
                            device.id = %device,
                            rpc.id = %request.rpc,
                        )
                    },
                );
                let _entered = span.enter();
                if !span.is_none() {
                    request.traceparent =
                        crate::observability::trace::current_traceparent().or(request.traceparent);
                }
                self.sessions
                    .deliver(DeviceId(device), Downlink::Rpc(request));
            }
            Event::ToDevice { device, downlink } => {
                self.sessions.deliver(DeviceId(device), downlink);
            }
            Event::RpcReply {
                tenant,
                device,
                rpc,
                reply,
            } => {
                let (tenant, device) = (TenantId(tenant), DeviceId(device));
                if !matches!(reply, RpcReply::Delivered) {
                    self.sent.answered(device, rpc);
                }
                let key = WaiterKey {
                    tenant,
                    device,
                    rpc,
                };
                self.waiters.complete(key, reply);
            }
            // Recorded by the sending session itself (a second record could outlive the answer).
            Event::RpcSent { node, .. } if node == self.node => {}
            Event::RpcSent {
                node: _,
                tenant,
                device,
                request_id,
                request,
            } => self
                .sent
                .record(TenantId(tenant), DeviceId(device), request_id, request),
            Event::RpcPending { device } => self.sessions.signal_pending_rpc(DeviceId(device)),
            Event::CloseSessions { device } => self
                .sessions
                .close(DeviceId(device), CloseReason::Administrative),
            Event::CloseProfileSessions { profile } => self
                .sessions
                .close_profile(crate::domain::DeviceProfileId(profile)),
            Event::TraceDevice { device, until_ms } => {
                let left = u64::try_from(until_ms - crate::domain::now_ms()).unwrap_or(0);
                if !crate::observability::trace::trace_device(
                    device,
                    std::time::Duration::from_millis(left),
                ) {
                    tracing::warn!(
                        %device,
                        max = crate::observability::trace::MAX_TRACED_DEVICES,
                        "device trace switch ignored: the most devices traced at once are traced"
                    );
                }
            }
            Event::BusRecovered { node } => {
                self.live.announce();
                self.reoffer_all(&node);
            }
            Event::Watching {
                node,
                entities,
                full,
            } => self.live.on_watching(&node, &entities, full),
            Event::EntityChanged(change) => self.live.deliver(change),
        }
    }

    /// A device connected somewhere: RPCs waiting here for it are sent again.
    fn reoffer(&self, device: DeviceId) {
        let requests = self
            .waiters
            .undelivered(Some(device), crate::domain::now_ms());
        self.republish(requests);
    }

    /// `node` subscribed again after a Redis outage (this node included): requests published while
    /// it was away never reached its sessions, so every waiting, undelivered, unexpired request is
    /// sent again. Sessions that already hold one ignore the copy.
    fn reoffer_all(&self, node: &str) {
        let requests = self.waiters.undelivered(None, crate::domain::now_ms());
        if !requests.is_empty() {
            tracing::info!(
                requests = requests.len(),
                recovered = node,
                "re-offering waiting RPC requests after the Redis outage"
            );
        }
        self.republish(requests);
    }

    /// Publishes the requests again, in the background (dispatch must not wait on Redis).
    fn republish(&self, requests: Vec<(DeviceId, RpcRequest)>) {
        if requests.is_empty() {
            return;
        }
        let Some(bus) = self.bus.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        tokio::spawn(async move {
            for (device, request) in requests {
                let event = Event::ToDevice {
                    device: device.0,
                    downlink: Downlink::Rpc(request),
                };
                if let Err(e) = bus.publish(event).await {
                    tracing::warn!(error = %e, "waiting RPC not re-offered");
                }
            }
        });
    }

    /// The subscription came back after an outage: tells every node, this one first (a publish
    /// dispatches locally before it goes to Redis), so that each re-offers its waiting requests.
    pub fn announce_recovery(&self) {
        let event = Event::BusRecovered {
            node: self.node.clone(),
        };
        let Some(bus) = self.bus.get().and_then(std::sync::Weak::upgrade) else {
            self.dispatch(event);
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = bus.publish(event).await {
                tracing::warn!(error = %e, "bus recovery not announced to other nodes");
            }
        });
    }
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SessionOpened { .. } => "session_opened",
            Self::RpcPolled { .. } => "rpc_polled",
            Self::ToDevice { .. } => "to_device",
            Self::RpcReply { .. } => "rpc_reply",
            Self::RpcSent { .. } => "rpc_sent",
            Self::RpcPending { .. } => "rpc_pending",
            Self::CloseSessions { .. } => "close_sessions",
            Self::CloseProfileSessions { .. } => "close_profile_sessions",
            Self::BusRecovered { .. } => "bus_recovered",
            Self::TraceDevice { .. } => "trace_device",
            Self::Watching { .. } => "watching",
            Self::EntityChanged(_) => "entity_changed",
        }
    }
}

/// Builds the bus the configuration asks for.
pub async fn build(
    redis_url: Option<&str>,
    dispatcher: Arc<Dispatcher>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Arc<dyn Bus>, BusError> {
    let bus: Arc<dyn Bus> = match redis_url {
        None => Arc::new(local::LocalBus::new(dispatcher.clone())),
        Some(url) => Arc::new(redis::RedisBus::start(url, dispatcher.clone(), stop).await?),
    };
    let _ = dispatcher.bus.set(Arc::downgrade(&bus));
    Ok(bus)
}
