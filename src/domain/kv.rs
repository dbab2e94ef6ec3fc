//! Typed key/values (ThingsBoard's BOOLEAN/LONG/DOUBLE/STRING/JSON), their typing rules and renderings.

use serde_json::{Number, Value};

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

/// Why a value could not be typed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TypingError {
    #[error("string value of key '{0}' is longer than {1} characters")]
    StringTooLong(String, usize),
}

/// Typing options (ThingsBoard's `transport.json.*`).
#[derive(Clone, Copy, Debug)]
pub struct Typing {
    pub type_cast_strings: bool,
    /// 0 = unlimited.
    pub max_string_len: usize,
}

impl Default for Typing {
    fn default() -> Self {
        Self {
            type_cast_strings: true,
            max_string_len: 0,
        }
    }
}

impl KvValue {
    /// Types one JSON value by ThingsBoard's rules; `None` for JSON null (the key is dropped).
    pub fn from_json(
        key: &str,
        value: &Value,
        typing: Typing,
    ) -> Result<Option<Self>, TypingError> {
        Ok(Some(match value {
            Value::Null => return Ok(None),
            Value::Bool(b) => Self::Bool(*b),
            Value::Object(_) | Value::Array(_) => Self::Json(value.to_string()),
            Value::String(s) => {
                if typing.max_string_len > 0 && s.chars().count() > typing.max_string_len {
                    return Err(TypingError::StringTooLong(
                        key.to_owned(),
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
            Value::Number(n) => classify_number(n.as_str()),
        }))
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

/// commons-lang3 `NumberUtils.isParsable`: optional `-`, digits with at most one `.`, not ending in `.`.
fn is_parsable(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    if body.is_empty() || body.ends_with('.') {
        return false;
    }
    let mut dots = 0;
    for c in body.chars() {
        if c == '.' {
            dots += 1;
            if dots > 1 {
                return false;
            }
        } else if !c.is_ascii_digit() {
            return false;
        }
    }
    true
}

/// Classifies the literal text of a number as LONG, DOUBLE or STRING.
fn classify_number(text: &str) -> KvValue {
    classify_plain(text).unwrap_or_else(|| classify_decimal(text))
}

/// The full classification through a decimal (BigDecimal's rules).
fn classify_decimal(text: &str) -> KvValue {
    let Some(dec) = Decimal::parse(text) else {
        return KvValue::Str(text.to_owned());
    };
    let simple_decimal = text.contains('.') && !text.contains(['e', 'E']);
    if dec.stripped_scale() <= 0 && !simple_decimal {
        return match dec.to_i64() {
            Some(v) => KvValue::Long(v),
            None => KvValue::Str(dec.plain()),
        };
    }
    if dec.scale <= 16 {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => KvValue::Double(v),
            _ => KvValue::Str(dec.plain()),
        }
    } else {
        KvValue::Str(dec.plain())
    }
}

/// The common literals without building a decimal: `-?digits` that fits a LONG, and
/// `-?digits.digits` with at most 16 fraction digits (a finite DOUBLE). Everything else (exponents,
/// overflow, signs other than `-`, longer fractions) is left to the full classification.
fn classify_plain(text: &str) -> Option<KvValue> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (body, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match frac {
        None => text.parse::<i64>().ok().map(KvValue::Long),
        Some(frac)
            if !frac.is_empty() && frac.len() <= 16 && frac.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(KvValue::Double)
        }
        Some(_) => None,
    }
}

/// Just enough of Java's BigDecimal to reproduce ThingsBoard's number classification.
struct Decimal {
    negative: bool,
    /// Unscaled digits without leading zeros ("" for zero).
    digits: String,
    scale: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Self> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part
            .chars()
            .chain(frac_part.chars())
            .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let all = format!("{int_part}{frac_part}");
        let digits = all.trim_start_matches('0').to_owned();
        Some(Self {
            negative,
            digits,
            scale: frac_part.len() as i64 - exponent,
        })
    }

    fn stripped_scale(&self) -> i64 {
        if self.digits.is_empty() {
            return 0;
        }
        let zeros = self.digits.len() - self.digits.trim_end_matches('0').len();
        self.scale - zeros as i64
    }

    fn to_i64(&self) -> Option<i64> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let zeros = (self.digits.len() - self.digits.trim_end_matches('0').len()) as i64;
        let significant = &self.digits[..self.digits.len() - zeros as usize];
        let shift = zeros - self.scale; // power of ten to multiply the significant digits by
        if shift < 0 || significant.len() as i64 + shift > 19 {
            return None;
        }
        let mut value: i128 = significant.parse().ok()?;
        for _ in 0..shift {
            value = value.checked_mul(10)?;
        }
        if self.negative {
            value = -value;
        }
        i64::try_from(value).ok()
    }

    /// BigDecimal.toPlainString.
    fn plain(&self) -> String {
        let sign = if self.negative && !self.digits.is_empty() {
            "-"
        } else {
            ""
        };
        let digits = if self.digits.is_empty() {
            "0"
        } else {
            &self.digits
        };
        if self.scale <= 0 {
            return format!("{sign}{digits}{}", "0".repeat((-self.scale) as usize));
        }
        let scale = self.scale as usize;
        if digits.len() > scale {
            let (i, f) = digits.split_at(digits.len() - scale);
            format!("{sign}{i}.{f}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
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

    fn typed(text: &str) -> KvValue {
        let v: Value = serde_json::from_str(text).unwrap();
        KvValue::from_json("k", &v, Typing::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn numbers_are_classified_like_thingsboard() {
        assert_eq!(typed("42"), KvValue::Long(42));
        assert_eq!(typed("\"42\""), KvValue::Long(42));
        assert_eq!(typed("\"007\""), KvValue::Long(7));
        assert_eq!(typed("-7"), KvValue::Long(-7));
        assert_eq!(typed("42.0"), KvValue::Double(42.0));
        assert_eq!(typed("\"42.0\""), KvValue::Double(42.0));
        assert_eq!(typed("1.50"), KvValue::Double(1.5));
        assert_eq!(typed("1e3"), KvValue::Long(1000));
        assert_eq!(typed("1.5E2"), KvValue::Long(150));
        assert_eq!(typed("1.0E2"), KvValue::Long(100));
        assert_eq!(typed("1.23e-5"), KvValue::Double(1.23e-5));
        assert_eq!(
            typed("12345678901234567890"),
            KvValue::Str("12345678901234567890".into())
        );
        assert_eq!(
            typed("0.12345678901234567890"),
            KvValue::Str("0.12345678901234567890".into())
        );
        for s in ["\"1e5\"", "\"+5\"", "\"0x1A\"", "\" 5\"", "\"5.\""] {
            assert!(matches!(typed(s), KvValue::Str(_)), "{s}");
        }
        assert_eq!(typed("\".5\""), KvValue::Double(0.5));
        assert_eq!(typed("\"-.5\""), KvValue::Double(-0.5));
        assert_eq!(typed("true"), KvValue::Bool(true));
        assert_eq!(typed("{\"a\":1}"), KvValue::Json("{\"a\":1}".into()));
        let null: Value = Value::Null;
        assert_eq!(KvValue::from_json("k", &null, Typing::default()), Ok(None));
    }

    #[test]
    fn the_plain_path_agrees_with_the_full_classification() {
        let mut literals: Vec<String> = [
            "0",
            "-0",
            "7",
            "007",
            "-42",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "0.0",
            "-0.0",
            "21.5",
            "1.50",
            "0.1234567890123456",
            "0.12345678901234567",
            "123456789012345678901234.5",
            "1.",
            ".5",
            "-",
            "",
            "1.2.3",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // A deterministic spread of integers and decimals of many lengths.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 10u64.pow((x % 19) as u32 + 1);
            let frac_len = (x >> 40) % 20;
            let sign = if x & 1 == 1 { "-" } else { "" };
            literals.push(format!("{sign}{int}"));
            if frac_len > 0 {
                let frac = format!("{:0>20}", x >> 3);
                literals.push(format!("{sign}{int}.{}", &frac[..frac_len as usize]));
            }
        }
        for text in &literals {
            if let Some(fast) = classify_plain(text) {
                assert_eq!(fast, classify_decimal(text), "{text}");
            }
        }
        assert_eq!(classify_plain("21.5"), Some(KvValue::Double(21.5)));
        assert_eq!(classify_plain("60"), Some(KvValue::Long(60)));
        assert_eq!(classify_plain("1e3"), None);
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
