//! Typed key/values (ThingsBoard's BOOLEAN/LONG/DOUBLE/STRING/JSON), their typing rules and renderings.

use serde_json::{Number, Value};

mod number;

pub use number::classify_number;
use number::is_parsable;

/// A typed value as stored for attributes and time series.
#[derive(Clone, Debug, PartialEq)]
pub enum KvValue {
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
    /// Compact JSON text of an object or array.
    Json(String),
}

/// One key/value without a timestamp (attributes, one message's telemetry group).
#[derive(Clone, Debug, PartialEq)]
pub struct Kv {
    pub key: String,
    pub value: KvValue,
}

/// One time-series point.
#[derive(Clone, Debug, PartialEq)]
pub struct TsKv {
    pub ts: i64,
    pub key: String,
    pub value: KvValue,
}

/// Attribute scopes, named as ThingsBoard names them on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttributeScope {
    Client,
    Server,
    Shared,
}

impl AttributeScope {
    pub const ALL: [AttributeScope; 3] = [Self::Client, Self::Server, Self::Shared];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "CLIENT_SCOPE",
            Self::Server => "SERVER_SCOPE",
            Self::Shared => "SHARED_SCOPE",
        }
    }

    /// Small stable number used as the scope column in storage.
    pub fn code(self) -> i16 {
        match self {
            Self::Client => 1,
            Self::Server => 2,
            Self::Shared => 3,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::Client),
            2 => Some(Self::Server),
            3 => Some(Self::Shared),
            _ => None,
        }
    }
}

impl std::str::FromStr for AttributeScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "CLIENT_SCOPE" => Ok(Self::Client),
            "SERVER_SCOPE" => Ok(Self::Server),
            "SHARED_SCOPE" => Ok(Self::Shared),
            other => Err(format!("Invalid scope: {other}")),
        }
    }
}

/// Keys longer than this are refused: ThingsBoard's key columns hold 255 characters.
pub const MAX_KEY_CHARS: usize = 255;

/// Why a value could not be typed (each names the limit it broke).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TypingError {
    #[error("string value of key '{0}' is longer than {1} characters")]
    StringTooLong(String, usize),
    #[error("key '{0}…' is longer than {MAX_KEY_CHARS} characters")]
    KeyTooLong(String),
    #[error("key or value of key '{0}' contains a NUL character")]
    Nul(String),
    #[error("value of key '{0}' is larger than json.max_value_size ({1} bytes)")]
    ValueTooLarge(String, usize),
}

impl TypingError {
    /// A key as errors show it: at most 64 characters.
    fn key(key: &str) -> String {
        key.chars().take(64).collect()
    }
}

/// Typing options (ThingsBoard's `transport.json.*`, plus the value size bound).
#[derive(Clone, Copy, Debug)]
pub struct Typing {
    pub type_cast_strings: bool,
    /// 0 = unlimited.
    pub max_string_len: usize,
    /// Bytes of one value (a string, a number literal, the compact text of an object or array).
    pub max_value_size: usize,
}

/// Default of `json.max_value_size`.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 * 1024;

impl Default for Typing {
    fn default() -> Self {
        Self {
            type_cast_strings: true,
            max_string_len: 0,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
        }
    }
}

/// Refuses keys that storage cannot hold: longer than [`MAX_KEY_CHARS`], or with a NUL.
pub fn check_key(key: &str) -> Result<(), TypingError> {
    if key.len() > MAX_KEY_CHARS && key.chars().count() > MAX_KEY_CHARS {
        return Err(TypingError::KeyTooLong(TypingError::key(key)));
    }
    if key.contains('\0') {
        return Err(TypingError::Nul(TypingError::key(key)));
    }
    Ok(())
}

/// True when a string anywhere inside the value (keys included) holds a NUL.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(obj) => obj.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

impl KvValue {
    /// Types one JSON value by ThingsBoard's rules; `None` for JSON null (the key is dropped).
    /// The key and the value are checked against the bounds first (length, NUL, size).
    pub fn from_json(
        key: &str,
        value: &Value,
        typing: Typing,
    ) -> Result<Option<Self>, TypingError> {
        check_key(key)?;
        let too_large = |len: usize| {
            if len > typing.max_value_size {
                Err(TypingError::ValueTooLarge(
                    TypingError::key(key),
                    typing.max_value_size,
                ))
            } else {
                Ok(())
            }
        };
        Ok(Some(match value {
            Value::Null => return Ok(None),
            Value::Bool(b) => Self::Bool(*b),
            Value::Object(_) | Value::Array(_) => {
                if has_nul(value) {
                    return Err(TypingError::Nul(TypingError::key(key)));
                }
                let text = value.to_string();
                too_large(text.len())?;
                Self::Json(text)
            }
            Value::String(s) => {
                too_large(s.len())?;
                if s.contains('\0') {
                    return Err(TypingError::Nul(TypingError::key(key)));
                }
                if typing.max_string_len > 0 && s.chars().count() > typing.max_string_len {
                    return Err(TypingError::StringTooLong(
                        TypingError::key(key),
                        typing.max_string_len,
                    ));
                }
                if typing.type_cast_strings && is_parsable(s) {
                    classify_number(s)
                } else {
                    Self::Str(s.clone())
                }
            }
            // arbitrary_precision keeps the literal text.
            Value::Number(n) => Self::from_number_text(key, n.as_str(), typing)?,
        }))
    }

    /// A JSON number of `key` from its text as serde_json keeps it (`arbitrary_precision`), as
    /// `from_json` types a `Value::Number`.
    pub fn from_number_text(key: &str, text: &str, typing: Typing) -> Result<Self, TypingError> {
        check_key(key)?;
        if text.len() > typing.max_value_size {
            return Err(TypingError::ValueTooLarge(
                TypingError::key(key),
                typing.max_value_size,
            ));
        }
        Ok(classify_number(text))
    }

    /// The value as a typed JSON value (JSON text is parsed back).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(*b),
            Self::Long(v) => Value::Number((*v).into()),
            Self::Double(v) => double_json(*v),
            Self::Str(s) => Value::String(s.clone()),
            Self::Json(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
        }
    }

    /// ThingsBoard's default string rendering (Java `toString` conventions).
    pub fn to_java_string(&self) -> String {
        match self {
            Self::Bool(b) => b.to_string(),
            Self::Long(v) => v.to_string(),
            Self::Double(v) => java_double(*v),
            Self::Str(s) | Self::Json(s) => s.clone(),
        }
    }

    /// Numeric view used by aggregation; strings and JSON are not numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Long(v) => Some(*v as f64),
            Self::Double(v) => Some(*v),
            _ => None,
        }
    }
}

/// A JSON number for a double that stays a double on the wire (`25.0`, never `25`).
pub fn double_json(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) if v.fract() == 0.0 && v.abs() < 1e16 => {
            serde_json::from_str(&format!("{v:.1}")).unwrap_or(Value::Number(n))
        }
        Some(n) => Value::Number(n),
        None => Value::Null,
    }
}

/// Java's `Double.toString`: plain notation in [1e-3, 1e7), otherwise `d.dddE±n`; always a fraction digit.
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let abs = v.abs();
    if (1e-3..1e7).contains(&abs) {
        let s = format!("{v}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let sci = format!("{v:e}"); // e.g. "1.5e7", "-1e-5"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_owned()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nul_and_sizes_are_bounded() {
        let t = Typing::default();
        let v = Value::from(1);
        let key = "k".repeat(MAX_KEY_CHARS);
        assert!(KvValue::from_json(&key, &v, t).is_ok());
        let long = "k".repeat(MAX_KEY_CHARS + 1);
        assert!(matches!(
            KvValue::from_json(&long, &v, t),
            Err(TypingError::KeyTooLong(_))
        ));
        // Characters, not bytes: 255 two-byte characters are a valid key.
        assert!(KvValue::from_json(&"é".repeat(MAX_KEY_CHARS), &v, t).is_ok());
        assert!(matches!(
            KvValue::from_json("a\0b", &v, t),
            Err(TypingError::Nul(_))
        ));
        for nul in [
            Value::from("a\0b"),
            serde_json::json!({"x": ["ok", "a\0"]}),
            serde_json::json!({"x\0": 1}),
        ] {
            assert!(
                matches!(KvValue::from_json("k", &nul, t), Err(TypingError::Nul(_))),
                "{nul}"
            );
        }
        let small = Typing {
            max_value_size: 8,
            ..t
        };
        assert!(KvValue::from_json("k", &Value::from("12345678"), small).is_ok());
        for big in [
            Value::from("123456789"),
            serde_json::json!([1, 2, 3, 4]),
            serde_json::from_str::<Value>("1234567890").unwrap(),
        ] {
            let err = KvValue::from_json("k", &big, small).unwrap_err();
            assert_eq!(err, TypingError::ValueTooLarge("k".into(), 8), "{big}");
            assert!(err.to_string().contains("json.max_value_size"));
        }
    }

    #[test]
    fn doubles_render_like_java() {
        assert_eq!(java_double(25.0), "25.0");
        assert_eq!(java_double(21.5), "21.5");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(double_json(25.0).to_string(), "25.0");
    }
}
