//! Device payloads: ThingsBoard's lenient JSON and the telemetry / attribute shapes.

use serde_json::{Map, Value};

use super::kv::{Kv, KvValue, TsKv, Typing};

/// Why a payload was refused (answered with "payload format invalid").
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("JSON nested {MAX_DEPTH} levels deep or more")]
    TooDeep,
    #[error("{0}")]
    Shape(&'static str),
    #[error("invalid timestamp: {0}")]
    Ts(String),
    #[error(transparent)]
    Typing(#[from] super::kv::TypingError),
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
}

impl PayloadError {
    /// True when the payload broke a size bound (depth, key length, NUL, value size) rather than
    /// the JSON grammar or the API's shapes: worth a (rate-limited) log line naming the bound.
    pub fn is_limit(&self) -> bool {
        match self {
            Self::TooDeep => true,
            Self::Typing(e) => !matches!(e, super::kv::TypingError::StringTooLong(..)),
            Self::Json(_) | Self::Shape(_) | Self::Ts(_) | Self::Protobuf(_) => false,
        }
    }
}

/// Containers nested this deep or deeper are refused (at most 127 levels), by the strict parser
/// (serde_json's recursion limit) and the lenient one alike.
pub const MAX_DEPTH: usize = 128;

/// The lenient forms ThingsBoard's Gson accepts and old firmware sends. Number forms JSON lacks
/// (`.5`, `+5`, `0x1A`, `NaN`) are read, and kept as strings of their text, as Gson reads unquoted
/// words; missing commas stay an error.
const LENIENT: jsonc_parser::ParseOptions = jsonc_parser::ParseOptions {
    allow_comments: true,
    allow_loose_object_property_names: true,
    allow_trailing_commas: true,
    allow_missing_commas: false,
    allow_single_quoted_strings: true,
    allow_hexadecimal_numbers: true,
    allow_unary_plus_numbers: true,
    allow_bare_decimal_point_numbers: true,
    allow_non_finite_numbers: true,
    allow_extended_string_escapes: true,
};

/// Parses uplink JSON. Strict JSON first (keeps number literals exact); then the lenient forms
/// devices send from shells and old firmware (unquoted keys, single quotes, comments, trailing
/// commas). Both stop at [`MAX_DEPTH`]. An empty payload is JSON null, as in ThingsBoard.
pub fn parse_lenient(bytes: &[u8]) -> Result<Value, PayloadError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(strict) => {
            if strict.to_string().starts_with("recursion limit exceeded") {
                return Err(PayloadError::TooDeep);
            }
            let text =
                std::str::from_utf8(bytes).map_err(|_| PayloadError::Json(strict.to_string()))?;
            read_lenient(text).map_err(|e| match e {
                PayloadError::Json(_) => PayloadError::Json(strict.to_string()),
                other => other,
            })
        }
    }
}

/// The lenient reader alone (what [`parse_lenient`] falls back to): reads strict JSON as
/// serde_json does, and the lenient forms besides.
pub fn read_lenient(text: &str) -> Result<Value, PayloadError> {
    match jsonc_parser::parse_to_value(text, &LENIENT) {
        Ok(Some(value)) => lenient_to_serde(value, 0),
        Ok(None) => Ok(Value::Null),
        Err(e)
            if matches!(
                e.kind(),
                jsonc_parser::errors::ParseErrorKind::NestingDepthExceeded
            ) =>
        {
            Err(PayloadError::TooDeep)
        }
        Err(e) => Err(PayloadError::Json(e.to_string())),
    }
}

/// The lenient parser's tree as serde_json values (numbers in serde_json's text form), refusing
/// containers nested [`MAX_DEPTH`] deep; `depth` counts the containers around `value`.
fn lenient_to_serde(
    value: jsonc_parser::JsonValue<'_>,
    depth: usize,
) -> Result<Value, PayloadError> {
    use jsonc_parser::JsonValue as J;
    Ok(match value {
        J::Null => Value::Null,
        J::Boolean(b) => Value::Bool(b),
        J::String(s) => Value::String(s.into_owned()),
        J::Number(text) => text
            .parse::<serde_json::Number>()
            .map_or_else(|_| Value::String(text.to_owned()), Value::Number),
        J::Array(items) => {
            if depth + 1 >= MAX_DEPTH {
                return Err(PayloadError::TooDeep);
            }
            Value::Array(
                items
                    .into_iter()
                    .map(|v| lenient_to_serde(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        J::Object(obj) => {
            if depth + 1 >= MAX_DEPTH {
                return Err(PayloadError::TooDeep);
            }
            let mut map = Map::new();
            for (k, v) in obj {
                map.insert(k.into_owned(), lenient_to_serde(v, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

/// One group of telemetry sharing a timestamp; `ts == None` means "server time of the message".
#[derive(Debug, PartialEq)]
pub struct TelemetryGroup {
    pub ts: Option<i64>,
    pub values: Vec<Kv>,
}

/// The groups' values as points, those without a timestamp of their own at `default_ts`.
pub fn points(groups: Vec<TelemetryGroup>, default_ts: i64) -> Vec<TsKv> {
    groups
        .into_iter()
        .flat_map(|g| {
            let ts = g.ts.unwrap_or(default_ts);
            g.values.into_iter().map(move |kv| TsKv {
                ts,
                key: kv.key,
                value: kv.value,
            })
        })
        .collect()
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

/// Entries a payload may have for the flat fast path; larger objects take the general path.
const FLAT_MAX_ENTRIES: usize = 64;

/// The typed values of a telemetry payload that is one flat object in strict JSON (what devices
/// send almost always), read straight from its bytes: no JSON tree is built, numbers and booleans
/// are typed from their text. `None` for anything else (arrays, a `ts` key, lenient JSON, more
/// than [`FLAT_MAX_ENTRIES`] keys) and for any value the typing refuses: the general path
/// ([`parse_lenient`], then [`telemetry`]) then reads the payload and gives its result or error.
/// The values are the general path's: in the object's order, a repeated key at its first place
/// with its last value, nulls dropped.
pub fn flat_telemetry(bytes: &[u8], typing: Typing) -> Option<Vec<Kv>> {
    let FlatObject(entries) = serde_json::from_slice(bytes).ok()?;
    // `ts` (with `values`, the timestamped form) is left to the general path.
    if entries.iter().any(|(key, _)| key == "ts") {
        return None;
    }
    typed_entries(entries, typing)
}

/// As [`flat_telemetry`], for a client-attributes payload (where `ts` is a key like any other).
pub fn flat_attributes(bytes: &[u8], typing: Typing) -> Option<Vec<Kv>> {
    let FlatObject(entries) = serde_json::from_slice(bytes).ok()?;
    typed_entries(entries, typing)
}

fn typed_entries(
    entries: Vec<(String, &serde_json::value::RawValue)>,
    typing: Typing,
) -> Option<Vec<Kv>> {
    let mut out = Vec::with_capacity(entries.len());
    for (key, raw) in entries {
        let text = raw.get();
        let value = match text.as_bytes().first()? {
            // Without an exponent serde_json keeps a number's text as written.
            b'-' | b'0'..=b'9' if !text.contains(['e', 'E']) => {
                Some(KvValue::from_number_text(&key, text, typing).ok()?)
            }
            b't' | b'f' | b'n' => {
                let value = match text {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::Null,
                };
                KvValue::from_json(&key, &value, typing).ok()?
            }
            _ => {
                let value: Value = serde_json::from_str(text).ok()?;
                KvValue::from_json(&key, &value, typing).ok()?
            }
        };
        if let Some(value) = value {
            out.push(Kv { key, value });
        }
    }
    Some(out)
}

/// A flat JSON object's entries with their values unparsed, in order; a repeated key keeps its
/// first place and takes its last value (as serde_json's ordered map does).
struct FlatObject<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for FlatObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = FlatObject<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, &'de serde_json::value::RawValue)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, _>()? {
                    match entries.iter().position(|(k, _)| *k == key) {
                        Some(at) => entries[at].1 = value,
                        None if entries.len() < FLAT_MAX_ENTRIES => entries.push((key, value)),
                        None => return Err(serde::de::Error::custom("too many entries")),
                    }
                }
                Ok(FlatObject(entries))
            }
        }
        d.deserialize_map(Entries)
    }
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
    use crate::domain::kv::KvValue;

    /// `depth` nested arrays around a 1 (arrays when `objects` is false, else objects).
    fn nested(depth: usize, objects: bool, lenient: bool) -> Vec<u8> {
        let (open, close) = match (objects, lenient) {
            (false, _) => ("[", "]"),
            (true, false) => ("{\"a\":", "}"),
            (true, true) => ("{a:", "}"),
        };
        let mut text = open.repeat(depth);
        text.push('1');
        text.push_str(&close.repeat(depth));
        text.into_bytes()
    }

    #[test]
    fn nesting_is_bounded_alike_in_both_parsers() {
        for objects in [false, true] {
            for lenient in [false, true] {
                let what = format!("objects {objects}, lenient {lenient}");
                let ok = parse_lenient(&nested(MAX_DEPTH - 1, objects, lenient));
                assert!(ok.is_ok(), "{what}: {ok:?}");
                for depth in [MAX_DEPTH, 600, 100_000] {
                    assert_eq!(
                        parse_lenient(&nested(depth, objects, lenient)),
                        Err(PayloadError::TooDeep),
                        "{what}, depth {depth}"
                    );
                }
            }
        }
        assert!(PayloadError::TooDeep.to_string().contains("128"));
    }

    #[test]
    fn lenient_numbers_keep_their_text() {
        let v = parse_lenient(b"{a:1e999999999999, b:.5, c:+5, d:0x1A, e:NaN, f:-0.1,}").unwrap();
        // Numbers take serde_json's text form (the exponent gets its sign), as on the strict path.
        assert_eq!(v["a"].to_string(), "1e+999999999999");
        assert_eq!(v["b"], ".5");
        assert_eq!(v["c"], "+5");
        assert_eq!(v["d"], "0x1A");
        assert_eq!(v["e"], "NaN");
        assert_eq!(v["f"].to_string(), "-0.1");
        let kvs = attributes(&v, Typing::default()).unwrap();
        assert_eq!(kvs[0].value, KvValue::Str("1e+999999999999".into()));
        assert_eq!(kvs[1].value, KvValue::Double(0.5));
        assert_eq!(kvs[2].value, KvValue::Str("+5".into()));
    }

    #[test]
    fn hostile_values_are_invalid_payloads() {
        let t = Typing::default();
        let long_key = format!("{{\"{}\":1}}", "k".repeat(256));
        let big = format!("{{\"k\":\"{}\"}}", "x".repeat(t.max_value_size + 1));
        for payload in [
            long_key.as_bytes(),
            br#"{"k":"a\u0000b"}"#,
            br#"{"k\u0000":1}"#,
            br#"{"k":{"n":["\u0000"]}}"#,
            big.as_bytes(),
        ] {
            let v = parse_lenient(payload).unwrap();
            let err = telemetry(&v, t).unwrap_err();
            assert!(err.is_limit(), "{err}");
            assert!(attributes(&v, t).unwrap_err().is_limit());
        }
        let v = parse_lenient(br#"{"t":1e999999999999}"#).unwrap();
        assert_eq!(
            telemetry(&v, t).unwrap()[0].values[0].value,
            KvValue::Str("1e+999999999999".into())
        );
    }

    /// The flat fast path gives what the general path gives, or leaves the payload to it.
    #[test]
    fn flat_objects_type_as_the_general_path_does() {
        let cast = Typing {
            type_cast_strings: true,
            ..Typing::default()
        };
        let small = Typing {
            max_value_size: 4,
            max_string_len: 3,
            ..Typing::default()
        };
        let fast = [
            r#"{"t":25,"h":21.5,"on":true,"off":false,"n":null}"#,
            r#"{"a":-0,"b":1.0,"c":0.1000000000000000055511151231257827,"d":-12.50}"#,
            r#"{"big":123456789012345678901234567890,"i":9223372036854775807,"j":-9223372036854775808}"#,
            r#"{"s":"text","u":"\u00e9\n","e":"","num":"42","dbl":"4.5"}"#,
            r#"{"obj":{"x":[1,2,{"y":null}]},"arr":[],"o":{}}"#,
            r#"{"k":1,"k":2,"z":3,"k":null}"#,
            r#"{"caf\u00e9":1, "tab\t":2}"#,
            r#" { "sp" : 1 , "q" : [ 1 , 2 ] } "#,
            r#"{"values":{"a":1}}"#,
            r#"{"e":1e5,"f":-2.5E-3,"g":1e999999999999}"#,
            r#"{}"#,
        ];
        for payload in fast {
            for typing in [Typing::default(), cast, small] {
                let general = parse_lenient(payload.as_bytes())
                    .and_then(|v| telemetry(&v, typing).map(|g| (v, g)));
                let flat = flat_telemetry(payload.as_bytes(), typing);
                match general {
                    Ok((value, groups)) => {
                        assert_eq!(groups.len(), 1, "{payload}");
                        assert_eq!(groups[0].ts, None, "{payload}");
                        assert_eq!(flat.as_ref(), Some(&groups[0].values), "{payload}");
                        assert_eq!(
                            flat_attributes(payload.as_bytes(), typing),
                            attributes(&value, typing).ok(),
                            "{payload}"
                        );
                    }
                    Err(_) => {
                        assert_eq!(flat, None, "{payload}: refused values go the general way")
                    }
                }
            }
        }
        let long_key = format!(r#"{{"{}":1}}"#, "k".repeat(300));
        let many = format!(
            "{{{}}}",
            (0..FLAT_MAX_ENTRIES + 1)
                .map(|i| format!(r#""k{i}":1"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let left = [
            r#"[{"a":1}]"#,
            r#"{"ts":5,"values":{"a":1}}"#,
            r#"{"ts":5}"#,
            "{a:1}",
            "{'a':1}",
            r#"{"a":1,}"#,
            r#"{"a":"x\u0000"}"#,
            "",
            "5",
            &long_key,
            &many,
        ];
        for payload in left {
            assert_eq!(
                flat_telemetry(payload.as_bytes(), Typing::default()),
                None,
                "{payload}"
            );
        }
        assert!(flat_attributes(br#"{"ts":5}"#, Typing::default()).is_some());
    }

    #[test]
    fn lenient_json_is_accepted() {
        assert_eq!(
            parse_lenient(b"{a:1,/* c */ 'b':[1,2,],} // end").unwrap()["b"][1],
            2
        );
        assert!(parse_lenient(b"{a:1 b:2}").is_err(), "missing commas");
        assert!(parse_lenient(&[b'{', 0xff, b'}']).is_err());
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
