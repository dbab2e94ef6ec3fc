//! The MQTT settings of a device's session, read from its profile: which topics carry telemetry
//! and attributes, which filter subscribes to attribute updates, how payloads are decoded, and
//! the acknowledgement and subscription options. A DEFAULT-transport profile has ThingsBoard's
//! fixed topics and JSON.

use prost_reflect::MessageDescriptor;
use serde_json::Value;

use super::topic::TopicFilter;
use super::{DEFAULT_ATTRIBUTES_TOPIC, DEFAULT_TELEMETRY_TOPIC};

/// How telemetry and attribute payloads on the profile's topics are decoded.
#[derive(Clone, Debug)]
pub enum PayloadCodec {
    Json,
    Protobuf {
        telemetry: MessageDescriptor,
        attributes: MessageDescriptor,
        /// Payloads that are not valid protobuf are tried as JSON.
        json_fallback: bool,
    },
}

#[derive(Clone, Debug)]
pub struct MqttSettings {
    pub telemetry: TopicFilter,
    pub attributes: TopicFilter,
    pub attributes_subscribe: TopicFilter,
    pub codec: PayloadCodec,
    /// MQTT 3.1.1: an invalid QoS 1 payload is acknowledged (the session stays) instead of closing.
    pub send_ack_on_validation_exception: bool,
    /// A SUBSCRIBE to attribute updates is answered with the current shared attributes.
    pub send_shared_attributes_on_subscribe: bool,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            telemetry: TopicFilter::Exact(DEFAULT_TELEMETRY_TOPIC.to_owned()),
            attributes: TopicFilter::Exact(DEFAULT_ATTRIBUTES_TOPIC.to_owned()),
            attributes_subscribe: TopicFilter::Exact(DEFAULT_ATTRIBUTES_TOPIC.to_owned()),
            codec: PayloadCodec::Json,
            send_ack_on_validation_exception: false,
            send_shared_attributes_on_subscribe: false,
        }
    }
}

impl MqttSettings {
    /// The settings of a saved (normalised) `profileData`; schemas are compiled again here.
    pub fn of(profile_data: &Value) -> Result<Self, String> {
        let Some(t) = profile_data
            .get("transportConfiguration")
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("MQTT"))
        else {
            return Ok(Self::default());
        };
        let filter = |field: &str, default: &str| {
            let text = t
                .get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .unwrap_or(default);
            TopicFilter::parse(text).map_err(|e| format!("{field} '{text}': {e}"))
        };
        let flag = |v: &Value, name: &str| v.get(name).and_then(Value::as_bool).unwrap_or(false);
        let payload = t.get("transportPayloadTypeConfiguration");
        let codec = match payload
            .and_then(|p| p.get("transportPayloadType"))
            .and_then(Value::as_str)
        {
            Some("PROTOBUF") => {
                let payload = payload.unwrap_or(&Value::Null);
                let schema = |field: &str, what: &str| {
                    let text = payload.get(field).and_then(Value::as_str).unwrap_or("");
                    super::proto::compile(what, text)
                };
                PayloadCodec::Protobuf {
                    telemetry: schema("deviceTelemetryProtoSchema", "telemetry")?,
                    attributes: schema("deviceAttributesProtoSchema", "attributes")?,
                    json_fallback: flag(payload, "enableCompatibilityWithJsonPayloadFormat"),
                }
            }
            _ => PayloadCodec::Json,
        };
        Ok(Self {
            telemetry: filter("deviceTelemetryTopic", DEFAULT_TELEMETRY_TOPIC)?,
            attributes: filter("deviceAttributesTopic", DEFAULT_ATTRIBUTES_TOPIC)?,
            attributes_subscribe: filter(
                "deviceAttributesSubscribeTopic",
                DEFAULT_ATTRIBUTES_TOPIC,
            )?,
            codec,
            send_ack_on_validation_exception: flag(t, "sendAckOnValidationException"),
            send_shared_attributes_on_subscribe: flag(t, "sendSharedAttributesOnSubscribe"),
        })
    }
}
