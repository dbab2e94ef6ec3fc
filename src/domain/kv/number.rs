//! ThingsBoard's number typing: the literal text of a number (or of a "parsable" string) as LONG,
//! DOUBLE or STRING, in work and memory proportional to the text.

use super::KvValue;

/// commons-lang3 `NumberUtils.isParsable`: optional `-`, digits with at most one `.`, not ending in `.`.
pub(super) fn is_parsable(s: &str) -> bool {
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

/// Classifies the literal text of a number as LONG, DOUBLE or STRING. A number that ThingsBoard
/// would type as a STRING (beyond LONG, or a DOUBLE of more than 16 decimals or outside f64) keeps
/// its own literal text: the work and memory spent are proportional to the text, never to an
/// exponent.
pub fn classify_number(text: &str) -> KvValue {
    classify_plain(text).unwrap_or_else(|| classify_decimal(text))
}

/// The full classification through a decimal (BigDecimal's rules).
fn classify_decimal(text: &str) -> KvValue {
    let literal = || KvValue::Str(text.to_owned());
    let Some(dec) = Decimal::parse(text) else {
        return literal();
    };
    let simple_decimal = text.contains('.') && !text.contains(['e', 'E']);
    if dec.stripped_scale() <= 0 && !simple_decimal {
        return dec.to_i64().map_or_else(literal, KvValue::Long);
    }
    if dec.scale <= 16 {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && round_trips(text, v) => KvValue::Double(v),
            _ => literal(),
        }
    } else {
        literal()
    }
}

/// True when the double `v` nearest to the decimal `text` is exactly that decimal once printed
/// shortest: `0.1` and `1.50` are, `9007199254740993.5` is not. Up to 15 significant digits every
/// decimal in range does; longer ones are compared digit for digit.
fn round_trips(text: &str, v: f64) -> bool {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count();
    if significant <= 15 {
        return true;
    }
    match (Decimal::parse(text), Decimal::parse(&v.to_string())) {
        (Some(a), Some(b)) => a.same_value(&b),
        _ => false,
    }
}

/// The common literals without building a decimal: `-?digits` that fits a LONG, and
/// `-?digits.digits` with at most 16 fraction digits (a finite DOUBLE that round-trips).
/// Everything else (exponents, overflow, signs other than `-`, longer fractions) is left to the
/// full classification.
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
                .filter(|v| v.is_finite() && round_trips(text, *v))
                .map(KvValue::Double)
        }
        Some(_) => None,
    }
}

/// Just enough of Java's BigDecimal to reproduce ThingsBoard's number classification. The scale
/// is an i128 so that no exponent an i64 can hold overflows it.
struct Decimal {
    negative: bool,
    /// Unscaled digits without leading zeros ("" for zero).
    digits: String,
    scale: i128,
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
            .bytes()
            .chain(frac_part.bytes())
            .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let all = format!("{int_part}{frac_part}");
        let digits = all.trim_start_matches('0').to_owned();
        Some(Self {
            negative,
            digits,
            scale: frac_part.len() as i128 - i128::from(exponent),
        })
    }

    /// Trailing zeros of the unscaled digits.
    fn zeros(&self) -> usize {
        self.digits.len() - self.digits.trim_end_matches('0').len()
    }

    /// Equal numeric values (`1.50` and `1.5`; `0` and `-0.0`).
    fn same_value(&self, other: &Self) -> bool {
        if self.digits.is_empty() || other.digits.is_empty() {
            return self.digits.is_empty() && other.digits.is_empty();
        }
        self.negative == other.negative
            && self.digits.trim_end_matches('0') == other.digits.trim_end_matches('0')
            && self.stripped_scale() == other.stripped_scale()
    }

    fn stripped_scale(&self) -> i128 {
        if self.digits.is_empty() {
            return 0;
        }
        self.scale - self.zeros() as i128
    }

    fn to_i64(&self) -> Option<i64> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let zeros = self.zeros();
        let significant = &self.digits[..self.digits.len() - zeros];
        let shift = zeros as i128 - self.scale; // power of ten to multiply the significant digits by
        if shift < 0 || significant.len() as i128 + shift > 19 {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kv::Typing;
    use serde_json::Value;

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
    fn numbers_beyond_exact_types_keep_their_literal_text() {
        for text in [
            "1e999999999999",
            "-1e-999999999",
            "1e308",
            "-1E309",
            "1e9223372036854775807",
            "1e-9223372036854775808",
            "-0.5e-9223372036854775808",
            "1e99999999999999999999999",
            "123456789012345678901234567890123456789012345678901234567890",
            "9223372036854775808",
            "-9223372036854775809",
            "0.12345678901234567",
            "1.0E-20",
        ] {
            assert_eq!(
                classify_number(text),
                KvValue::Str(text.to_owned()),
                "{text}"
            );
        }
        // Through JSON, the text is serde_json's form of the literal (the exponent gets a sign).
        assert_eq!(
            typed("1e999999999999"),
            KvValue::Str("1e+999999999999".into())
        );
        assert_eq!(typed("-1E-999999999"), KvValue::Str("-1e-999999999".into()));
        // Still exact: a LONG at both ends of i64, exponent forms with an integral value.
        assert_eq!(typed("9223372036854775807"), KvValue::Long(i64::MAX));
        assert_eq!(typed("-9223372036854775808"), KvValue::Long(i64::MIN));
        assert_eq!(typed("9.223372036854775807e18"), KvValue::Long(i64::MAX));
        assert_eq!(typed("100000e-5"), KvValue::Long(1));
        assert_eq!(typed("0e999999999999"), KvValue::Long(0));
        // A DOUBLE parses to the nearest f64 and renders back as written; one that does not
        // round-trip keeps its text.
        assert_eq!(typed("0.1"), KvValue::Double(0.1));
        assert_eq!(typed("1.5000000000000000"), KvValue::Double(1.5));
        assert_eq!(
            typed("0.1234567890123456"),
            KvValue::Double(0.1234567890123456)
        );
        for text in [
            "9007199254740993.5",
            "1.0000000000000001",
            "123456789012345678901234.5",
        ] {
            assert_eq!(typed(text), KvValue::Str(text.to_owned()), "{text}");
        }
        assert_eq!(typed("0.1").to_java_string(), "0.1");
        assert_eq!(typed("-2.5e-3"), KvValue::Double(-0.0025));
        // Type-cast strings follow the same rules.
        let long = "1".repeat(400);
        assert_eq!(
            typed(&format!("\"{long}\"")),
            KvValue::Str(long.clone()),
            "a parsable string beyond LONG stays as written"
        );
        assert_eq!(
            typed(&format!("\"{long}.5\"")),
            KvValue::Str(format!("{long}.5")),
            "a decimal beyond f64 stays as written"
        );
    }
}
