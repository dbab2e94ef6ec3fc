//! Protobuf schemas of a device profile (`deviceTelemetryProtoSchema`, ...), compiled at run time
//! when the profile is saved, and the decoding of device payloads with them into JSON.

use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value;

/// A schema is at most this long (the REST body limit bounds it anyway).
const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// One profile schema held in memory under its file name.
struct Source {
    name: String,
    text: String,
}

impl FileResolver for Source {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == self.name {
            File::from_source(name, &self.text)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Compiles one schema; the message devices send is its last top-level message (as ThingsBoard
/// picks it). The error names the schema and the line.
pub fn compile(what: &str, schema: &str) -> Result<MessageDescriptor, String> {
    if schema.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "[Transport Configuration] {what} proto schema is longer than {MAX_SCHEMA_BYTES} bytes"
        ));
    }
    let name = format!("{}.proto", what.replace(' ', "_"));
    let mut resolver = ChainFileResolver::new();
    resolver.add(Source {
        name: name.clone(),
        text: schema.to_owned(),
    });
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(&name)
        .map_err(|e| located(what, schema, &e))?;
    let pool = compiler.descriptor_pool();
    let file = pool.get_file_by_name(&name).ok_or_else(|| {
        format!("[Transport Configuration] failed to compile {what} proto schema")
    })?;
    file.messages().last().ok_or_else(|| {
        format!("[Transport Configuration] {what} proto schema defines no message type")
    })
}

/// The compiler's message with the line (1-based) of its first label.
fn located(what: &str, schema: &str, e: &protox::Error) -> String {
    let offset = miette::Diagnostic::labels(e)
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    match offset {
        Some(offset) => {
            let line = schema
                .get(..offset.min(schema.len()))
                .map_or(1, |before| before.matches('\n').count() + 1);
            format!(
                "[Transport Configuration] failed to compile {what} proto schema: line {line}: {e}"
            )
        }
        None => format!("[Transport Configuration] failed to compile {what} proto schema: {e}"),
    }
}

/// Decodes a payload with the message type into the JSON a device would have sent (proto3 JSON
/// mapping, default values included).
pub fn decode(message: &MessageDescriptor, payload: &[u8]) -> Result<Value, String> {
    let msg = DynamicMessage::decode(message.clone(), payload)
        .map_err(|e| format!("payload is not a valid {}: {e}", message.full_name()))?;
    let options = SerializeOptions::new().skip_default_fields(false);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("cannot convert {} to JSON: {e}", message.full_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TELEMETRY: &str = "syntax = \"proto3\";\npackage telemetry;\n\nmessage SensorDataReading {\n  optional double temperature = 1;\n  optional double humidity = 2;\n}\n";

    #[test]
    fn compiles_and_decodes() {
        let desc = compile("telemetry", TELEMETRY).unwrap();
        assert_eq!(desc.full_name(), "telemetry.SensorDataReading");
        // temperature = 42.5 (field 1, fixed64)
        let mut payload = vec![0x09];
        payload.extend_from_slice(&42.5f64.to_le_bytes());
        let json = decode(&desc, &payload).unwrap();
        assert_eq!(json["temperature"], serde_json::json!(42.5));
        assert!(decode(&desc, &[0xff, 0xff]).is_err());
    }

    #[test]
    fn errors_name_the_line() {
        let bad = "syntax = \"proto3\";\nmessage A {\n  int32 x = 1\n}\n";
        let e = compile("telemetry", bad).unwrap_err();
        assert!(e.contains("line 4") || e.contains("line 3"), "{e}");
        assert!(
            compile("telemetry", "syntax = \"proto3\";\n")
                .unwrap_err()
                .contains("no message")
        );
    }
}
