//! Device payloads: ThingsBoard's lenient JSON and the telemetry / attribute shapes.

use serde_json::{Map, Value};

use super::kv::{Kv, KvValue, Typing};

/// Why a payload was refused (answered with "payload format invalid").
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(&'static str),
    #[error("invalid timestamp: {0}")]
    Ts(String),
    #[error(transparent)]
    Typing(#[from] super::kv::TypingError),
}

/// Parses uplink JSON. Strict JSON first (keeps number literals exact); then the lenient forms
/// devices send from shells and old firmware (unquoted keys, single quotes, comments).
/// An empty payload is JSON null, as in ThingsBoard.
pub fn parse_lenient(bytes: &[u8]) -> Result<Value, PayloadError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(strict) => {
            let text =
                std::str::from_utf8(bytes).map_err(|_| PayloadError::Json(strict.to_string()))?;
            json5::from_str::<Value>(text).map_err(|_| PayloadError::Json(strict.to_string()))
        }
    }
}

/// One group of telemetry sharing a timestamp; `ts == None` means "server time of the message".
#[derive(Debug, PartialEq)]
pub struct TelemetryGroup {
    pub ts: Option<i64>,
    pub values: Vec<Kv>,
}

/// Converts a telemetry payload into groups of typed values, one per distinct (ts) element.
pub fn telemetry(value: &Value, typing: Typing) -> Result<Vec<TelemetryGroup>, PayloadError> {
    let mut groups = Vec::new();
    match value {
        Value::Object(obj) => groups.push(telemetry_object(obj, typing)?),
        Value::Array(items) => {
            for item in items {
                let Value::Object(obj) = item else {
                    return Err(PayloadError::Shape(
                        "telemetry array elements must be JSON objects",
                    ));
                };
                groups.push(telemetry_object(obj, typing)?);
            }
        }
        _ => {
            return Err(PayloadError::Shape(
                "telemetry must be a JSON object or array",
            ));
        }
    }
    Ok(merge_server_ts_groups(groups))
}

/// Elements without a timestamp share one server time, so they form one message.
fn merge_server_ts_groups(groups: Vec<TelemetryGroup>) -> Vec<TelemetryGroup> {
    let mut out: Vec<TelemetryGroup> = Vec::with_capacity(groups.len());
    let mut server: Option<usize> = None;
    for g in groups {
        match (g.ts, server) {
            (None, Some(i)) => out[i].values.extend(g.values),
            (None, None) => {
                server = Some(out.len());
                out.push(g);
            }
            (Some(ts), _) => match out.iter_mut().find(|o| o.ts == Some(ts)) {
                Some(o) => o.values.extend(g.values),
                None => out.push(g),
            },
        }
    }
    out
}

fn telemetry_object(
    obj: &Map<String, Value>,
    typing: Typing,
) -> Result<TelemetryGroup, PayloadError> {
    match (obj.get("ts"), obj.get("values")) {
        (Some(ts), Some(values)) => {
            let Value::Object(values) = values else {
                return Err(PayloadError::Shape("\"values\" must be a JSON object"));
            };
            Ok(TelemetryGroup {
                ts: Some(parse_ts(ts)?),
                values: typed_object(values, typing)?,
            })
        }
        _ => Ok(TelemetryGroup {
            ts: None,
            values: typed_object(obj, typing)?,
        }),
    }
}

fn parse_ts(ts: &Value) -> Result<i64, PayloadError> {
    match ts {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            })
            .ok_or_else(|| PayloadError::Ts(n.to_string())),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| PayloadError::Ts(s.clone())),
        other => Err(PayloadError::Ts(other.to_string())),
    }
}

/// Types every value of a flat object; nulls are dropped.
pub fn typed_object(obj: &Map<String, Value>, typing: Typing) -> Result<Vec<Kv>, PayloadError> {
    let mut out = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        if let Some(value) = KvValue::from_json(key, value, typing)? {
            out.push(Kv {
                key: key.clone(),
                value,
            });
        }
    }
    Ok(out)
}

/// Converts a client-attributes payload (a flat JSON object).
pub fn attributes(value: &Value, typing: Typing) -> Result<Vec<Kv>, PayloadError> {
    match value {
        Value::Object(obj) => typed_object(obj, typing),
        _ => Err(PayloadError::Shape("attributes must be a JSON object")),
    }
}

/// A flat JSON object of typed values, as rule-engine messages carry them.
pub fn kvs_to_object(kvs: &[Kv]) -> Value {
    Value::Object(
        kvs.iter()
            .map(|kv| (kv.key.clone(), kv.value.to_json()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_json_is_accepted() {
        assert_eq!(
            parse_lenient(b"{temperature:25}").unwrap()["temperature"],
            25
        );
        assert_eq!(parse_lenient(b"{'a':'b'}").unwrap()["a"], "b");
        assert_eq!(parse_lenient(b"").unwrap(), Value::Null);
        assert!(parse_lenient(b"{\"a\":1} trailing").is_err());
    }

    #[test]
    fn shapes_group_by_timestamp() {
        let v = parse_lenient(
            br#"[{"a":1},{"ts":5,"values":{"b":2}},{"c":3},{"ts":"5","values":{"d":4}}]"#,
        )
        .unwrap();
        let groups = telemetry(&v, Typing::default()).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].ts, None);
        assert_eq!(groups[0].values.len(), 2);
        assert_eq!(groups[1].ts, Some(5));
        assert_eq!(groups[1].values.len(), 2);
        assert!(telemetry(&Value::from(5), Typing::default()).is_err());
        assert!(telemetry(&parse_lenient(b"[1]").unwrap(), Typing::default()).is_err());
        let ts_only = parse_lenient(br#"{"ts":5}"#).unwrap();
        assert_eq!(
            telemetry(&ts_only, Typing::default()).unwrap()[0].values[0].key,
            "ts"
        );
    }
}
