//! `transportPayloadTypeConfiguration` of an MQTT device profile: JSON, or PROTOBUF with schemas
//! that must compile.

use serde_json::Value;

/// The PROTOBUF schemas: field, what error messages call it, required.
pub const SCHEMAS: [(&str, &str, bool); 4] = [
    ("deviceTelemetryProtoSchema", "telemetry", true),
    ("deviceAttributesProtoSchema", "attributes", true),
    ("deviceRpcRequestProtoSchema", "rpc request", false),
    ("deviceRpcResponseProtoSchema", "rpc response", false),
];

/// Checks and completes the payload type configuration; PROTOBUF schemas are compiled.
pub fn normalise(mut payload: Value) -> Result<Value, String> {
    match payload.get("transportPayloadType").and_then(Value::as_str) {
        Some("JSON") => Ok(payload),
        Some("PROTOBUF") => {
            for (field, what, required) in SCHEMAS {
                match payload.get(field) {
                    Some(Value::String(s)) if !s.trim().is_empty() => {
                        super::proto::compile(what, s)?;
                    }
                    None | Some(Value::Null) if !required => {}
                    None | Some(Value::String(_) | Value::Null) => {
                        return Err(format!(
                            "[Transport Configuration] {what} proto schema should be specified!"
                        ));
                    }
                    Some(_) => {
                        return Err(format!(
                            "[Transport Configuration] {field} should be a string!"
                        ));
                    }
                }
            }
            for flag in [
                "enableCompatibilityWithJsonPayloadFormat",
                "useJsonPayloadFormatForDefaultDownlinkTopics",
            ] {
                match payload.get(flag) {
                    None | Some(Value::Null) => {
                        payload[flag] = Value::Bool(false);
                    }
                    Some(Value::Bool(_)) => {}
                    Some(_) => {
                        return Err(format!(
                            "[Transport Configuration] {flag} should be a boolean!"
                        ));
                    }
                }
            }
            Ok(payload)
        }
        Some(other) => Err(format!(
            "[Transport Configuration] transport payload type {other} is not supported; use JSON or PROTOBUF"
        )),
        None => {
            Err("[Transport Configuration] transportPayloadType should be specified!".to_owned())
        }
    }
}
