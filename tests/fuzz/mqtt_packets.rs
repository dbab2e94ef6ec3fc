//! Fuzz target: generated MQTT byte streams fed to a running server over TCP, after no CONNECT, a
//! valid MQTT 3.1.1 CONNECT or a valid MQTT 5 CONNECT. Properties: no thread of the server panics,
//! and every so often (and at the end) a well-behaved device still connects, publishes at QoS 1 and
//! gets its PUBACK, and `/api/health` answers 200.

use std::sync::Mutex;
use std::time::Duration;

use bolero::check;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Executions;
use crate::common::{Backend, TestApp, raw_mqtt, spawn_app};
use crate::support::Api;

/// The bolero-driven test threads of this crate: their panics are the targets' own findings, not
/// the server's.
const TEST_THREADS: [&str; 6] = [
    "topics",
    "number_typing",
    "payload_structured",
    "payload_bytes",
    "rules_loader",
    "mqtt_packets",
];

/// Panics seen on server threads (thread name and message).
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Most frames per input and most bytes per frame body: enough for any packet shape, small enough
/// for thousands of inputs per second.
const MAX_FRAMES: usize = 8;
const MAX_BODY: usize = 512;
/// Topics the generated PUBLISH and SUBSCRIBE frames name, so that inputs reach the handlers.
const TOPICS: [&str; 9] = [
    "v1/devices/me/telemetry",
    "v1/devices/me/attributes",
    "v1/devices/me/attributes/request/1",
    "v1/devices/me/rpc/request/1",
    "v1/devices/me/rpc/response/1",
    "v1/devices/me/claim",
    "v1/devices/me/attributes/response/+",
    "v1/devices/me/rpc/request/+",
    "v2/fw/response/+",
];

/// One generated frame: first byte, how the remaining length is written, a length value, a body.
type Frame = (u8, u8, u16, Vec<u8>);

pub fn run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (app, token, probe_token) = rt.block_on(async {
        let app = spawn_app(Backend::Sqlite).await;
        let api = Api::tenant(&app).await;
        let (fuzzed, _) = api.create_device(json!({"name": "fuzzed"})).await;
        let (probe, _) = api.create_device(json!({"name": "probe"})).await;
        let token = api.token_of(&fuzzed).await;
        let probe_token = api.token_of(&probe).await;
        (app, token, probe_token)
    });
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        if !TEST_THREADS.contains(&name)
            && let Ok(mut seen) = SERVER_PANICS.lock()
        {
            seen.push(format!("{name}: {info}"));
        }
        previous(info);
    }));

    let runs = Executions::new("mqtt_packets");
    // A failed input ends the run (bolero then shrinks it); the server is not reused after that.
    let served = std::panic::AssertUnwindSafe((&rt, &app));
    check!()
        .with_type::<(u8, Vec<Frame>)>()
        .for_each(|(opening, frames): &(u8, Vec<Frame>)| {
            let (rt, app) = *served;
            let n = runs.tick();
            let bytes = encode(*opening, frames, &token);
            rt.block_on(exchange(app.mqtt_port, &bytes));
            assert_no_server_panic(&bytes);
            if n % 256 == 255 {
                rt.block_on(alive(app, &probe_token));
            }
        });
    rt.block_on(alive(&app, &probe_token));
    assert_no_server_panic(&[]);
    rt.block_on(app.shutdown());
}

fn assert_no_server_panic(input: &[u8]) {
    let seen = SERVER_PANICS.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        seen.is_empty(),
        "the server panicked on input {input:02x?}: {seen:?}"
    );
}

/// Writes the input, closes the write side and reads whatever comes back until the server closes
/// (bounded). Write errors are expected: the server may refuse the stream and close early.
async fn exchange(port: u16, bytes: &[u8]) {
    let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)).await else {
        panic!("the server no longer accepts TCP connections");
    };
    let _ = sock.write_all(bytes).await;
    let _ = sock.shutdown().await;
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), read_all).await;
}

/// A well-behaved device is still served.
async fn alive(app: &TestApp, token: &str) {
    let mut sock = raw_mqtt::session(app, token).await;
    raw_mqtt::publish_qos1(&mut sock, "v1/devices/me/telemetry", 7, r#"{"alive":1}"#).await;
    raw_mqtt::puback(&mut sock, 7).await;
    let health = reqwest::get(format!("{}/api/health", app.http))
        .await
        .expect("health answers");
    assert_eq!(health.status().as_u16(), 200, "health after fuzzed input");
}

// ------------------------------------------------------------------------------ encoding

fn encode(opening: u8, frames: &[Frame], token: &str) -> Vec<u8> {
    let v5 = opening % 3 == 2;
    let mut out = match opening % 3 {
        1 => connect(false, token),
        2 => connect(true, token),
        _ => Vec::new(),
    };
    for (header, mode, len, body) in frames.iter().take(MAX_FRAMES) {
        let body = &body[..body.len().min(MAX_BODY)];
        let body = shaped(*header, body, v5);
        out.push(*header);
        match mode % 4 {
            0 => remaining_length(&mut out, body.len() as u32),
            // A length that lies about the body (shorter or longer).
            1 => remaining_length(&mut out, u32::from(*len)),
            // A large declared length, up to the protocol's maximum.
            2 => remaining_length(&mut out, (u32::from(*len) << 12).min(268_435_455)),
            // A malformed variable-length integer (continuation bit on every byte).
            _ => out.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        }
        out.extend_from_slice(&body);
    }
    out
}

/// PUBLISH and SUBSCRIBE frames get a valid topic in front of their generated bytes (chosen by the
/// first of them), so that the inputs get past the packet decoder into the session's handlers.
fn shaped(header: u8, body: &[u8], v5: bool) -> Vec<u8> {
    let Some((&pick, rest)) = body.split_first() else {
        return Vec::new();
    };
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    let mut out = Vec::new();
    match header >> 4 {
        3 => {
            string(&mut out, topic);
            if header & 0x06 != 0 {
                out.extend_from_slice(&[0, pick | 1]);
            }
            if v5 {
                out.push(0);
            }
            out.extend_from_slice(rest);
        }
        8 => {
            out.extend_from_slice(&[0, pick | 1]);
            if v5 {
                out.push(0);
            }
            string(&mut out, topic);
            out.push(rest.first().copied().unwrap_or(1) & 0x03);
            out.extend_from_slice(rest);
        }
        _ => out.extend_from_slice(body),
    }
    out
}

fn connect(v5: bool, token: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(if v5 { 5 } else { 4 });
    body.push(0x82); // user name, clean session
    body.extend_from_slice(&60u16.to_be_bytes());
    if v5 {
        body.push(0); // no properties
    }
    string(
        &mut body,
        &format!("fuzz-{}", uuid::Uuid::new_v4().simple()),
    );
    string(&mut body, token);
    let mut out = vec![0x10];
    remaining_length(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn remaining_length(out: &mut Vec<u8>, mut n: u32) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}
