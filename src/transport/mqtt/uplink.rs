//! A device session's uplink: PUBLISH topic + payload → rule-engine messages → outcome for the ack.
//! Protocol-independent; `v3` and `v5` map outcomes to their packets.

use std::sync::Arc;

use ntex_bytes::Bytes;
use tracing::Instrument as _;

use super::topics::Uplink;
use crate::app::AppState;
use crate::domain::payload::{self, PayloadError};
use crate::domain::{EntityId, Msg, MsgType, now_ms};
use crate::storage::Device;

/// State of one authenticated device connection (lives on its MQTT worker thread).
pub struct DeviceSession {
    pub state: Arc<AppState>,
    pub device: Device,
    pub session: u64,
}

impl Drop for DeviceSession {
    fn drop(&mut self) {
        self.state.sessions.unregister(self.device.id, self.session);
        tracing::debug!(device = %self.device.id, "session closed");
    }
}

/// What became of one PUBLISH.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Processed and committed.
    Accepted,
    /// Payload could not be converted (§3.5).
    InvalidPayload(String),
    /// No such device topic (§2.1).
    TopicInvalid,
    /// A device API feature this build does not serve yet.
    Unsupported(&'static str),
    /// Processing or storage failed: nothing was acknowledged.
    Failed(String),
}

impl DeviceSession {
    pub async fn publish(&self, topic: &str, payload: Bytes) -> Outcome {
        let span = tracing::debug_span!("uplink", device = %self.device.id, topic);
        self.publish_inner(topic, payload).instrument(span).await
    }

    async fn publish_inner(&self, topic: &str, payload: Bytes) -> Outcome {
        let msgs = match Uplink::parse(topic) {
            Uplink::Telemetry(_) => self.telemetry(&payload),
            Uplink::Attributes(_) => self.attributes(&payload),
            Uplink::Unknown => {
                tracing::debug!(topic, "PUBLISH to an unknown topic");
                return Outcome::TopicInvalid;
            }
            Uplink::AttributeRequest { .. } => return Outcome::Unsupported("attribute requests"),
            Uplink::RpcRequest { .. } | Uplink::RpcResponse { .. } => return Outcome::Unsupported("RPC"),
            Uplink::Claim => return Outcome::Unsupported("claiming"),
            Uplink::FirmwareChunk { .. } => return Outcome::Unsupported("firmware chunks"),
            Uplink::Gateway(_) => return Outcome::Unsupported("the gateway API"),
        };
        let msgs = match msgs {
            Ok(msgs) => msgs,
            Err(e) => return Outcome::InvalidPayload(e.to_string()),
        };
        if msgs.is_empty() {
            return Outcome::Accepted;
        }
        let state = self.state.clone();
        match self.state.rt.spawn(async move { state.ingest(msgs).await }).await {
            Ok(Ok(())) => Outcome::Accepted,
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(e) => Outcome::Failed(format!("processing task failed: {e}")),
        }
    }

    fn telemetry(&self, payload: &[u8]) -> Result<Vec<Msg>, PayloadError> {
        let value = payload::parse_lenient(payload)?;
        let groups = payload::telemetry(&value, self.state.services.typing)?;
        let server_ts = now_ms();
        Ok(groups
            .into_iter()
            .map(|g| {
                let mut msg = self.msg(MsgType::PostTelemetryRequest, payload::kvs_to_object(&g.values));
                msg.metadata
                    .insert("ts".into(), g.ts.unwrap_or(server_ts).to_string());
                msg
            })
            .collect())
    }

    fn attributes(&self, payload: &[u8]) -> Result<Vec<Msg>, PayloadError> {
        let value = payload::parse_lenient(payload)?;
        let kvs = payload::attributes(&value, self.state.services.typing)?;
        let mut msg = self.msg(MsgType::PostAttributesRequest, payload::kvs_to_object(&kvs));
        msg.metadata.insert("notifyDevice".into(), "false".into());
        Ok(vec![msg])
    }

    fn msg(&self, msg_type: MsgType, data: serde_json::Value) -> Msg {
        let mut msg = Msg::new(msg_type, self.device.tenant_id, EntityId::Device(self.device.id), data);
        msg.customer = self.device.customer_id;
        msg.metadata.insert("deviceName".into(), self.device.name.clone());
        msg.metadata
            .insert("deviceType".into(), self.device.profile_name.clone());
        msg
    }
}
