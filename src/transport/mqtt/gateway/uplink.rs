//! The `v1/gateway/*` topics a gateway publishes to: its devices' connects and disconnects,
//! telemetry, attributes, attribute requests, RPC answers and claims, each served through the
//! named device's own session and the device API shared with direct devices.

use std::rc::Rc;

use ntex_bytes::Bytes;
use serde_json::Value;

use super::payload::{self, Entry, Refused};
use super::{ATTRIBUTE_RESPONSE_TOPIC, Notice};
use crate::transport::mqtt::session::DeviceSession;
use crate::transport::mqtt::topics::GatewayTopic;
use crate::transport::uplink::{AttributeKeys, Outcome, Permit, Values};

/// Gateways choose how often they send entries of the wrong type: one line a second at most.
static SKIPPED_LOG: crate::observability::LogLimiter =
    crate::observability::LogLimiter::per_second();

impl From<Refused> for Outcome {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Syntax(e) => Self::InvalidPayload(e),
            Refused::Shape(e) => Self::Malformed(e),
        }
    }
}

impl DeviceSession {
    /// A PUBLISH on `v1/gateway/*`. A device that is not a gateway is refused. The messages of
    /// devices behind the gateway take from the buckets they share (`limits.gateway_*`).
    pub(in crate::transport::mqtt) async fn gateway_publish(
        self: &Rc<Self>,
        topic: GatewayTopic,
        payload: &[u8],
        permit: Permit,
    ) -> Outcome {
        if self.gateway().is_none() {
            tracing::info!(device = %self.device.id, name = %self.device.name, ?topic, "a device that is not a gateway published on the gateway API; refused");
            return Outcome::NotGateway;
        }
        let outcome = match topic {
            GatewayTopic::Connect => self.gw_connect(payload).await,
            GatewayTopic::Disconnect => self.gw_disconnect(payload),
            GatewayTopic::Telemetry => self.gw_values(Values::Telemetry, payload, permit).await,
            GatewayTopic::Attributes => self.gw_values(Values::Attributes, payload, permit).await,
            GatewayTopic::AttributeRequest => self.gw_attribute_request(payload).await,
            GatewayTopic::Rpc => self.gw_rpc_reply(payload).await,
            GatewayTopic::Claim => self.gw_claim(payload).await,
            GatewayTopic::Unknown => Err(Outcome::TopicInvalid),
        };
        outcome.unwrap_or_else(|o| o)
    }

    /// One message of the devices behind the gateway (a connect, a request, a reply).
    fn admit_device_message(&self) -> Result<(), Outcome> {
        self.limits_of_devices()
            .admit_message()
            .map_err(Outcome::RateLimited)
    }

    fn limits_of_devices(&self) -> &crate::transport::limits::SessionLimits {
        self.gateway().map_or(&self.limits, |gw| &gw.limits)
    }

    /// The session of the device `name`, its activity recorded; a failure names the device to
    /// an MQTT 5 gateway when it ends the connection.
    async fn device_named(
        self: &Rc<Self>,
        name: &str,
        type_name: &str,
    ) -> Result<Rc<DeviceSession>, Outcome> {
        let sess = self.sub_session(name, type_name).await?;
        self.state.services.device_state.activity(&sess.device);
        Ok(sess)
    }

    /// A device's message was refused: MQTT 5 gateways are told which device, when the refusal
    /// closes the connection (a rate limit).
    fn refused_for(&self, name: &str, outcome: Outcome) -> Outcome {
        if matches!(outcome, Outcome::RateLimited(_)) {
            self.notify_dropped(name, Notice::RateLimited);
        }
        outcome
    }

    /// `v1/gateway/connect`: the device is found or created, and its session opens.
    async fn gw_connect(self: &Rc<Self>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let connect = payload::connect(payload)?;
        self.admit_device_message()
            .map_err(|o| self.refused_for(&connect.device, o))?;
        self.device_named(&connect.device, &connect.type_name)
            .await
            .map_err(|o| self.refused_for(&connect.device, o))?;
        Ok(Outcome::Accepted)
    }

    /// `v1/gateway/disconnect`: the device's session ends (an unknown name is fine).
    fn gw_disconnect(self: &Rc<Self>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let name = payload::disconnect(payload)?;
        self.admit_device_message()
            .map_err(|o| self.refused_for(&name, o))?;
        self.disconnect_sub(&name);
        Ok(Outcome::Accepted)
    }

    /// `v1/gateway/telemetry` and `v1/gateway/attributes`: `{"Name": entry, ...}`; entries of the
    /// wrong type (or with invalid `metadata`) are skipped; the PUBACK comes once all the
    /// devices' messages are processed and committed.
    async fn gw_values(
        self: &Rc<Self>,
        kind: Values,
        payload: &[u8],
        permit: Permit,
    ) -> Result<Outcome, Outcome> {
        let want = match kind {
            Values::Telemetry => Entry::Array,
            Values::Attributes => Entry::Object,
        };
        let per_device = payload::per_device(payload, want)?;
        self.log_skipped(&per_device.skipped, want);
        let entries = per_device.entries.len();
        let mut msgs = Vec::new();
        let mut rejected = 0;
        for (name, mut entry) in per_device.entries {
            if kind == Values::Telemetry {
                match payload::strip_metadata(&mut entry) {
                    Ok(records) => record_latency(&records),
                    Err(e) => {
                        if let Some(suppressed) = SKIPPED_LOG.allow() {
                            tracing::warn!(gateway = %self.device.id, device = name, error = %e, suppressed, "telemetry of a device behind the gateway refused: invalid metadata");
                        }
                        rejected += 1;
                        continue;
                    }
                }
            }
            let sess = self
                .device_named(&name, "default")
                .await
                .map_err(|o| self.refused_for(&name, o))?;
            let converted = sess.link().values(kind, Ok(entry));
            msgs.extend(converted.map_err(|o| self.refused_for(&name, o))?);
        }
        if entries > 0 && rejected == entries {
            return Err(Outcome::Malformed(
                "the metadata of every device entry is invalid".to_owned(),
            ));
        }
        Ok(self.link().ingest(permit, msgs).await)
    }

    fn log_skipped(&self, skipped: &[String], want: Entry) {
        if skipped.is_empty() {
            return;
        }
        if let Some(suppressed) = SKIPPED_LOG.allow() {
            let want = match want {
                Entry::Array => "an array",
                Entry::Object => "an object",
            };
            tracing::warn!(gateway = %self.device.id, devices = ?skipped, suppressed, "gateway payload entries skipped: each device's entry must be {want}");
        }
    }

    /// `v1/gateway/attributes/request`: answered on `v1/gateway/attributes/response`.
    async fn gw_attribute_request(self: &Rc<Self>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let request = payload::attribute_request(payload)?;
        self.admit_device_message()
            .map_err(|o| self.refused_for(&request.device, o))?;
        let sess = self
            .device_named(&request.device, "default")
            .await
            .map_err(|o| self.refused_for(&request.device, o))?;
        let (keys, section) = if request.client {
            (
                AttributeKeys {
                    client: Some(request.keys.clone()),
                    shared: None,
                },
                "client",
            )
        } else {
            (
                AttributeKeys {
                    client: None,
                    shared: Some(request.keys.clone()),
                },
                "shared",
            )
        };
        let body = sess
            .link()
            .attributes_of(keys)
            .await
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        let found = match body.get(section) {
            Some(Value::Object(found)) => found.clone(),
            _ => serde_json::Map::new(),
        };
        let response = payload::attribute_response(&request, found);
        let qos1 = self.response_qos(ATTRIBUTE_RESPONSE_TOPIC);
        self.spawn_publish(
            ATTRIBUTE_RESPONSE_TOPIC.to_owned(),
            Bytes::from(response.to_string()),
            qos1,
        );
        Ok(Outcome::Accepted)
    }

    /// `v1/gateway/rpc`: a device's answer to a server-side RPC, by (device, id).
    async fn gw_rpc_reply(self: &Rc<Self>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let reply = payload::rpc_reply(payload)?;
        self.admit_device_message()
            .map_err(|o| self.refused_for(&reply.device, o))?;
        let sess = self
            .device_named(&reply.device, "default")
            .await
            .map_err(|o| self.refused_for(&reply.device, o))?;
        Ok(sess.rpc_response(&reply.id.to_string(), Bytes::from(reply.data)))
    }

    /// `v1/gateway/claim`: `{"Name": {"secretKey", "durationMs"}, ...}`, each device's claim
    /// window opened; acknowledged once all are.
    async fn gw_claim(self: &Rc<Self>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let per_device = payload::per_device(payload, Entry::Object)?;
        self.log_skipped(&per_device.skipped, Entry::Object);
        for (name, entry) in per_device.entries {
            self.admit_device_message()
                .map_err(|o| self.refused_for(&name, o))?;
            let sess = self
                .device_named(&name, "default")
                .await
                .map_err(|o| self.refused_for(&name, o))?;
            match sess.link().claim(entry.to_string().as_bytes()).await {
                Outcome::Accepted => {}
                other => return Err(other),
            }
        }
        Ok(Outcome::Accepted)
    }
}

/// The IoT Gateway's latency records: from the connector receiving a value to the server.
fn record_latency(records: &[payload::Latency]) {
    let now = crate::domain::now_ms();
    for r in records {
        let received = (now - r.received_ts).max(0) as f64;
        let published = (now - r.published_ts).max(0) as f64;
        metrics::histogram!("ferroboard_gateway_latency_ms", "stage" => "received")
            .record(received);
        metrics::histogram!("ferroboard_gateway_latency_ms", "stage" => "published")
            .record(published);
    }
}
