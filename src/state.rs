//! The state shared by every part (REST, MQTT sessions, background tasks), on both runtimes.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::Msg;
use crate::engine::{Engine, EngineError};
use crate::services::Services;
use crate::storage;

/// Shared by every part, on both runtimes.
pub struct AppState {
    pub config: Config,
    pub services: Arc<Services>,
    pub engine: Arc<Engine>,
    pub metrics: PrometheusHandle,
    pub jwt_secret: String,
    /// The main tokio runtime; MQTT workers hop onto it for engine and storage work.
    pub rt: tokio::runtime::Handle,
    /// Messages in processing, bounded: when exhausted, sessions stop reading.
    pub inflight: Arc<Semaphore>,
    pub mqtt_accepting: AtomicBool,
    /// Set when a shutdown began: the node still serves (the drain window) but is not ready.
    pub draining: AtomicBool,
    pub shutdown: CancellationToken,
    pub sessions: Arc<crate::bus::Registry>,
    /// State the MQTT sessions share (in-flight statistics).
    pub mqtt: crate::transport::mqtt::MqttShared,
    /// Per-device rate limits, shared by every transport.
    pub device_limits: crate::transport::limits::DeviceLimits,
    /// The buckets each gateway's devices share (`limits.gateway_*`), by gateway.
    pub gateway_limits: crate::transport::limits::DeviceLimits,
    /// The HTTP device API's long polls (bounded by `http_device.max_polls`).
    pub http_polls: crate::transport::http::Polls,
}

impl AppState {
    /// Runs a device's messages through the rule engine; resolves when all of them are processed
    /// and their writes committed. Waits for capacity first (back-pressure).
    pub async fn ingest(&self, msgs: Vec<Msg>) -> Result<(), EngineError> {
        let permit = self.admit().await?;
        self.ingest_admitted(permit, msgs).await
    }

    /// One slot of the engine's bound for one incoming message (a PUBLISH, a REST call), whatever
    /// it holds: a payload of many `ts` groups takes one slot, as a single value does. Taken
    /// before the message is built, so nothing waits unbounded in memory.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        self.inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Storage(storage::StorageError::Closed))
    }

    /// `ingest` with the slot taken already (released when done).
    pub async fn ingest_admitted(
        &self,
        _permit: OwnedSemaphorePermit,
        msgs: Vec<Msg>,
    ) -> Result<(), EngineError> {
        for msg in msgs {
            metrics::counter!("ferroboard_messages_in_total", "type" => msg.msg_type.metric_label()).increment(1);
            self.engine.process(msg, &self.services).await?;
        }
        Ok(())
    }
}
