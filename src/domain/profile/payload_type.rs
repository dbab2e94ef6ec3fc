//! `transportPayloadTypeConfiguration` of an MQTT device profile: JSON or PROTOBUF.

use serde_json::Value;

/// Checks and completes the payload type configuration.
pub fn normalise(payload: Value) -> Result<Value, String> {
    match payload.get("transportPayloadType").and_then(Value::as_str) {
        Some("JSON") => Ok(payload),
        Some(other) => Err(format!(
            "[Transport Configuration] transport payload type {other} is not supported; use JSON or PROTOBUF"
        )),
        None => {
            Err("[Transport Configuration] transportPayloadType should be specified!".to_owned())
        }
    }
}
