//! The device API whatever the transport: a device's telemetry and attributes become rule-engine
//! messages, its attribute requests are answered from storage, its answers to server-side RPCs
//! complete them and its own RPCs enter the rules. MQTT and HTTP map the outcomes to their
//! packets and statuses; what differs between them is passed in as data.

use std::sync::Arc;
use tracing::Instrument as _;

use serde_json::{Map, Value};

use super::limits::SessionLimits;
use crate::bus::RpcRequest;
use crate::domain::payload::{self, PayloadError};
use crate::domain::{AttributeScope, Device, EntityId, Kv, Msg, MsgType, StorageError, now_ms};
use crate::state::AppState;

/// What became of one device message.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Processed (and committed, where something was written).
    Accepted,
    /// Payload could not be converted.
    InvalidPayload(String),
    /// No such device topic.
    TopicInvalid,
    /// The gateway API, used by a device that is not a gateway.
    NotGateway,
    /// Processing or storage failed: nothing was acknowledged.
    Failed(String),
    /// A rate limit refused the message.
    RateLimited(&'static str),
    /// A request the device API cannot answer (e.g. client RPC without `method`).
    Malformed(String),
}

impl Outcome {
    /// A short name of the outcome (trace spans).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::TopicInvalid => "topic_invalid",
            Self::NotGateway => "not_gateway",
            Self::Failed(_) => "failed",
            Self::RateLimited(_) => "rate_limited",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// A message's slot of the engine's global bound.
pub type Permit = tokio::sync::OwnedSemaphorePermit;

/// Telemetry or attributes: the two kinds of device values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    Telemetry,
    Attributes,
}

/// The attribute keys a device asks for: `None` = not asked; both `None` = everything.
#[derive(Debug, Default)]
pub struct AttributeKeys {
    pub client: Option<Vec<String>>,
    pub shared: Option<Vec<String>>,
}

impl AttributeKeys {
    /// Keys of a comma-separated list, as both transports write them.
    pub fn split(list: &str) -> Vec<String> {
        list.split(',').map(str::to_owned).collect()
    }
}

/// An authenticated device on one transport.
pub struct DeviceLink<'a> {
    pub state: &'a Arc<AppState>,
    pub device: &'a Device,
    /// The device's rate limits, shared by all its sessions and requests.
    pub limits: &'a SessionLimits,
    /// Names the transport in log lines (`mqtt`, `http`).
    pub transport: &'static str,
    /// Whether `ingest` runs the rules on the caller's thread (see [`Processing`]).
    pub processing: Processing,
}

/// Where a device message's rules run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processing {
    /// On the caller's thread, polled inside the main runtime's context (its timers, spawned
    /// tasks and new connections belong to the main runtime): no hand-off between threads. For
    /// callers whose future is not dropped before it completes (the MQTT dispatcher runs each
    /// PUBLISH to its end; a closing connection waits for them, `mqtt::inflight`).
    Inline,
    /// In a task of the main runtime that runs to completion even when the caller goes away
    /// meanwhile (an HTTP request whose client hangs up is dropped at once).
    Spawned,
}

impl DeviceLink<'_> {
    /// The messages of a JSON telemetry or attributes payload: a flat object is typed straight
    /// from its bytes (`payload::flat_telemetry`), anything else is parsed (`parse_lenient`) and
    /// converted as [`values`](Self::values) does, with the same results and errors.
    pub fn json_values(&self, kind: Values, bytes: &[u8]) -> Result<Vec<Msg>, Outcome> {
        let typing = self.state.services.typing;
        let flat = match kind {
            Values::Telemetry => payload::flat_telemetry(bytes, typing),
            Values::Attributes => payload::flat_attributes(bytes, typing),
        };
        match flat {
            Some(kvs) => self.typed_values(kind, kvs).map_err(|r| self.refused(r)),
            None => self.values(kind, payload::parse_lenient(bytes)),
        }
    }

    /// The messages of a telemetry or attributes payload, decoded by the transport (JSON, or the
    /// device profile's protobuf schema), or why there are none. Rate limits are charged here; a
    /// payload breaking a size bound is logged (rate-limited) with the bound.
    pub fn values(
        &self,
        kind: Values,
        decoded: Result<Value, PayloadError>,
    ) -> Result<Vec<Msg>, Outcome> {
        let typing = self.state.services.typing;
        decoded
            .map_err(Rejected::Payload)
            .and_then(|value| match kind {
                Values::Telemetry => {
                    let groups = payload::telemetry(&value, typing)?;
                    self.telemetry(groups)
                }
                Values::Attributes => self.attributes(payload::attributes(&value, typing)?),
            })
            .map_err(|r| self.refused(r))
    }

    /// The messages of values typed already (a flat object: one group at the server's time).
    fn typed_values(&self, kind: Values, kvs: Vec<Kv>) -> Result<Vec<Msg>, Rejected> {
        match kind {
            Values::Telemetry => self.telemetry(vec![payload::TelemetryGroup {
                ts: None,
                values: kvs,
            }]),
            Values::Attributes => self.attributes(kvs),
        }
    }

    fn refused(&self, rejected: Rejected) -> Outcome {
        match rejected {
            Rejected::Payload(e) => {
                if e.is_limit() {
                    crate::observability::log_gate::refused_input(
                        self.transport,
                        &self.device.id,
                        &e,
                    );
                }
                Outcome::InvalidPayload(e.to_string())
            }
            Rejected::Limit(limit) => Outcome::RateLimited(limit),
        }
    }

    fn telemetry(&self, groups: Vec<payload::TelemetryGroup>) -> Result<Vec<Msg>, Rejected> {
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

    fn attributes(&self, kvs: Vec<Kv>) -> Result<Vec<Msg>, Rejected> {
        self.limits
            .admit_telemetry(kvs.len())
            .map_err(Rejected::Limit)?;
        let mut msg = self.values_msg(MsgType::PostAttributesRequest, kvs);
        msg.metadata.insert("notifyDevice".into(), "false".into());
        Ok(vec![msg])
    }

    /// A message from the device with `data`.
    pub fn msg(&self, msg_type: MsgType, data: Value) -> Msg {
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

    /// Runs the messages under the message's engine slot (on this thread or in a task of the main
    /// runtime, `self.processing`); resolves when they are processed and their writes committed.
    pub async fn ingest(&self, permit: Permit, msgs: Vec<Msg>) -> Outcome {
        if msgs.is_empty() {
            return Outcome::Accepted;
        }
        let result = match self.processing {
            Processing::Inline => {
                in_runtime(&self.state.rt, self.state.ingest_admitted(permit, msgs)).await
            }
            Processing::Spawned => {
                let state = self.state.clone();
                let task = self.state.rt.spawn(
                    async move { state.ingest_admitted(permit, msgs).await }
                        .instrument(tracing::Span::current()),
                );
                match task.await {
                    Ok(result) => result,
                    Err(e) => return Outcome::Failed(format!("processing task failed: {e}")),
                }
            }
        };
        match result {
            Ok(()) => Outcome::Accepted,
            // The database cannot hold this message's data: invalid, never worth re-sending.
            Err(crate::engine::EngineError::Storage(StorageError::Invalid(e))) => {
                Outcome::InvalidPayload(e)
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// The device opens its claim window (`services::claiming`). A device that cannot be claimed
    /// (it has a customer, or claiming is not allowed) is acknowledged all the same, as ThingsBoard
    /// does; the refusal is logged.
    pub async fn claim(&self, payload: &[u8]) -> Outcome {
        use crate::services::claiming::{self, RegisterError};
        let request = match claiming::parse_request(payload) {
            Ok(r) => r,
            Err(e) => return Outcome::InvalidPayload(e),
        };
        let state = self.state.clone();
        let device = self.device.clone();
        let opened = self
            .state
            .rt
            .spawn(async move {
                claiming::register(&state.services, &state.config.auth, &device, &request).await
            })
            .await;
        match opened {
            Ok(Ok(_)) => Outcome::Accepted,
            Ok(Err(RegisterError::Storage(e))) => Outcome::Failed(e.to_string()),
            Ok(Err(refused)) => {
                tracing::info!(device = %self.device.id, transport = self.transport, reason = %refused, "claim message refused");
                Outcome::Accepted
            }
            Err(e) => Outcome::Failed(format!("claim task failed: {e}")),
        }
    }

    /// The device's CLIENT and SHARED attributes it asked for, as ThingsBoard answers:
    /// `{"client": {...}, "shared": {...}}`, a section only when it holds something.
    pub async fn attributes_of(&self, keys: AttributeKeys) -> Result<Value, StorageError> {
        let everything = keys.client.is_none() && keys.shared.is_none();
        let wanted = [
            (
                AttributeScope::Client,
                "client",
                keys.client.or(everything.then(Vec::new)),
            ),
            (
                AttributeScope::Shared,
                "shared",
                keys.shared.or(everything.then(Vec::new)),
            ),
        ];
        let store = self.state.services.store.clone();
        let entity = self.device.id.0;
        let fetch = self.state.rt.spawn(async move {
            let mut out = Map::new();
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
            Ok::<_, StorageError>(Value::Object(out))
        });
        fetch
            .await
            .map_err(|e| StorageError::Database(e.to_string()))?
    }

    /// The rule-engine message of the device's own RPC; the reply is routed back to `session`
    /// under `request_id` (metadata read by the "rpc call reply" node).
    pub fn client_rpc_msg(&self, call: ClientRpc, request_id: &str, session: u64) -> Msg {
        let mut msg = self.msg(
            MsgType::ToServerRpcRequest,
            serde_json::json!({"method": call.method, "params": call.params}),
        );
        msg.metadata
            .insert("requestId".into(), request_id.to_owned());
        msg.metadata
            .insert("serviceId".into(), self.state.config.node_id.clone());
        msg.metadata.insert("sessionId".into(), session.to_string());
        msg
    }

    /// The device answered the server-side RPC it was sent under `id` (on any of its sessions,
    /// on any node): the caller is completed in the background. Returns the request, or None
    /// when the id is unknown or expired (the answer is dropped).
    pub fn answer_rpc(&self, id: i32, body: String) -> Option<RpcRequest> {
        let (tenant, device) = (self.device.tenant_id, self.device.id);
        let Some(req) = self.state.services.rpc.sent.take(tenant, device, id) else {
            tracing::debug!(id, "reply to an unknown or expired RPC; dropped");
            return None;
        };
        let services = self.state.services.clone();
        let request = req.clone();
        let span = crate::observability::trace::remote_child(req.traceparent.as_deref(), || {
            tracing::info_span!(
                target: crate::observability::trace::TARGET,
                "rpc.device.reply",
                otel.kind = "consumer",
                device.id = %device,
                rpc.id = %req.rpc,
            )
        });
        self.state.rt.spawn(
            async move {
                services.rpc.replied(tenant, device, &request, body).await;
            }
            .instrument(span),
        );
        Some(req)
    }
}

/// A device's own RPC request.
#[derive(Debug)]
pub struct ClientRpc {
    pub method: String,
    pub params: Value,
}

impl ClientRpc {
    /// `{"method": "...", "params": ...}` (params optional).
    pub fn parse(payload: &[u8]) -> Result<Self, Outcome> {
        let request = match payload::parse_lenient(payload) {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => {
                return Err(Outcome::InvalidPayload(
                    "RPC request must be a JSON object".into(),
                ));
            }
            Err(e) => return Err(Outcome::InvalidPayload(e.to_string())),
        };
        let Some(method) = request.get("method").and_then(Value::as_str) else {
            return Err(Outcome::Malformed(
                "client RPC request without \"method\"".into(),
            ));
        };
        Ok(Self {
            method: method.to_owned(),
            params: request.get("params").cloned().unwrap_or(Value::Null),
        })
    }
}

/// A server-side RPC as the device receives it: `{"method", "params"}`, and its `id` where the
/// transport does not carry it elsewhere (HTTP; MQTT names it in the topic).
pub fn rpc_request_json(req: &RpcRequest, id: Option<i32>) -> Value {
    let params: Value = serde_json::from_str(&req.params).unwrap_or_else(|_| {
        if req.params.is_empty() {
            Value::Null
        } else {
            Value::String(req.params.clone())
        }
    });
    let mut body = Map::new();
    if let Some(id) = id {
        body.insert("id".into(), Value::from(id));
    }
    body.insert("method".into(), Value::String(req.method.clone()));
    body.insert("params".into(), params);
    Value::Object(body)
}

/// Polls `fut` on this thread with `rt`'s context entered during each poll, so that what it
/// starts (timers, tasks, connections) is the runtime's, as if it ran there.
async fn in_runtime<F: Future>(rt: &tokio::runtime::Handle, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let _context = rt.enter();
        fut.as_mut().poll(cx)
    })
    .await
}

enum Rejected {
    Payload(PayloadError),
    Limit(&'static str),
}

impl From<PayloadError> for Rejected {
    fn from(e: PayloadError) -> Self {
        Self::Payload(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_rpc_requests_need_an_object_with_a_method() {
        let call = ClientRpc::parse(br#"{"method":"m","params":{"a":1}}"#).unwrap();
        assert_eq!(call.method, "m");
        assert_eq!(call.params, serde_json::json!({"a": 1}));
        assert_eq!(
            ClientRpc::parse(br#"{"method":"m"}"#).unwrap().params,
            Value::Null
        );
        assert!(matches!(
            ClientRpc::parse(b"[1]"),
            Err(Outcome::InvalidPayload(_))
        ));
        assert!(matches!(
            ClientRpc::parse(br#"{"params":1}"#),
            Err(Outcome::Malformed(_))
        ));
    }

    #[test]
    fn rpc_requests_carry_their_id_where_asked() {
        let req = RpcRequest {
            rpc: uuid::Uuid::new_v4(),
            request_id: 0,
            method: "set".to_owned(),
            params: r#"{"v":1}"#.to_owned(),
            oneway: false,
            persistent: false,
            expiration_time: i64::MAX,
            traceparent: None,
        };
        assert_eq!(
            rpc_request_json(&req, Some(3)).to_string(),
            r#"{"id":3,"method":"set","params":{"v":1}}"#
        );
        let text = RpcRequest {
            params: "plain".to_owned(),
            ..req
        };
        assert_eq!(
            rpc_request_json(&text, None).to_string(),
            r#"{"method":"set","params":"plain"}"#
        );
    }
}
