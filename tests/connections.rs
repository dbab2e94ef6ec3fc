//! Connection limits against the real server, with raw sockets and real clients: a slowloris HTTP
//! client is disconnected after the header deadline, connections over the HTTP and MQTT caps are
//! refused and counted, and a flood of wrong tokens costs one credential lookup per token.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::time::Duration;

use common::{Backend, TestApp, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn state(app: &TestApp) -> &std::sync::Arc<ferroboard::state::AppState> {
    &app.app.as_ref().expect("running").state
}

/// Reads until the peer closes (or `WAIT` passes, which fails the test); returns what was read.
async fn read_to_close(sock: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, sock.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {WAIT:?}; read so far: {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// Sends one complete request on a kept-alive connection and reads its status line.
async fn request_status(sock: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_http_client_is_closed_after_the_header_timeout() {
    let app = common::spawn_app_with(Backend::Sqlite, |c| {
        c.http.header_read_timeout_ms = 300;
    })
    .await;
    let addr = app.app.as_ref().expect("running").http_addr;
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    // Headers that never end: the blank line never comes.
    slow.write_all(b"GET /api/health HTTP/1.1\r\nhost: test\r\nx-slow: 1")
        .await
        .expect("write");
    let answer = read_to_close(&mut slow).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "closed without serving the request: {text:?}"
    );
    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let answer = read_to_close(&mut silent).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
    // The server itself keeps serving.
    let mut ok = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(
        request_status(&mut ok, "/api/health").await,
        "HTTP/1.1 200 OK"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_over_the_cap_are_refused_and_counted() {
    let app = common::spawn_app_with(Backend::Sqlite, |c| {
        c.http.max_connections = 2;
    })
    .await;
    let addr = app.app.as_ref().expect("running").http_addr;
    // Two kept-alive connections that each got an answer: both hold a place.
    let mut first = TcpStream::connect(addr).await.expect("connect");
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(
        request_status(&mut first, "/api/health").await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        request_status(&mut second, "/api/health").await,
        "HTTP/1.1 200 OK"
    );
    // The third is answered 503 and closed.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let refused = read_to_close(&mut third).await;
    let text = String::from_utf8_lossy(&refused);
    assert!(text.starts_with("HTTP/1.1 503"), "{text:?}");
    assert!(text.contains("Too many open connections"), "{text}");
    // The refusal is counted; the place of a closed connection is free again.
    let metrics = request_status_body(&mut first, "/metrics").await;
    let count = metric(&metrics, "ferroboard_http_connections_refused_total");
    assert!(count >= 1.0, "refusal counted: {count}");
    drop(second);
    eventually("a place is free again", WAIT, || async {
        let mut again = TcpStream::connect(addr).await.ok()?;
        (request_status(&mut again, "/api/health").await == "HTTP/1.1 200 OK").then_some(())
    })
    .await;
    app.shutdown().await;
}

/// Sends a request on a kept-alive connection and reads its whole body (by content-length).
async fn request_status_body(sock: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed before the answer was complete");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if body.len() >= length {
                return body.to_owned();
            }
        }
    }
}

/// The value of an unlabelled (or first labelled) sample of `name` in Prometheus text; 0 if absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

use common::raw_mqtt::{connect as raw_connect, connect_as as raw_connect_as};

async fn device(api: &support::Api) -> String {
    let name = format!("conn-{}", uuid::Uuid::new_v4().simple());
    let (id, _) = api.create_device(json!({ "name": name })).await;
    api.token_of(&id).await
}

async fn mqtt_connections_over_the_cap_are_refused_and_counted(backend: Backend) {
    let app = common::spawn_app_with(backend, |c| c.mqtt.max_connections = 2).await;
    let api = support::Api::tenant(&app).await;
    let (a, b, c) = (device(&api).await, device(&api).await, device(&api).await);
    let (_first, rc) = raw_connect(&app, &a).await;
    assert_eq!(rc, 0, "first accepted");
    let (second, rc) = raw_connect(&app, &b).await;
    assert_eq!(rc, 0, "second accepted");
    // MQTT 3.1.1: 3 (server unavailable); MQTT 5: 0x89 (server busy).
    let (_, rc) = raw_connect(&app, &c).await;
    assert_eq!(rc, 3, "third refused");
    let mut opts = rumqttc::v5::MqttOptions::new("c-v5", "127.0.0.1", app.mqtt_port);
    opts.set_credentials(c.clone(), "");
    let (_client, mut events) = rumqttc::v5::AsyncClient::new(opts, 10);
    let err = tokio::time::timeout(WAIT, events.poll())
        .await
        .expect("CONNACK in time")
        .expect_err("v5 refused");
    assert!(format!("{err:?}").contains("ServerBusy"), "{err:?}");
    let rendered = state(&app).metrics.render();
    assert!(
        rendered
            .lines()
            .any(|l| l
                .starts_with("ferroboard_mqtt_connect_refused_total{reason=\"connection_limit\"}")),
        "refusals counted by reason"
    );
    // A closed session frees its place.
    drop(second);
    eventually("a place is free again", WAIT, || async {
        let (_sock, rc) = raw_connect(&app, &c).await;
        (rc == 0).then_some(())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_connections_over_the_cap_are_refused_and_counted_sqlite() {
    mqtt_connections_over_the_cap_are_refused_and_counted(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_connections_over_the_cap_are_refused_and_counted_postgres() {
    mqtt_connections_over_the_cap_are_refused_and_counted(Backend::Postgres).await;
}

async fn a_wrong_token_flood_costs_one_lookup(backend: Backend) {
    let app = common::spawn_app_with(backend, |c| c.mqtt.auth_cache_ttl_ms = 600_000).await;
    let cache = &state(&app).services.auth_cache;
    let token = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    const FLOOD: u64 = 40;
    // From a new client id each time (as mosquitto_pub does): the token itself is looked up
    // once; each CONNECT costs only the one client-id lookup MQTT_BASIC credentials need.
    let (tokens, token_hits) = (cache.tokens.lookups(), cache.tokens.hits());
    let connects = cache.connects.lookups();
    for _ in 0..FLOOD {
        let (_, rc) = raw_connect(&app, &token).await;
        assert_eq!(rc, 5, "not authorized");
    }
    assert_eq!(
        cache.tokens.lookups() - tokens,
        1,
        "the token looked up once"
    );
    assert_eq!(
        cache.tokens.hits() - token_hits,
        FLOOD - 1,
        "then answered from memory"
    );
    assert_eq!(
        cache.connects.lookups() - connects,
        FLOOD,
        "one check per CONNECT"
    );
    // From one client id: the whole CONNECT is answered from memory after the first.
    let (connects, connect_hits) = (cache.connects.lookups(), cache.connects.hits());
    for _ in 0..FLOOD {
        let (_, rc) = raw_connect_as(&app, "flooder", &token).await;
        assert_eq!(rc, 5, "not authorized");
    }
    assert_eq!(
        cache.connects.lookups() - connects,
        1,
        "one lookup for the CONNECT"
    );
    assert_eq!(cache.connects.hits() - connect_hits, FLOOD - 1);
    assert_eq!(
        cache.tokens.lookups() - tokens,
        1,
        "the token still not looked up again"
    );
    let rendered = state(&app).metrics.render();
    for name in [
        "ferroboard_mqtt_connect_refused_total{reason=\"not_authorized\"}",
        "ferroboard_mqtt_auth_lookups_total{kind=\"token\"}",
        "ferroboard_mqtt_auth_cache_hits_total{kind=\"token\"}",
        "ferroboard_mqtt_auth_cache_hits_total{kind=\"connect\"}",
    ] {
        assert!(
            rendered.lines().any(|l| l.starts_with(name)),
            "{name} in /metrics"
        );
    }
    // Creating a device with that token makes it valid at once: the caches are emptied.
    let api = support::Api::tenant(&app).await;
    api.create_device_with_token(json!({"name": format!("late-{token}")}), &token)
        .await;
    let (_sock, rc) = raw_connect_as(&app, "flooder", &token).await;
    assert_eq!(rc, 0, "the new token connects");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_flood_costs_one_lookup_sqlite() {
    a_wrong_token_flood_costs_one_lookup(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_flood_costs_one_lookup_postgres() {
    a_wrong_token_flood_costs_one_lookup(Backend::Postgres).await;
}
