//! The HTTP device API (`/api/v1/{token}/...`) against the real server: telemetry and attributes
//! committed before 200, attribute reads in ThingsBoard's shape, long polls for attribute updates
//! and RPCs (answered, timed out, capped, abandoned by the client), RPC replies and client-side
//! RPCs, beside an MQTT session of the same device — on SQLite and PostgreSQL.

#[path = "../mqtt/clients.rs"]
mod clients;
#[path = "../common/mod.rs"]
mod common;
mod polls;
#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;
mod uplink;

use std::time::Duration;

use common::{TestApp, eventually};
use polls::*;
use serde_json::Value;
use uplink::*;

pub const WAIT: Duration = Duration::from_secs(10);

/// A device's side of the HTTP API.
pub struct Http {
    http: reqwest::Client,
    base: String,
}

/// One answer: status and body text.
pub struct Answer {
    pub status: u16,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.text, self.status))
    }

    /// ThingsBoard's error JSON with this status and errorCode; returns the message.
    pub fn error(&self, status: u16, code: u64) -> String {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["errorCode"].as_u64(), Some(code), "{body}");
        body["message"].as_str().expect("message").to_owned()
    }
}

impl Http {
    pub fn new(app: &TestApp, token: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: format!("{}/api/v1/{token}", app.http),
        }
    }

    pub async fn post(&self, path: &str, body: &str) -> Answer {
        let resp = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("HTTP request");
        answer(resp).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let resp = self
            .http
            .get(format!("{}/{path}", self.base))
            .send()
            .await
            .expect("HTTP request");
        answer(resp).await
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    Answer {
        status,
        text: resp.text().await.expect("body"),
    }
}

/// Waits until the node has `n` long polls open.
pub async fn polls_open(app: &TestApp, n: usize) {
    eventually(&format!("{n} long poll(s) open"), WAIT, || async {
        let state = clients::state(app);
        (state.sessions.polls() == n && state.http_polls.open() == n).then_some(())
    })
    .await;
}

both_backends!(
    telemetry_and_attributes_are_committed_before_200,
    bad_requests_are_refused_with_their_reason,
    attribute_reads_have_thingsboards_shape,
    an_attribute_update_ends_the_long_poll,
    a_server_side_rpc_is_delivered_and_answered,
    an_rpc_requested_before_the_poll_is_delivered_to_it,
    long_polls_time_out_with_408,
    a_long_poll_leaves_the_mqtt_session_alone,
    a_client_that_goes_away_leaves_no_poll_behind,
    client_side_rpc_is_answered_by_the_rules,
    a_credentials_change_ends_the_long_poll,
    a_persistent_rpc_is_delivered_to_the_poll_and_answered,
    tokens_are_cached_until_the_device_changes,
);

/// The node's long-poll cap refuses the excess with 429; a client-side RPC no rule answers ends
/// with 408 at `http_device.poll_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_capped_and_client_rpcs_time_out() {
    let app = common::spawn_app_with(common::Backend::Sqlite, |c| {
        c.http_device.max_polls = 1;
        c.http_device.poll_timeout_ms = 500;
    })
    .await;
    let (_, token) = clients::create_device(&app).await;
    let dev = Http::new(&app, &token);
    // The first poll, on a connection of its own that goes away afterwards.
    let addr = app.http.trim_start_matches("http://").to_owned();
    let mut first = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!("GET /api/v1/{token}/rpc?timeout=20000 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut first, request.as_bytes())
        .await
        .expect("write");
    polls_open(&app, 1).await;
    let refused = dev.get("attributes/updates").await;
    let message = refused.error(429, 33);
    assert!(message.contains("http_device.max_polls"), "{message}");
    dev.post("rpc", r#"{"method": "nobodyAnswers"}"#)
        .await
        .error(429, 33);
    drop(first);
    polls_open(&app, 0).await;
    let started = std::time::Instant::now();
    let answer = dev.post("rpc", r#"{"method": "nobodyAnswers"}"#).await;
    assert_eq!(answer.status, 408, "{}", answer.text);
    assert!(started.elapsed() >= Duration::from_millis(500));
    app.shutdown().await;
}

/// A long poll open at shutdown is answered 503 at once; the shutdown does not wait for its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls_with_503() {
    let app = common::spawn_app(common::Backend::Sqlite).await;
    let (_, token) = clients::create_device(&app).await;
    let dev = Http::new(&app, &token);
    let poll = dev.get("attributes/updates?timeout=60000");
    let stop = async move {
        polls_open(&app, 1).await;
        let started = std::time::Instant::now();
        app.shutdown().await;
        started.elapsed()
    };
    let (answer, took) = tokio::join!(poll, stop);
    assert_eq!(answer.status, 503, "{}", answer.text);
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

/// The rate limits of `[limits]` are the device's, whatever the transport: what its MQTT session
/// used counts for its HTTP requests, and the excess is 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_with_the_mqtt_session() {
    let app = common::spawn_app_with(common::Backend::Sqlite, |c| {
        c.limits.telemetry_messages = Some("2:600".to_owned());
    })
    .await;
    let (_, token) = clients::create_device(&app).await;
    let mut mqtt = clients::v3(&app, Some(&token), 30);
    clients::v3_connack(&mut mqtt).await.expect("CONNACK");
    mqtt.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"a":1}"#,
        )
        .await
        .expect("publish");
    clients::v3_puback(&mut mqtt).await;
    let dev = Http::new(&app, &token);
    assert_eq!(dev.post("telemetry", r#"{"a":2}"#).await.status, 200);
    let message = dev.post("telemetry", r#"{"a":3}"#).await.error(429, 33);
    assert!(message.contains("telemetryMessages"), "{message}");
    app.shutdown().await;
}
