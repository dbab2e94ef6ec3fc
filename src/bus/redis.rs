//! The Redis bus: events published on one channel, every node subscribed, reconnect with back-off.
//! Events are dispatched on the publishing node first, so each node keeps serving its own devices
//! while Redis is away; pub/sub stores nothing, so what is published during an outage is lost:
//! when the subscription comes back, persistent RPCs are re-signalled and every node re-offers the
//! RPC requests its callers still wait on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, BusStatus, Dispatcher, Event};

/// The one channel every node publishes on and subscribes to.
pub const CHANNEL: &str = "ferroboard:bus";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds one publish attempt, reconnection included, whatever the client library does.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A subscribed connection can hang without closing (a stopped or partitioned Redis): ping it.
const PING_EVERY: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What travels on the channel: the event and the node that published it.
#[derive(Serialize)]
struct Outgoing<'a> {
    node: &'a str,
    event: &'a Event,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Incoming {
    node: String,
    event: Event,
}

fn encode(node: &str, event: &Event) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Outgoing { node, event })
}

fn decode(payload: &[u8]) -> Result<Incoming, serde_json::Error> {
    serde_json::from_slice(payload)
}

pub struct RedisBus {
    dispatcher: Arc<Dispatcher>,
    publisher: ConnectionManager,
    /// Whether the subscriber currently holds a live subscription.
    up: Arc<AtomicBool>,
}

impl RedisBus {
    /// Connects lazily: a node whose Redis is down still starts, serves its own devices and
    /// reports the bus DOWN until the subscriber gets through. Waits briefly for the first
    /// subscription so that a node reporting UP already receives events.
    pub async fn start(
        url: &str,
        dispatcher: Arc<Dispatcher>,
        stop: CancellationToken,
    ) -> Result<Self, BusError> {
        let client =
            redis::Client::open(url).map_err(|e| BusError(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let publisher = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| BusError(format!("cannot set up the Redis publisher: {e}")))?;
        let up = Arc::new(AtomicBool::new(false));
        metrics::gauge!("ferroboard_bus_up").set(0.0);
        let (first_tx, first_rx) = oneshot::channel();
        let subscriber = Subscriber {
            client,
            dispatcher: dispatcher.clone(),
            up: up.clone(),
            stop,
        };
        tokio::spawn(subscriber.run(first_tx));
        let _ = tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_millis(500), first_rx).await;
        Ok(Self {
            dispatcher,
            publisher,
            up,
        })
    }

    async fn send(&self, payload: &str) -> Result<(), SendError> {
        let mut conn = self.publisher.clone();
        match tokio::time::timeout(PUBLISH_TIMEOUT, conn.publish::<_, _, i64>(CHANNEL, payload))
            .await
        {
            Ok(Ok(_receivers)) => Ok(()),
            Ok(Err(e)) => Err(SendError::Failed(e.to_string())),
            Err(_) => Err(SendError::TimedOut),
        }
    }
}

enum SendError {
    Failed(String),
    /// Not retried: a hung Redis would hold the caller twice as long.
    TimedOut,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(e) => f.write_str(e),
            Self::TimedOut => write!(f, "no answer within {PUBLISH_TIMEOUT:?}"),
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, event: Event) -> Result<(), BusError> {
        self.dispatcher.dispatch(event.clone());
        let payload = encode(&self.dispatcher.node, &event)
            .map_err(|e| BusError(format!("cannot encode the event: {e}")))?;
        let mut result = self.send(&payload).await;
        // After an outage longer than its retry budget the manager hands back one stale error
        // before reconnecting; when the subscriber says Redis answers, one retry gets through.
        if matches!(result, Err(SendError::Failed(_))) && self.up.load(Ordering::SeqCst) {
            result = self.send(&payload).await;
        }
        match result {
            Ok(()) => {
                metrics::counter!("ferroboard_bus_published_total").increment(1);
                Ok(())
            }
            Err(e) => {
                metrics::counter!("ferroboard_bus_publish_failures_total").increment(1);
                tracing::debug!(kind = event.kind(), error = %e, "event not published to Redis");
                Err(BusError(format!("Redis publish failed: {e}")))
            }
        }
    }

    fn status(&self) -> BusStatus {
        if self.up.load(Ordering::SeqCst) {
            BusStatus::Up
        } else {
            BusStatus::Down
        }
    }
}

/// The subscribing side: its own PubSub connection, reconnected with exponential back-off.
struct Subscriber {
    client: redis::Client,
    dispatcher: Arc<Dispatcher>,
    up: Arc<AtomicBool>,
    stop: CancellationToken,
}

/// Why a subscription ended.
enum Ended {
    Stopped,
    Lost(String),
}

impl Subscriber {
    async fn run(self, first_attempt: oneshot::Sender<()>) {
        let mut first_attempt = Some(first_attempt);
        let mut backoff = BACKOFF_MIN;
        let mut connected_before = false;
        let mut down_reported = false;
        let addr = self.client.get_connection_info().addr().to_string();
        loop {
            let attempt = tokio::select! {
                () = self.stop.cancelled() => return,
                r = self.connect() => r,
            };
            match attempt {
                Ok((sink, stream)) => {
                    backoff = BACKOFF_MIN;
                    self.set_up(true);
                    if let Some(tx) = first_attempt.take() {
                        let _ = tx.send(());
                    }
                    if connected_before {
                        tracing::info!(redis = %addr, channel = CHANNEL, node = %self.dispatcher.node, "Redis bus recovered; cross-node delivery resumed");
                        self.resignal_pending_rpcs();
                        self.dispatcher.announce_recovery();
                    } else {
                        tracing::info!(redis = %addr, channel = CHANNEL, node = %self.dispatcher.node, "Redis bus connected");
                    }
                    connected_before = true;
                    let ended = self.receive(sink, stream).await;
                    self.set_up(false);
                    match ended {
                        Ended::Stopped => return,
                        Ended::Lost(e) => {
                            tracing::warn!(redis = %addr, "Redis bus down: {e}; serving local devices only");
                            down_reported = true;
                        }
                    }
                }
                Err(e) => {
                    if let Some(tx) = first_attempt.take() {
                        let _ = tx.send(());
                    }
                    if down_reported {
                        tracing::debug!(redis = %addr, error = %e, retry_in = ?backoff, "Redis bus still down");
                    } else {
                        tracing::warn!(redis = %addr, "Redis bus down: {e}; serving local devices only");
                        down_reported = true;
                    }
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let subscribe = async {
            let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
            sink.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, subscribe).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no subscription within {CONNECT_TIMEOUT:?}")),
        }
    }

    async fn receive(&self, mut sink: PubSubSink, mut stream: PubSubStream) -> Ended {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return Ended::Stopped,
                msg = stream.next() => match msg {
                    Some(msg) => self.handle(msg.get_payload_bytes()),
                    None => return Ended::Lost("connection closed".to_owned()),
                },
                _ = ping.tick() => {
                    // In subscribed mode PONG is `["pong", ""]`: only `Value` parses it.
                    match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Ended::Lost(format!("ping failed: {e}")),
                        Err(_) => return Ended::Lost(format!("no PONG within {PING_TIMEOUT:?}")),
                    }
                }
            }
        }
    }

    fn handle(&self, payload: &[u8]) {
        match decode(payload) {
            // Already dispatched here when it was published.
            Ok(incoming) if incoming.node == self.dispatcher.node => {}
            Ok(incoming) => {
                metrics::counter!("ferroboard_bus_received_total").increment(1);
                self.dispatcher.dispatch(incoming.event);
            }
            Err(e) => {
                metrics::counter!("ferroboard_bus_undecodable_total").increment(1);
                tracing::warn!(error = %e, "undecodable message on the Redis bus; ignored");
            }
        }
    }

    /// Requests published while the subscription was down are lost; the devices of this node
    /// reload their stored persistent RPCs.
    fn resignal_pending_rpcs(&self) {
        let devices = self.dispatcher.sessions.devices();
        if !devices.is_empty() {
            tracing::info!(
                devices = devices.len(),
                "re-signalling queued persistent RPCs after the Redis outage"
            );
        }
        for device in devices {
            self.dispatcher
                .dispatch(Event::RpcPending { device: device.0 });
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        metrics::gauge!("ferroboard_bus_up").set(if up { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::bus::{Downlink, RpcReply, RpcRequest};

    fn every_event() -> Vec<Event> {
        let (tenant, device) = (Uuid::new_v4(), Uuid::new_v4());
        let request = RpcRequest {
            rpc: Uuid::new_v4(),
            request_id: 42,
            method: "setGpio".to_owned(),
            params: r#"{"pin":7,"value":1.5}"#.to_owned(),
            oneway: false,
            persistent: true,
            expiration_time: 1_700_000_000_123,
            traceparent: None,
        };
        vec![
            Event::SessionOpened {
                device,
                node: "b".to_owned(),
                session: u64::MAX,
            },
            Event::ToDevice {
                device,
                downlink: Downlink::Attributes {
                    payload: r#"{"k":1,"deleted":["x"]}"#.to_owned(),
                },
            },
            Event::ToDevice {
                device,
                downlink: Downlink::Rpc(request.clone()),
            },
            Event::RpcSent {
                node: "b".to_owned(),
                tenant,
                device,
                request_id: i32::MAX,
                request,
            },
            Event::ToDevice {
                device,
                downlink: Downlink::ClientRpcReply {
                    session: 3,
                    request_id: "17".to_owned(),
                    body: "{\"ok\":true}".to_owned(),
                },
            },
            Event::RpcReply {
                tenant,
                device,
                rpc: Uuid::new_v4(),
                reply: RpcReply::Ok {
                    body: "not json \u{1F600}".to_owned(),
                },
            },
            Event::RpcReply {
                tenant,
                device,
                rpc: Uuid::new_v4(),
                reply: RpcReply::Delivered,
            },
            Event::RpcReply {
                tenant,
                device,
                rpc: Uuid::new_v4(),
                reply: RpcReply::Failed {
                    error: "session closed".to_owned(),
                },
            },
            Event::RpcPending { device },
            Event::CloseSessions { device },
            Event::BusRecovered {
                node: "b".to_owned(),
            },
        ]
    }

    #[test]
    fn envelope_round_trips_every_event() {
        for event in every_event() {
            let text = encode("node-a", &event).expect("encode");
            let back = decode(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                back,
                Incoming {
                    node: "node-a".to_owned(),
                    event
                },
                "{text}"
            );
        }
    }

    #[test]
    fn envelope_is_plain_json_with_the_origin_node() {
        let device = Uuid::new_v4();
        let text = encode("a", &Event::RpcPending { device }).expect("encode");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["node"], "a");
        assert_eq!(value["event"]["kind"], "rpc_pending");
        assert_eq!(value["event"]["device"], device.to_string());
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert!(decode(b"").is_err());
        assert!(decode(b"{\"node\":\"a\",\"event\":{\"kind\":\"nope\"}}").is_err());
        assert!(decode(&[0xff, 0xfe]).is_err());
    }
}
