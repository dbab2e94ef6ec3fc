//! The gateway API's payloads, parsed and checked as ThingsBoard does: what each topic carries,
//! which per-device entries are skipped, and when a payload ends the connection. No I/O.

use serde_json::{Map, Value};

use crate::domain::payload::{self, PayloadError};
use crate::services::gateway::MAX_NAME;

/// Why a gateway payload is refused.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Not JSON at all: handled as any invalid device payload.
    Syntax(String),
    /// JSON of the wrong shape, a required field missing, or no valid device entry left:
    /// the connection closes.
    Shape(String),
}

impl From<PayloadError> for Refused {
    fn from(e: PayloadError) -> Self {
        Self::Syntax(e.to_string())
    }
}

fn object(payload: &[u8]) -> Result<Map<String, Value>, Refused> {
    match payload::parse_lenient(payload)? {
        Value::Object(obj) => Ok(obj),
        other => Err(Refused::Shape(format!(
            "gateway payload must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A sub-device name: a non-empty string of at most `MAX_NAME` bytes.
fn name(value: Option<&Value>, what: &str) -> Result<String, Refused> {
    match value {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_NAME => Ok(s.clone()),
        Some(Value::String(s)) if s.is_empty() => Err(Refused::Shape(format!("{what} is empty"))),
        Some(Value::String(_)) => Err(Refused::Shape(format!(
            "{what} is longer than {MAX_NAME} bytes"
        ))),
        Some(other) => Err(Refused::Shape(format!(
            "{what} must be a string, not {}",
            kind(other)
        ))),
        None => Err(Refused::Shape(format!("\"{what}\" is missing"))),
    }
}

/// `v1/gateway/connect`: `{"device": "Name", "type": "Profile"}`; `type` absent or null is `default`.
#[derive(Debug, PartialEq)]
pub struct Connect {
    pub device: String,
    pub type_name: String,
}

pub fn connect(payload: &[u8]) -> Result<Connect, Refused> {
    let obj = object(payload)?;
    let device = name(obj.get("device"), "device")?;
    let type_name = match obj.get("type") {
        None | Some(Value::Null) => "default".to_owned(),
        Some(Value::String(t)) if t.trim().is_empty() => "default".to_owned(),
        Some(Value::String(t)) if t.len() <= MAX_NAME => t.clone(),
        Some(other) => {
            return Err(Refused::Shape(format!(
                "type must be a profile name of at most {MAX_NAME} bytes, not {other}"
            )));
        }
    };
    Ok(Connect { device, type_name })
}

/// `v1/gateway/disconnect`: `{"device": "Name"}`.
pub fn disconnect(payload: &[u8]) -> Result<String, Refused> {
    name(object(payload)?.get("device"), "device")
}

/// The JSON type each device's entry must have on a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Telemetry: an array of `{...}` or `{"ts", "values"}` elements.
    Array,
    /// Attributes and claims: an object.
    Object,
}

/// The per-device entries of `{"Name": entry, ...}` (telemetry, attributes, claim). Entries of
/// the wrong type, or with an invalid name, are skipped with a warning; the names skipped are
/// returned beside the entries kept. An empty object has no entries; a non-empty one with no
/// valid entry is refused.
pub fn per_device(payload: &[u8], want: Entry) -> Result<PerDevice, Refused> {
    let obj = object(payload)?;
    let total = obj.len();
    let mut out = PerDevice::default();
    for (device, entry) in obj {
        let fits = match want {
            Entry::Array => entry.is_array(),
            Entry::Object => entry.is_object(),
        };
        if !fits || device.is_empty() || device.len() > MAX_NAME {
            out.skipped.push(device);
            continue;
        }
        out.entries.push((device, entry));
    }
    if total > 0 && out.entries.is_empty() {
        let what = match want {
            Entry::Array => "an array",
            Entry::Object => "an object",
        };
        return Err(Refused::Shape(format!(
            "no device entry of the payload is {what} named by a device name"
        )));
    }
    Ok(out)
}

/// Entries kept, in payload order, and the device names skipped.
#[derive(Debug, Default, PartialEq)]
pub struct PerDevice {
    pub entries: Vec<(String, Value)>,
    pub skipped: Vec<String>,
}

/// The latency record the IoT Gateway attaches to a telemetry element (`latencyDebugMode`).
#[derive(Debug, PartialEq)]
pub struct Latency {
    pub connector: String,
    pub received_ts: i64,
    pub published_ts: i64,
}

/// Removes the `metadata` object of each telemetry element; all three of its fields are
/// required. Returns the records, or why the device's data is refused.
pub fn strip_metadata(entry: &mut Value) -> Result<Vec<Latency>, String> {
    let mut records = Vec::new();
    let Value::Array(elements) = entry else {
        return Ok(records);
    };
    for element in elements {
        let Some(obj) = element.as_object_mut() else {
            continue;
        };
        let Some(meta) = obj.remove("metadata") else {
            continue;
        };
        let Value::Object(meta) = meta else {
            return Err(format!("metadata must be an object, not {}", kind(&meta)));
        };
        let ts = |key: &str| {
            meta.get(key)
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("metadata.{key} must be an integer (ms)"))
        };
        let connector = match meta.get("connector") {
            Some(Value::String(c)) => c.clone(),
            _ => return Err("metadata.connector must be a string".to_owned()),
        };
        records.push(Latency {
            connector,
            received_ts: ts("receivedTs")?,
            published_ts: ts("publishedTs")?,
        });
    }
    Ok(records)
}

/// `v1/gateway/attributes/request`: `{"id", "device", "client", "key" | "keys"}`.
#[derive(Debug, PartialEq)]
pub struct AttributeRequest {
    pub id: i64,
    pub device: String,
    pub client: bool,
    pub keys: Vec<String>,
    /// Exactly one key was asked for: the answer carries `value`, else `values`.
    pub single: bool,
}

pub fn attribute_request(payload: &[u8]) -> Result<AttributeRequest, Refused> {
    let obj = object(payload)?;
    let id = integer(&obj, "id")?;
    let device = name(obj.get("device"), "device")?;
    let client = match obj.get("client") {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(Refused::Shape(format!(
                "client must be a boolean, not {}",
                kind(other)
            )));
        }
        None => return Err(Refused::Shape("\"client\" is missing".to_owned())),
    };
    let keys: Vec<String> = match (obj.get("key"), obj.get("keys")) {
        (Some(Value::String(k)), _) => vec![k.clone()],
        (_, Some(Value::Array(keys))) => keys
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Refused::Shape("keys must be strings".to_owned()))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(Refused::Shape(
                "\"key\" (a string) or \"keys\" (an array) is missing".to_owned(),
            ));
        }
    };
    if keys.is_empty() {
        return Err(Refused::Shape("keys is empty".to_owned()));
    }
    Ok(AttributeRequest {
        id,
        device,
        client,
        single: keys.len() == 1,
        keys,
    })
}

/// `v1/gateway/rpc`: a device's answer `{"device", "id", "data"}` to a server-side RPC.
#[derive(Debug, PartialEq)]
pub struct RpcReply {
    pub device: String,
    pub id: i32,
    /// `data` as JSON text.
    pub data: String,
}

pub fn rpc_reply(payload: &[u8]) -> Result<RpcReply, Refused> {
    let obj = object(payload)?;
    let device = name(obj.get("device"), "device")?;
    let id = integer(&obj, "id")?;
    let id = i32::try_from(id)
        .map_err(|_| Refused::Shape(format!("RPC id {id} is not a request id")))?;
    let data = obj
        .get("data")
        .ok_or_else(|| Refused::Shape("\"data\" is missing".to_owned()))?;
    Ok(RpcReply {
        device,
        id,
        data: data.to_string(),
    })
}

fn integer(obj: &Map<String, Value>, key: &str) -> Result<i64, Refused> {
    match obj.get(key) {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| Refused::Shape(format!("{key} must be an integer, not {v}"))),
        None => Err(Refused::Shape(format!("\"{key}\" is missing"))),
    }
}

/// The `v1/gateway/attributes/response` body: `value` for a single key, `values` otherwise,
/// neither when nothing was found.
pub fn attribute_response(request: &AttributeRequest, found: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::from(request.id));
    out.insert("device".into(), Value::String(request.device.clone()));
    if request.single {
        if let Some(v) = found.into_iter().next().map(|(_, v)| v) {
            out.insert("value".into(), v);
        }
    } else if !found.is_empty() {
        out.insert("values".into(), Value::Object(found));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(r: Result<impl std::fmt::Debug, Refused>) -> bool {
        matches!(r, Err(Refused::Shape(_)))
    }

    #[test]
    fn connect_names_a_device_and_defaults_its_type() {
        assert_eq!(
            connect(br#"{"device":"A","type":"thermo"}"#).unwrap(),
            Connect {
                device: "A".into(),
                type_name: "thermo".into()
            }
        );
        assert_eq!(
            connect(br#"{"device":"A","type":null}"#).unwrap().type_name,
            "default"
        );
        assert_eq!(connect(br#"{"device":"A"}"#).unwrap().type_name, "default");
        assert!(shape(connect(br#"{"type":"x"}"#)));
        assert!(shape(connect(br#"{"device":""}"#)));
        assert!(shape(connect(br#"{"device":7}"#)));
        assert!(shape(connect(b"[1]")));
        assert!(matches!(connect(b"{"), Err(Refused::Syntax(_))));
        let long = format!(r#"{{"device":"{}"}}"#, "x".repeat(MAX_NAME + 1));
        assert!(shape(connect(long.as_bytes())));
    }

    #[test]
    fn wrong_entries_are_skipped_and_none_left_is_refused() {
        let got = per_device(br#"{"A":[{"t":1}],"B":{"t":2},"C":3}"#, Entry::Array).unwrap();
        assert_eq!(got.entries, vec![("A".to_owned(), json!([{"t": 1}]))]);
        assert_eq!(got.skipped, vec!["B".to_owned(), "C".to_owned()]);
        assert!(shape(per_device(br#"{"Dev":{"temp":1}}"#, Entry::Array)));
        assert!(shape(per_device(br#"{"Dev":[1]}"#, Entry::Object)));
        assert!(shape(per_device(b"[]", Entry::Array)));
        assert!(shape(per_device(b"\"x\"", Entry::Object)));
        assert_eq!(
            per_device(b"{}", Entry::Array).unwrap(),
            PerDevice::default()
        );
    }

    #[test]
    fn metadata_is_stripped_and_must_be_complete() {
        let mut entry = json!([
            {"ts": 1, "values": {"t": 1}, "metadata": {"connector": "mb", "receivedTs": 5, "publishedTs": 6}},
            {"t": 2}
        ]);
        let records = strip_metadata(&mut entry).unwrap();
        assert_eq!(
            records,
            vec![Latency {
                connector: "mb".into(),
                received_ts: 5,
                published_ts: 6
            }]
        );
        assert_eq!(entry, json!([{"ts": 1, "values": {"t": 1}}, {"t": 2}]));
        for bad in [
            json!([{"t": 1, "metadata": "x"}]),
            json!([{"t": 1, "metadata": {"connector": "mb", "receivedTs": 5}}]),
            json!([{"t": 1, "metadata": {"connector": 1, "receivedTs": 5, "publishedTs": 6}}]),
            json!([{"t": 1, "metadata": {"connector": "mb", "receivedTs": "5", "publishedTs": 6}}]),
        ] {
            let mut bad = bad;
            assert!(strip_metadata(&mut bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attribute_requests_need_id_device_client_and_keys() {
        let one = attribute_request(br#"{"id":1,"device":"A","client":true,"key":"k"}"#).unwrap();
        assert!(one.single && one.client && one.keys == ["k"]);
        let sdk =
            attribute_request(br#"{"id":2,"device":"A","client":false,"keys":["k"]}"#).unwrap();
        assert!(sdk.single, "one key in keys is a single key too");
        let two =
            attribute_request(br#"{"id":3,"device":"A","client":false,"keys":["a","b"]}"#).unwrap();
        assert!(!two.single);
        for bad in [
            r#"{"device":"A","client":true,"key":"k"}"#,
            r#"{"id":1,"client":true,"key":"k"}"#,
            r#"{"id":1,"device":"A","key":"k"}"#,
            r#"{"id":1,"device":"A","client":"yes","key":"k"}"#,
            r#"{"id":1,"device":"A","client":true}"#,
            r#"{"id":1,"device":"A","client":true,"keys":[1]}"#,
            r#"{"id":"x","device":"A","client":true,"key":"k"}"#,
        ] {
            assert!(shape(attribute_request(bad.as_bytes())), "{bad}");
        }
        assert_eq!(
            attribute_response(&one, Map::from_iter([("k".into(), json!(5))])),
            json!({"id": 1, "device": "A", "value": 5})
        );
        assert_eq!(
            attribute_response(&two, Map::from_iter([("a".into(), json!(1))])),
            json!({"id": 3, "device": "A", "values": {"a": 1}})
        );
        assert_eq!(
            attribute_response(&one, Map::new()),
            json!({"id": 1, "device": "A"})
        );
    }

    #[test]
    fn rpc_replies_need_device_id_and_data() {
        assert_eq!(
            rpc_reply(br#"{"device":"A","id":4,"data":{"ok":true}}"#).unwrap(),
            RpcReply {
                device: "A".into(),
                id: 4,
                data: r#"{"ok":true}"#.into()
            }
        );
        assert_eq!(
            rpc_reply(br#"{"device":"A","id":4,"data":"s"}"#)
                .unwrap()
                .data,
            "\"s\""
        );
        for bad in [
            r#"{"id":4,"data":1}"#,
            r#"{"device":"A","data":1}"#,
            r#"{"device":"A","id":4}"#,
            r#"{"device":"A","id":4.5,"data":1}"#,
            r#"{"device":"A","id":99999999999,"data":1}"#,
        ] {
            assert!(shape(rpc_reply(bad.as_bytes())), "{bad}");
        }
    }
}
