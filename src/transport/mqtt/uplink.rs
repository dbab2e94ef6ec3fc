//! A device session's uplink: PUBLISH topic + payload → rule-engine messages or direct answers →
//! outcome for the ack. Protocol-independent; `v3` and `v5` map outcomes to their packets.

use std::rc::Rc;
use std::time::Duration;

use ntex_bytes::Bytes;
use serde_json::Value;
use tracing::Instrument as _;

use super::session::{DeviceSession, Granted};
use super::topics::{Subscription, Uplink};
use crate::domain::payload::{self, PayloadError};
use crate::domain::{AttributeScope, EntityId, Kv, Msg, MsgType, now_ms};

/// What became of one PUBLISH.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Processed (and committed, where something was written).
    Accepted,
    /// Payload could not be converted.
    InvalidPayload(String),
    /// No such device topic.
    TopicInvalid,
    /// A device API feature this build does not serve yet.
    Unsupported(&'static str),
    /// Processing or storage failed: nothing was acknowledged.
    Failed(String),
    /// A rate limit refused the message; the session is closed.
    RateLimited(&'static str),
    /// A request the device API cannot answer (e.g. client RPC without `method`); the session is closed.
    Malformed(String),
}

impl DeviceSession {
    pub async fn publish(self: &Rc<Self>, topic: &str, payload: Bytes) -> Outcome {
        // The engine's global bound comes first: nothing is built while it is exhausted (and the
        // session, its in-flight slots taken, stops reading).
        let permit = match self.state.admit().await {
            Ok(permit) => permit,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let span = tracing::debug_span!("uplink", device = %self.device.id, topic);
        let outcome = self.route(topic, payload, permit).instrument(span).await;
        self.state.services.device_state.activity(&self.device);
        if let Outcome::RateLimited(limit) = outcome {
            metrics::counter!("ferroboard_rate_limited_total", "limit" => limit).increment(1);
            tracing::warn!(device = %self.device.id, name = %self.device.name, limit, "rate limit '{limit}' exceeded; closing the session");
        }
        outcome
    }

    async fn route(self: &Rc<Self>, topic: &str, payload: Bytes, permit: Permit) -> Outcome {
        let uplink = Uplink::parse(topic);
        let msgs = match &uplink {
            Uplink::Telemetry(_) => self.telemetry(&payload),
            Uplink::Attributes(_) => self.attributes(&payload),
            _ => {
                if let Err(limit) = self.limits.admit_message() {
                    return Outcome::RateLimited(limit);
                }
                return self.request(uplink, payload, permit).await;
            }
        };
        let msgs = match msgs {
            Ok(msgs) => msgs,
            Err(Rejected::Payload(e)) => {
                if e.is_limit() {
                    crate::observability::log_gate::refused_input("mqtt", &self.device.id, &e);
                }
                return Outcome::InvalidPayload(e.to_string());
            }
            Err(Rejected::Limit(limit)) => return Outcome::RateLimited(limit),
        };
        self.ingest(permit, msgs).await
    }

    /// Requests hold the engine slot until answered (a client RPC until the rules took it).
    async fn request(self: &Rc<Self>, uplink: Uplink, payload: Bytes, permit: Permit) -> Outcome {
        if let Uplink::RpcRequest { id, v2 } = &uplink {
            return self.client_rpc(id, *v2, &payload, permit).await;
        }
        let _permit = permit;
        match uplink {
            Uplink::AttributeRequest { id, v2 } => self.attribute_request(&id, v2, &payload).await,
            Uplink::RpcResponse { id, .. } => self.rpc_response(&id, payload),
            Uplink::RpcRequest { .. } | Uplink::Telemetry(_) | Uplink::Attributes(_) => {
                Outcome::Accepted
            }
            Uplink::Unknown => {
                tracing::debug!("PUBLISH to an unknown topic");
                Outcome::TopicInvalid
            }
            Uplink::Claim => self.claim(&payload).await,
            Uplink::FirmwareChunk { .. } => Outcome::Unsupported("firmware chunks"),
            Uplink::Gateway(_) => Outcome::Unsupported("the gateway API"),
        }
    }

    /// The device opens its claim window. A device that cannot be claimed (it has a customer, or
    /// claiming is not allowed) is acknowledged all the same, as ThingsBoard does; the refusal is
    /// logged.
    async fn claim(&self, payload: &[u8]) -> Outcome {
        let request = match crate::services::claiming::parse_request(payload) {
            Ok(r) => r,
            Err(e) => return Outcome::InvalidPayload(e),
        };
        let state = self.state.clone();
        let device = self.device.clone();
        let opened = self
            .state
            .rt
            .spawn(async move {
                crate::services::claiming::register(
                    &state.services,
                    &state.config.auth,
                    &device,
                    &request,
                )
                .await
            })
            .await;
        match opened {
            Ok(Ok(_)) => Outcome::Accepted,
            Ok(Err(crate::services::claiming::RegisterError::Storage(e))) => {
                Outcome::Failed(e.to_string())
            }
            Ok(Err(refused)) => {
                tracing::info!(device = %self.device.id, reason = %refused, "claim message refused");
                Outcome::Accepted
            }
            Err(e) => Outcome::Failed(format!("claim task failed: {e}")),
        }
    }

    /// Runs the messages on the main runtime under the PUBLISH's engine slot. The task runs to
    /// completion even when this session goes away meanwhile.
    async fn ingest(&self, permit: Permit, msgs: Vec<Msg>) -> Outcome {
        if msgs.is_empty() {
            return Outcome::Accepted;
        }
        let state = self.state.clone();
        match self
            .state
            .rt
            .spawn(async move { state.ingest_admitted(permit, msgs).await })
            .await
        {
            Ok(Ok(())) => Outcome::Accepted,
            // The database cannot hold this message's data: invalid, never worth re-sending.
            Ok(Err(crate::engine::EngineError::Storage(crate::domain::StorageError::Invalid(
                e,
            )))) => Outcome::InvalidPayload(e),
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(e) => Outcome::Failed(format!("processing task failed: {e}")),
        }
    }

    fn telemetry(&self, payload: &[u8]) -> Result<Vec<Msg>, Rejected> {
        let value = payload::parse_lenient(payload)?;
        let groups = payload::telemetry(&value, self.state.services.typing)?;
        let points = groups.iter().map(|g| g.values.len()).sum();
        self.limits
            .admit_telemetry(points)
            .map_err(Rejected::Limit)?;
        let server_ts = now_ms();
        Ok(groups
            .into_iter()
            .map(|g| {
                let mut msg = self.values_msg(MsgType::PostTelemetryRequest, g.values);
                msg.metadata
                    .insert("ts".into(), g.ts.unwrap_or(server_ts).to_string());
                msg
            })
            .collect())
    }

    fn attributes(&self, payload: &[u8]) -> Result<Vec<Msg>, Rejected> {
        let value = payload::parse_lenient(payload)?;
        let kvs = payload::attributes(&value, self.state.services.typing)?;
        self.limits
            .admit_telemetry(kvs.len())
            .map_err(Rejected::Limit)?;
        let mut msg = self.values_msg(MsgType::PostAttributesRequest, kvs);
        msg.metadata.insert("notifyDevice".into(), "false".into());
        Ok(vec![msg])
    }

    pub(super) fn msg(&self, msg_type: MsgType, data: Value) -> Msg {
        let msg = Msg::new(
            msg_type,
            self.device.tenant_id,
            EntityId::Device(self.device.id),
            data,
        );
        self.stamp_device(msg)
    }

    /// A message of the device's typed values (telemetry or attributes): data is their object.
    fn values_msg(&self, msg_type: MsgType, values: Vec<Kv>) -> Msg {
        let msg = Msg::with_values(
            msg_type,
            self.device.tenant_id,
            EntityId::Device(self.device.id),
            values,
        );
        self.stamp_device(msg)
    }

    /// Adds what every message from this device carries: customer, device name and type.
    fn stamp_device(&self, mut msg: Msg) -> Msg {
        msg.customer = self.device.customer_id;
        msg.metadata
            .insert("deviceName".into(), self.device.name.clone());
        msg.metadata
            .insert("deviceType".into(), self.device.profile_name.clone());
        msg
    }

    /// `{"clientKeys": "a,b", "sharedKeys": "c"}`; both absent = everything.
    async fn attribute_request(self: &Rc<Self>, id: &str, v2: bool, payload: &[u8]) -> Outcome {
        let request = match payload::parse_lenient(payload) {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => {
                return Outcome::InvalidPayload("attribute request must be a JSON object".into());
            }
            Err(e) => return Outcome::InvalidPayload(e.to_string()),
        };
        let keys = |name: &str| -> Result<Option<Vec<String>>, String> {
            match request.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.split(',').map(str::to_owned).collect())),
                Some(Value::Array(a)) if a.len() == 1 => Ok(a[0]
                    .as_str()
                    .map(|s| s.split(',').map(str::to_owned).collect())),
                Some(_) => Err(format!("{name} must be a comma-separated string")),
            }
        };
        let (client, shared) = match (keys("clientKeys"), keys("sharedKeys")) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => return Outcome::InvalidPayload(e),
        };
        let Ok(request_id) = id.parse::<i32>() else {
            return Outcome::InvalidPayload(format!(
                "attribute request id '{id}' is not an integer"
            ));
        };
        let both_absent = client.is_none() && shared.is_none();
        let wanted = [
            (
                AttributeScope::Client,
                "client",
                client.or(both_absent.then(Vec::new)),
            ),
            (
                AttributeScope::Shared,
                "shared",
                shared.or(both_absent.then(Vec::new)),
            ),
        ];
        let store = self.state.services.store.clone();
        let entity = self.device.id.0;
        let fetch = self.state.rt.spawn(async move {
            let mut out = serde_json::Map::new();
            for (scope, name, keys) in wanted {
                let Some(keys) = keys else { continue };
                let filter = (!keys.is_empty()).then_some(keys.as_slice());
                let rows = store.find_attributes(entity, scope, filter).await?;
                if !rows.is_empty() {
                    let section = rows
                        .into_iter()
                        .map(|r| (r.key, r.value.to_json()))
                        .collect();
                    out.insert(name.to_owned(), Value::Object(section));
                }
            }
            Ok::<_, crate::domain::StorageError>(Value::Object(out))
        });
        let body = match fetch.await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Outcome::Failed(e.to_string()),
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if request_id >= 0 {
            let topic = if v2 {
                format!("v2/a/res/{id}")
            } else {
                format!("v1/devices/me/attributes/response/{id}")
            };
            let qos1 = self.response_qos(&topic);
            self.spawn_publish(topic, Bytes::from(body.to_string()), qos1);
        }
        Outcome::Accepted
    }

    /// The device answers a server-side RPC.
    fn rpc_response(self: &Rc<Self>, id: &str, payload: Bytes) -> Outcome {
        let Ok(id) = id.parse::<i32>() else {
            return Outcome::InvalidPayload(format!("RPC response id '{id}' is not an integer"));
        };
        let (tenant, device) = (self.device.tenant_id, self.device.id);
        // Any session of the device answers: the id is the device's, not this session's.
        let Some(req) = self.state.services.rpc.sent.take(tenant, device, id) else {
            tracing::debug!(id, "reply to an unknown or expired RPC; dropped");
            return Outcome::Accepted;
        };
        // Until SUCCESSFUL is stored, a reload may offer it again: not re-sent.
        self.rpc.borrow_mut().done(req.rpc);
        let body = String::from_utf8_lossy(&payload).into_owned();
        self.on_runtime(move |s| async move { s.rpc.replied(tenant, device, &req, body).await });
        Outcome::Accepted
    }

    /// The device's own RPC: `getSessionLimits` is answered here, the rest goes to the rules.
    async fn client_rpc(
        self: &Rc<Self>,
        id: &str,
        v2: bool,
        payload: &[u8],
        permit: Permit,
    ) -> Outcome {
        let request = match payload::parse_lenient(payload) {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => return Outcome::InvalidPayload("RPC request must be a JSON object".into()),
            Err(e) => return Outcome::InvalidPayload(e.to_string()),
        };
        let Some(method) = request
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Outcome::Malformed("client RPC request without \"method\"".into());
        };
        if id.is_empty() || id.parse::<i64>().is_err() {
            return Outcome::Malformed(format!("client RPC request id '{id}' is not an integer"));
        }
        {
            // Each waiting request holds an entry and a timer: at most `max_inflight` of them.
            let mut waiting = self.client_rpc.borrow_mut();
            if waiting.contains_key(id) {
                return Outcome::Malformed(format!(
                    "client RPC request id {id} is already waiting for its answer"
                ));
            }
            let max = usize::from(self.state.config.mqtt.max_inflight);
            if waiting.len() >= max {
                return Outcome::Malformed(format!(
                    "more than {max} client RPC requests waiting for their answer (mqtt.max_inflight)"
                ));
            }
            waiting.insert(id.to_owned(), v2);
        }
        if method == "getSessionLimits" && !v2 {
            let config = &self.state.config;
            let limits = super::limits::session_limits_json(
                config.mqtt.max_packet_size,
                config.mqtt.max_inflight,
                &config.limits,
            );
            self.client_rpc_reply(id, Bytes::from(limits.to_string()));
            return Outcome::Accepted;
        }
        self.arm_client_rpc_timeout(id.to_owned());
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        let mut msg = self.msg(
            MsgType::ToServerRpcRequest,
            serde_json::json!({"method": method, "params": params}),
        );
        msg.metadata.insert("requestId".into(), id.to_owned());
        msg.metadata
            .insert("serviceId".into(), self.state.config.node_id.clone());
        msg.metadata
            .insert("sessionId".into(), self.session.to_string());
        self.ingest(permit, vec![msg]).await
    }

    /// No rule answered within the timeout: `{"error":"timeout"}`.
    fn arm_client_rpc_timeout(self: &Rc<Self>, id: String) {
        let weak = Rc::downgrade(self);
        let timeout = Duration::from_millis(self.state.config.mqtt.client_rpc_timeout_ms);
        ntex_rt::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(sess) = weak.upgrade() {
                sess.client_rpc_reply(&id, Bytes::from_static(br#"{"error":"timeout"}"#));
            }
        });
    }

    /// SUBSCRIBE of one filter; returns the granted QoS (true = 1) or None when refused.
    pub fn subscribe(self: &Rc<Self>, filter: &str, qos1: bool) -> Option<bool> {
        let kind = Subscription::parse(filter)?;
        let granted = Granted {
            filter: filter.to_owned(),
            qos1,
        };
        match kind {
            Subscription::AttributeUpdates => *self.attributes_sub.borrow_mut() = Some(granted),
            Subscription::RpcRequests => {
                *self.rpc_sub.borrow_mut() = Some(granted);
                self.rpc_subscribed();
            }
            Subscription::Responses => {
                let mut subs = self.response_subs.borrow_mut();
                subs.retain(|g| g.filter != filter);
                subs.push(granted);
            }
        }
        Some(qos1)
    }

    /// UNSUBSCRIBE of one filter; false when the filter is not one devices may use.
    pub fn unsubscribe(&self, filter: &str) -> bool {
        match Subscription::parse(filter) {
            Some(Subscription::AttributeUpdates) => *self.attributes_sub.borrow_mut() = None,
            Some(Subscription::RpcRequests) => *self.rpc_sub.borrow_mut() = None,
            Some(Subscription::Responses) => self
                .response_subs
                .borrow_mut()
                .retain(|g| g.filter != filter),
            None => return false,
        }
        true
    }
}

/// A PUBLISH's slot of the engine's global bound.
type Permit = tokio::sync::OwnedSemaphorePermit;

enum Rejected {
    Payload(PayloadError),
    Limit(&'static str),
}

impl From<PayloadError> for Rejected {
    fn from(e: PayloadError) -> Self {
        Self::Payload(e)
    }
}
