//! Fuzz targets (bolero's random engine, which runs under plain `cargo test` on stable): MQTT topic
//! parsing, payload conversion and number typing, the rules loader, and raw MQTT packets fed to a
//! running server. Each target checks properties, not only the absence of panics, and prints how
//! many inputs it ran.
//!
//! `cargo test --test fuzz` runs each for about a second; `scripts/fuzz` runs them longer
//! (`BOLERO_RANDOM_TEST_TIME_MS` per target) and sums up executions and crashes.

#[path = "../common/mod.rs"]
mod common;
mod mqtt_packets;
#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use bolero::check;
use ferroboard::domain::kv::{KvValue, MAX_KEY_CHARS, Typing, classify_number};
use ferroboard::domain::payload::{self, MAX_DEPTH, PayloadError};
use ferroboard::transport::mqtt::topics::{Subscription, Uplink};

/// Counts the inputs one target ran (and how many of them parsed as a payload); prints the totals
/// when dropped (also after a crash).
pub(crate) struct Executions {
    target: &'static str,
    count: AtomicU64,
    parsed: AtomicU64,
}

impl Executions {
    pub(crate) fn new(target: &'static str) -> Self {
        Self {
            target,
            count: AtomicU64::new(0),
            parsed: AtomicU64::new(0),
        }
    }

    /// Counts one input; returns how many ran before it.
    pub(crate) fn tick(&self) -> u64 {
        self.count.fetch_add(1, Ordering::Relaxed)
    }

    fn parsed(&self, yes: bool) {
        if yes {
            self.parsed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Executions {
    fn drop(&mut self) {
        eprintln!(
            "fuzz target {}: {} executions",
            self.target,
            self.count.load(Ordering::Relaxed)
        );
        let parsed = self.parsed.load(Ordering::Relaxed);
        if parsed > 0 {
            eprintln!(
                "fuzz target {}: {parsed} inputs parsed as payloads",
                self.target
            );
        }
    }
}

// ------------------------------------------------------------------------------ inputs

/// Renders generated (op, parameter) pairs as JSON-like text: mostly well formed, with the
/// lenient forms, hostile values (huge exponents, long keys, NUL escapes, deep nesting) and some
/// garbage mixed in.
fn render(ops: &[(u8, u32)]) -> String {
    let mut out = String::new();
    // One entry per open container: (is object, has members).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    for &(op, p) in ops {
        if let Some((is_object, has_members)) = stack.last_mut()
            && op % 16 != 1
        {
            if *has_members {
                out.push(',');
            }
            *has_members = true;
            if *is_object {
                render_key(&mut out, p);
                out.push(':');
            }
        }
        match op % 16 {
            0 => {
                out.push(if p % 2 == 0 { '{' } else { '[' });
                stack.push((p % 2 == 0, false));
                continue;
            }
            1 => match stack.pop() {
                Some((true, _)) => out.push('}'),
                Some((false, _)) => out.push(']'),
                None => {}
            },
            2..=6 => out.push_str(&number(p)),
            7 => out.push_str(["true", "false", "null"][(p % 3) as usize]),
            8 | 9 => render_string(&mut out, p),
            10 => {
                // Deep nesting around the bound.
                let depth = MAX_DEPTH - 2 + (p % 5) as usize;
                out.push_str(&"[".repeat(depth));
                out.push('1');
                out.push_str(&"]".repeat(depth));
            }
            11 => out.push_str(["/* c */", "// c\n", " ", "\n\t"][(p % 4) as usize]),
            12 => out.push_str(&number(p).replace('e', "E")),
            13 => out.push_str([".5", "+5", "0x1A", "NaN", "-Infinity", "5."][(p % 6) as usize]),
            14 => out.push_str(&format!("'{}'", "q".repeat((p % 8) as usize))),
            _ => out.push(char::from_u32(p % 0x80).unwrap_or('?')),
        }
        if stack.is_empty() {
            break;
        }
    }
    while let Some((is_object, _)) = stack.pop() {
        out.push(if is_object { '}' } else { ']' });
    }
    out
}

fn render_key(out: &mut String, p: u32) {
    match p % 7 {
        0 => out.push_str(&format!(
            "\"{}\"",
            "k".repeat(MAX_KEY_CHARS + (p % 3) as usize - 1)
        )),
        1 => out.push_str("\"k\\u0000\""),
        2 => out.push_str(&format!("key{}", p % 5)),
        3 => out.push_str("\"ts\""),
        4 => out.push_str("\"values\""),
        _ => out.push_str(&format!("\"k{}\"", p % 11)),
    }
}

fn render_string(out: &mut String, p: u32) {
    match p % 6 {
        0 => out.push_str("\"a\\u0000b\""),
        1 => out.push_str(&format!("\"{}\"", number(p / 6))),
        2 => out.push_str(&format!("\"{}\"", "x".repeat((p % 2000) as usize))),
        3 => out.push_str("\"\\ud800\""),
        _ => out.push_str(&format!("\"s{}\"", p % 13)),
    }
}

/// A number literal: sign, integer digits, fraction, exponent (sometimes beyond any range).
fn number(p: u32) -> String {
    let mut s = String::new();
    if p & 1 == 1 {
        s.push('-');
    }
    let digits = 1 + (p >> 1) % 24;
    for i in 0..digits {
        s.push(char::from(b'0' + ((p >> (i % 16)) % 10) as u8));
    }
    if p & 0x40 != 0 {
        s.push('.');
        for i in 0..1 + (p >> 7) % 20 {
            s.push(char::from(b'0' + ((p >> (i % 8)) % 10) as u8));
        }
    }
    if p & 0x8000 != 0 {
        s.push('e');
        if p & 0x1_0000 != 0 {
            s.push('-');
        }
        let exponents = [
            "0",
            "5",
            "16",
            "18",
            "19",
            "308",
            "309",
            "999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "99999999999999999999999",
        ];
        s.push_str(exponents[((p >> 17) % exponents.len() as u32) as usize]);
    }
    s
}

// ------------------------------------------------------------------------------ properties

/// Every typed value respects the bounds, and no value is larger than the payload it came from.
fn check_typed(key: &str, value: &KvValue, input_len: usize, typing: Typing) {
    assert!(key.chars().count() <= MAX_KEY_CHARS, "key too long");
    assert!(!key.contains('\0'), "NUL in key");
    match value {
        KvValue::Str(s) => {
            assert!(!s.contains('\0'), "NUL in string");
            assert!(
                s.len() <= input_len.max(typing.max_value_size),
                "string larger than input"
            );
        }
        KvValue::Json(text) => assert!(text.len() <= typing.max_value_size),
        KvValue::Double(d) => assert!(d.is_finite()),
        KvValue::Bool(_) | KvValue::Long(_) => {}
    }
}

/// Returns whether the bytes parsed as a payload.
fn check_payload(bytes: &[u8]) -> bool {
    let typing = Typing {
        max_value_size: 1024,
        ..Typing::default()
    };
    let Ok(value) = payload::parse_lenient(bytes) else {
        return false;
    };
    if let Ok(groups) = payload::telemetry(&value, typing) {
        for g in &groups {
            for kv in &g.values {
                check_typed(&kv.key, &kv.value, bytes.len(), typing);
            }
        }
    }
    if let Ok(kvs) = payload::attributes(&value, typing) {
        for kv in &kvs {
            check_typed(&kv.key, &kv.value, bytes.len(), typing);
        }
    }
    true
}

/// LONG and DOUBLE agree with the literal's value; anything else is the literal itself.
fn check_number(text: &str) {
    let typed = classify_number(text);
    let approx = text.parse::<f64>();
    match &typed {
        KvValue::Long(v) => {
            let f = approx.expect("a LONG literal parses as f64");
            assert!(((*v as f64) - f).abs() <= f.abs() * 1e-12, "{text} -> {v}");
        }
        KvValue::Double(d) => {
            assert!(d.is_finite());
            assert_eq!(Ok(*d), approx, "{text}");
        }
        KvValue::Str(s) => assert_eq!(s, text),
        other => panic!("{text} typed as {other:?}"),
    }
}

// ------------------------------------------------------------------------------ targets

#[test]
fn topics() {
    use ferroboard::domain::profile::{MqttSettings, TopicFilter};
    let runs = Executions::new("topics");
    let default = MqttSettings::default();
    let custom = MqttSettings {
        telemetry: TopicFilter::parse("s/+/t/#").expect("filter"),
        attributes_subscribe: TopicFilter::parse("#").expect("filter"),
        ..MqttSettings::default()
    };
    check!().with_type::<String>().for_each(|topic: &String| {
        runs.tick();
        for settings in [&default, &custom] {
            let _ = Uplink::parse(topic, settings);
            let _ = Subscription::parse(topic, settings);
        }
        // A profile's filter: checked, then matched against anything.
        if let Ok(filter) = TopicFilter::parse(topic) {
            let _ = filter.matches(topic);
            let _ = filter.matches("v1/devices/me/telemetry");
        }
        for prefix in [
            "v1/devices/me/",
            "v2/",
            "v1/devices/me/rpc/request/",
            "v1/devices/me/attributes/request/",
        ] {
            let t = format!("{prefix}{topic}");
            let _ = Uplink::parse(&t, &default);
            let _ = Subscription::parse(&t, &custom);
        }
    });
}

#[test]
fn number_typing() {
    let runs = Executions::new("number_typing");
    check!()
        .with_type::<(u32, String)>()
        .for_each(|(p, text): &(u32, String)| {
            runs.tick();
            check_number(&number(*p));
            check_number(text);
        });
}

#[test]
fn payload_structured() {
    let runs = Executions::new("payload_structured");
    check!()
        .with_type::<Vec<(u8, u32)>>()
        .for_each(|ops: &Vec<(u8, u32)>| {
            runs.tick();
            let text = render(ops);
            runs.parsed(check_payload(text.as_bytes()));
            // What strict JSON accepts, the lenient reader reads the same way.
            if let Ok(strict) = serde_json::from_str::<serde_json::Value>(&text) {
                assert_eq!(payload::read_lenient(&text), Ok(strict), "{text}");
            }
        });
}

#[test]
fn payload_bytes() {
    let runs = Executions::new("payload_bytes");
    check!().for_each(|bytes: &[u8]| {
        runs.tick();
        runs.parsed(check_payload(bytes));
        if let Err(e) = payload::parse_lenient(bytes) {
            assert!(matches!(e, PayloadError::Json(_) | PayloadError::TooDeep));
        }
    });
}

/// The project's chain files, spliced with generated bytes, through the whole loader.
#[test]
fn rules_loader() {
    let runs = Executions::new("rules_loader");
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut chains: Vec<Vec<u8>> = std::fs::read_dir(&rules)
        .expect("rules dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".chain.toml"))
        .map(|p| std::fs::read(p).expect("chain file"))
        .collect();
    chains.sort();
    assert!(!chains.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    check!().with_type::<(u16, u16, Vec<u8>)>().for_each(
        |(which, at, splice): &(u16, u16, Vec<u8>)| {
            runs.tick();
            let base = &chains[*which as usize % chains.len()];
            let at = *at as usize % (base.len() + 1);
            let mut text = base[..at].to_vec();
            text.extend_from_slice(splice);
            text.extend_from_slice(&base[(at + splice.len()).min(base.len())..]);
            std::fs::write(dir.path().join("fuzz.chain.toml"), &text).expect("write chain");
            let _ = ferroboard::engine::check_dir(dir.path());
        },
    );
}

#[test]
fn mqtt_packets() {
    mqtt_packets::run();
}
