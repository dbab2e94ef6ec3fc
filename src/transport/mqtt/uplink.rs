//! A device session's uplink: a PUBLISH's topic picks the device API request (`transport::uplink`,
//! shared with HTTP), answers go back on the session's topics; `v3` and `v5` map outcomes to their
//! packets.

use std::rc::Rc;
use std::time::Duration;

use ntex_bytes::Bytes;
use serde_json::Value;

use super::session::{DeviceSession, Granted};
use super::topics::{Format, Subscription, Uplink};
use crate::domain::AttributeScope;
use crate::domain::payload::{self, PayloadError};
use crate::transport::uplink::{AttributeKeys, ClientRpc, DeviceLink, Permit, Processing, Values};

pub use crate::transport::uplink::Outcome;

impl DeviceSession {
    pub async fn publish(self: &Rc<Self>, topic: &str, payload: Bytes) -> Outcome {
        // The engine's global bound comes first: nothing is built while it is exhausted (and the
        // session, its in-flight slots taken, stops reading).
        let permit = match self.state.admit().await {
            Ok(permit) => permit,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let outcome = self.route(topic, payload, permit).await;
        self.state.services.device_state.activity(&self.device);
        if let Outcome::RateLimited(limit) = outcome {
            metrics::counter!("ferroboard_rate_limited_total", "limit" => limit).increment(1);
            tracing::warn!(device = %self.device.id, name = %self.device.name, limit, "rate limit '{limit}' exceeded; closing the session");
        }
        outcome
    }

    async fn route(self: &Rc<Self>, topic: &str, payload: Bytes, permit: Permit) -> Outcome {
        let uplink = Uplink::parse(topic, &self.settings);
        let (kind, format) = match &uplink {
            Uplink::Telemetry(format) => (Values::Telemetry, *format),
            Uplink::Attributes(format) => (Values::Attributes, *format),
            Uplink::Gateway(topic) => return self.gateway_publish(*topic, &payload, permit).await,
            _ => {
                if let Err(limit) = self.limits.admit_message() {
                    return Outcome::RateLimited(limit);
                }
                return self.request(uplink, payload, permit).await;
            }
        };
        let msgs = if self.is_json(format) {
            self.link().json_values(kind, &payload)
        } else {
            let decoded = self.decode(format, matches!(kind, Values::Attributes), &payload);
            self.link().values(kind, decoded)
        };
        match msgs {
            Ok(msgs) => self.link().ingest(permit, msgs).await,
            Err(outcome) => outcome,
        }
    }

    /// The protocol-independent device API of this session's device.
    pub(super) fn link(&self) -> DeviceLink<'_> {
        DeviceLink {
            state: &self.state,
            device: &self.device,
            limits: &self.limits,
            transport: "mqtt",
            processing: Processing::Inline,
        }
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
            Uplink::RpcRequest { .. }
            | Uplink::Telemetry(_)
            | Uplink::Attributes(_)
            | Uplink::Gateway(_) => Outcome::Accepted,
            Uplink::Unknown => {
                tracing::debug!("PUBLISH to an unknown topic");
                Outcome::TopicInvalid
            }
            Uplink::Claim => self.link().claim(&payload).await,
            Uplink::FirmwareChunk {
                request,
                chunk,
                software,
            } => {
                self.package_chunk(&request, &chunk, software, &payload)
                    .await
            }
        }
    }

    /// Whether a payload of `format` is JSON (else the profile's protobuf schema decodes it).
    fn is_json(&self, format: Format) -> bool {
        use crate::domain::profile::PayloadCodec;
        matches!(
            (format, &self.settings.codec),
            (Format::Json, _) | (Format::Profile, PayloadCodec::Json)
        )
    }

    /// The payload as JSON: parsed, or decoded with the profile's protobuf schema for telemetry
    /// (`attributes` false) or attributes.
    fn decode(
        &self,
        format: Format,
        attributes: bool,
        payload: &[u8],
    ) -> Result<Value, PayloadError> {
        use crate::domain::profile::PayloadCodec;
        let codec = &self.settings.codec;
        let (message, json_fallback) = match (format, codec) {
            (Format::Json, _) | (Format::Profile, PayloadCodec::Json) => {
                return payload::parse_lenient(payload);
            }
            (Format::Protobuf, PayloadCodec::Json) => {
                return Err(PayloadError::Protobuf(
                    "the device profile has no protobuf schema".to_owned(),
                ));
            }
            (
                _,
                PayloadCodec::Protobuf {
                    telemetry,
                    attributes: a,
                    json_fallback,
                },
            ) => (
                if attributes { a } else { telemetry },
                *json_fallback && format == Format::Profile,
            ),
        };
        match crate::domain::profile::proto::decode(message, payload) {
            Ok(value) => Ok(value),
            Err(_) if json_fallback => payload::parse_lenient(payload),
            Err(e) => Err(PayloadError::Protobuf(e)),
        }
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
                Some(Value::String(s)) => Ok(Some(AttributeKeys::split(s))),
                Some(Value::Array(a)) if a.len() == 1 => {
                    Ok(a[0].as_str().map(AttributeKeys::split))
                }
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
        let body = match self
            .link()
            .attributes_of(AttributeKeys { client, shared })
            .await
        {
            Ok(body) => body,
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
    pub(super) fn rpc_response(self: &Rc<Self>, id: &str, payload: Bytes) -> Outcome {
        let Ok(id) = id.parse::<i32>() else {
            return Outcome::InvalidPayload(format!("RPC response id '{id}' is not an integer"));
        };
        let body = String::from_utf8_lossy(&payload).into_owned();
        // Any session of the device answers: the id is the device's, not this session's.
        if let Some(req) = self.link().answer_rpc(id, body) {
            // Until SUCCESSFUL is stored, a reload may offer it again: not re-sent.
            self.rpc.borrow_mut().done(req.rpc);
        }
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
        let call = match ClientRpc::parse(payload) {
            Ok(call) => call,
            Err(outcome) => return outcome,
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
        if call.method == "getSessionLimits" && !v2 {
            let config = &self.state.config;
            let limits = crate::transport::limits::session_limits_json(
                config.mqtt.max_packet_size,
                config.mqtt.max_inflight,
                &config.limits,
                self.gateway().is_some(),
            );
            self.client_rpc_reply(id, Bytes::from(limits.to_string()));
            return Outcome::Accepted;
        }
        self.arm_client_rpc_timeout(id.to_owned());
        let msg = self.link().client_rpc_msg(call, id, self.session);
        self.link().ingest(permit, vec![msg]).await
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
        let kind = Subscription::parse(filter, &self.settings)?;
        let granted = Granted {
            filter: kind.publish_topic(filter).to_owned(),
            qos1,
        };
        match kind {
            Subscription::AttributeUpdates => {
                *self.attributes_sub.borrow_mut() = Some(granted);
                if self.settings.send_shared_attributes_on_subscribe {
                    self.send_shared_attributes();
                }
            }
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
        match Subscription::parse(filter, &self.settings) {
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

impl DeviceSession {
    /// Sends this session (not the device's other sessions or long polls, nor a newer session
    /// that took over meanwhile) the device's current shared attributes, in the push format, on
    /// its attribute subscription (after the SUBACK: the read takes a hop to the main runtime).
    /// Nothing when it has none.
    fn send_shared_attributes(self: &Rc<Self>) {
        let services = self.state.services.clone();
        let device = self.device.id;
        let read = self.state.rt.spawn(async move {
            services
                .store
                .find_attributes(device.0, AttributeScope::Shared, None)
                .await
        });
        let weak = Rc::downgrade(self);
        ntex_rt::spawn(async move {
            let rows = match read.await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::warn!(device = %device, error = %e, "shared attributes not sent on subscribe");
                    return;
                }
                Err(_) => return,
            };
            let Some(sess) = weak.upgrade().filter(|_| !rows.is_empty()) else {
                return;
            };
            let payload: serde_json::Map<String, Value> = rows
                .into_iter()
                .map(|r| (r.key, r.value.to_json()))
                .collect();
            sess.push_attributes(Value::Object(payload).to_string());
        });
    }
}
