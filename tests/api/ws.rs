//! WebSocket subscriptions with a plain WebSocket client (tokio-tungstenite): the legacy
//! `/api/ws/plugins/telemetry?token=` and `/api/ws` with its `authCmd`; latest values, attributes
//! by scope, history, unsubscribe; deletions pushed; a customer user's reach; a slow client closed
//! with a reason, and a connection whose token expires closed at its expiry.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{Backend, TestApp, spawn_app_with};
use crate::support::{Api, TELEMETRY};
use crate::tenancy::new_customer;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

fn ws_url(app: &TestApp, path: &str) -> String {
    format!("ws{}{path}", app.http.trim_start_matches("http"))
}

async fn connect(app: &TestApp, path: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(ws_url(app, path))
        .await
        .expect("WebSocket handshake");
    ws
}

async fn legacy(app: &TestApp, api: &Api) -> Ws {
    let token = api.token.as_deref().expect("token");
    connect(app, &format!("/api/ws/plugins/telemetry?token={token}")).await
}

async fn send(ws: &mut Ws, body: Value) {
    ws.send(Message::Text(body.to_string().into()))
        .await
        .expect("send");
}

/// The next text message, as JSON.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an update in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON update"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// The next update of subscription `id` (updates of others are skipped).
async fn update_of(ws: &mut Ws, id: i64) -> Value {
    loop {
        let v = next(ws).await;
        if v["subscriptionId"] == id {
            return v;
        }
    }
}

async fn post_telemetry(api: &Api, device: &str, body: Value) {
    api.post(&format!("{TELEMETRY}/{device}/timeseries/ANY"), body)
        .await
        .ok();
}

async fn subscriptions(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (device, _) = api.create_device(json!({"name": "ws-1"})).await;
    post_telemetry(
        &api,
        &device,
        json!({"ts": 1000, "values": {"temperature": 20.5, "other": 1}}),
    )
    .await;
    let mut ws = legacy(app, &api).await;
    send(
        &mut ws,
        json!({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device, "scope": "LATEST_TELEMETRY", "keys": "temperature"}],
               "historyCmds": [], "attrSubCmds": []}),
    )
    .await;
    let first = update_of(&mut ws, 1).await;
    assert_eq!(
        first,
        json!({"subscriptionId": 1, "errorCode": 0, "errorMsg": null,
               "data": {"temperature": [[1000, "20.5"]]}, "latestValues": {"temperature": 1000}})
    );
    post_telemetry(
        &api,
        &device,
        json!({"ts": 2000, "values": {"temperature": 21, "other": 2}}),
    )
    .await;
    let live = update_of(&mut ws, 1).await;
    assert_eq!(
        live["data"],
        json!({"temperature": [[2000, "21"]]}),
        "only the subscribed key"
    );

    // Attributes by scope: a SHARED save reaches the SHARED subscription, a SERVER one does not.
    send(
        &mut ws,
        json!({"attrSubCmds": [{"cmdId": 2, "entityType": "DEVICE", "entityId": device, "scope": "SHARED_SCOPE"}]}),
    )
    .await;
    assert_eq!(update_of(&mut ws, 2).await["data"], json!({}));
    let attrs = |scope: &str| format!("{TELEMETRY}/{device}/attributes/{scope}");
    api.post(&attrs("SERVER_SCOPE"), json!({"secret": 1}))
        .await
        .ok();
    api.post(&attrs("SHARED_SCOPE"), json!({"target": 22.5}))
        .await
        .ok();
    let shared = update_of(&mut ws, 2).await;
    let points = shared["data"]["target"].as_array().expect("target").clone();
    assert_eq!(points[0][1], "22.5");
    assert!(shared["data"].get("secret").is_none(), "{shared}");

    // History: the points of a window, ascending, values as strings.
    send(
        &mut ws,
        json!({"historyCmds": [{"cmdId": 3, "entityType": "DEVICE", "entityId": device, "keys": "temperature", "startTs": 0, "endTs": 5000, "limit": 10, "agg": "NONE"}]}),
    )
    .await;
    assert_eq!(
        update_of(&mut ws, 3).await["data"],
        json!({"temperature": [[1000, "20.5"], [2000, "21"]]})
    );

    // Unsubscribed: the next change of the device reaches only the other subscription.
    send(
        &mut ws,
        json!({"tsSubCmds": [{"cmdId": 1, "unsubscribe": true}]}),
    )
    .await;
    send(
        &mut ws,
        json!({"tsSubCmds": [{"cmdId": 4, "entityType": "DEVICE", "entityId": device, "keys": "other"}]}),
    )
    .await;
    update_of(&mut ws, 4).await;
    post_telemetry(
        &api,
        &device,
        json!({"ts": 3000, "values": {"temperature": 30, "other": 3}}),
    )
    .await;
    let after = next(&mut ws).await;
    assert_eq!(
        after["subscriptionId"], 4,
        "cmd 1 was unsubscribed: {after}"
    );
    assert_eq!(after["data"], json!({"other": [[3000, "3"]]}));

    // Bad commands answer errors and keep the connection.
    send(&mut ws, json!({"tsSubCmds": [{"cmdId": 5, "entityType": "DEVICE", "entityId": "6f1c2a4e-0000-4000-8000-000000000001"}]})).await;
    let missing = update_of(&mut ws, 5).await;
    assert_eq!(missing["errorCode"], 2, "{missing}");
    send(
        &mut ws,
        json!({"cmds": [{"type": "ENTITY_DATA", "cmdId": 6}]}),
    )
    .await;
    assert_eq!(update_of(&mut ws, 6).await["errorCode"], 2);
    ws.send(Message::Text("not json".into()))
        .await
        .expect("send");
    assert_eq!(update_of(&mut ws, 0).await["errorCode"], 2);
}

async fn auth_command_and_refusals(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (device, _) = api.create_device(json!({"name": "ws-2"})).await;
    post_telemetry(&api, &device, json!({"ts": 1000, "values": {"t": 1}})).await;
    let mut ws = connect(app, "/api/ws").await;
    let token = api.token.clone().expect("token");
    send(
        &mut ws,
        json!({"authCmd": {"cmdId": 0, "token": token},
               "cmds": [{"type": "TIMESERIES", "cmdId": 7, "entityType": "DEVICE", "entityId": device, "keys": ""}]}),
    )
    .await;
    assert_eq!(
        update_of(&mut ws, 7).await["data"],
        json!({"t": [[1000, "1"]]})
    );

    // A first message without authCmd, or with a bad token: closed with POLICY_VIOLATION.
    for first in [
        json!({"cmds": []}),
        json!({"authCmd": {"cmdId": 0, "token": "nope"}}),
    ] {
        let mut ws = connect(app, "/api/ws").await;
        send(&mut ws, first).await;
        let close = closed(&mut ws).await;
        assert_eq!(close.0, CloseCode::Policy, "{close:?}");
    }
    // The legacy endpoint refuses the handshake itself.
    let bad =
        tokio_tungstenite::connect_async(ws_url(app, "/api/ws/plugins/telemetry?token=nope")).await;
    assert!(bad.is_err(), "handshake refused");

    // A customer user reaches its own devices only.
    let (customer, user) = new_customer(app, &api, "WS Customer").await;
    let (own, _) = api.create_device(json!({"name": "ws-own"})).await;
    api.post(&format!("/api/customer/{customer}/device/{own}"), json!({}))
        .await
        .ok();
    let mut ws = legacy(app, &user).await;
    send(
        &mut ws,
        json!({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device},
                             {"cmdId": 2, "entityType": "DEVICE", "entityId": own}]}),
    )
    .await;
    let denied = update_of(&mut ws, 1).await;
    assert_eq!(denied["errorCode"], 3, "{denied}");
    assert_eq!(update_of(&mut ws, 2).await["errorCode"], 0);
}

/// The close frame (code, reason) once the server ends the connection.
async fn closed(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code, frame.reason.to_string());
            }
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

/// Deleted attributes and time series reach their subscribers as ThingsBoard sends them: each
/// key at ts 0 with an empty value; a latest value rewritten from an older point is that point.
async fn deletions_are_pushed(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (device, _) = api.create_device(json!({"name": "ws-del"})).await;
    post_telemetry(
        &api,
        &device,
        json!({"ts": 1000, "values": {"temperature": 20, "humidity": 50}}),
    )
    .await;
    post_telemetry(
        &api,
        &device,
        json!({"ts": 2000, "values": {"humidity": 60}}),
    )
    .await;
    let attrs = format!("{TELEMETRY}/{device}/attributes/SHARED_SCOPE");
    api.post(&attrs, json!({"target": 1, "mode": "eco"}))
        .await
        .ok();
    let mut ws = legacy(app, &api).await;
    send(
        &mut ws,
        json!({"attrSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device, "scope": "SHARED_SCOPE", "keys": "target"}],
               "tsSubCmds": [{"cmdId": 2, "entityType": "DEVICE", "entityId": device, "scope": "LATEST_TELEMETRY"}]}),
    )
    .await;
    // The two first answers, in either order.
    let mut first = [next(&mut ws).await, next(&mut ws).await].map(|v| v["subscriptionId"].clone());
    first.sort_by_key(|id| id.as_i64());
    assert_eq!(first, [json!(1), json!(2)]);

    api.delete(&format!(
        "{TELEMETRY}/{device}/SHARED_SCOPE?keys=target,mode"
    ))
    .await
    .ok();
    let deleted = update_of(&mut ws, 1).await;
    assert_eq!(deleted["errorCode"], 0, "{deleted}");
    assert_eq!(
        deleted["data"],
        json!({"target": [[0, ""]]}),
        "only the subscribed key"
    );

    api.delete(&format!(
        "{TELEMETRY}/{device}/timeseries/delete?keys=temperature&deleteAllDataForKeys=true"
    ))
    .await
    .ok();
    assert_eq!(
        update_of(&mut ws, 2).await["data"],
        json!({"temperature": [[0, ""]]})
    );
    api.delete(&format!(
        "{TELEMETRY}/{device}/timeseries/delete?keys=humidity&startTs=1500&endTs=2500&rewriteLatestIfDeleted=true"
    ))
    .await
    .ok();
    assert_eq!(
        update_of(&mut ws, 2).await["data"],
        json!({"humidity": [[1000, "50"]]}),
        "the latest value rewritten from the point left"
    );
}

/// A connection ends when the token it was opened with expires: 1008 "Token has expired".
async fn an_expired_token_ends_the_connection(app: &TestApp) {
    let api = Api::tenant(app).await;
    let token = api.token.clone().expect("token");
    let secret = app.app.as_ref().expect("running").state.jwt_secret.clone();
    // The session's token, re-signed to expire two seconds from now.
    let short_lived = || {
        let mut claims = crate::support::claims(&token);
        let exp = ferroboard::domain::now_ms() / 1000 + 2;
        claims["exp"] = json!(exp);
        let signed = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign");
        (signed, exp)
    };
    let (device, _) = api.create_device(json!({"name": "ws-exp"})).await;
    for legacy_endpoint in [true, false] {
        let (short, exp) = short_lived();
        let path = if legacy_endpoint {
            format!("/api/ws/plugins/telemetry?token={short}")
        } else {
            "/api/ws".to_owned()
        };
        let mut ws = connect(app, &path).await;
        let cmd = json!({"cmdId": 1, "entityType": "DEVICE", "entityId": device, "scope": "LATEST_TELEMETRY"});
        if !legacy_endpoint {
            let mut typed = cmd.clone();
            typed["type"] = json!("TIMESERIES");
            send(
                &mut ws,
                json!({"authCmd": {"cmdId": 0, "token": short}, "cmds": [typed]}),
            )
            .await;
        } else {
            send(&mut ws, json!({"tsSubCmds": [cmd]})).await;
        }
        assert_eq!(
            update_of(&mut ws, 1).await["errorCode"],
            0,
            "served until then"
        );
        let (code, reason) = closed(&mut ws).await;
        assert_eq!(
            (code, reason.as_str()),
            (CloseCode::Policy, "Token has expired")
        );
        assert!(
            ferroboard::domain::now_ms() >= exp * 1000,
            "not before the expiry"
        );
    }
}

crate::both_backends!(
    subscriptions,
    auth_command_and_refusals,
    deletions_are_pushed,
    an_expired_token_ends_the_connection
);

/// A client that stops reading while updates keep coming is closed with 1008 and a reason naming
/// `ws.queue`, instead of being buffered without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_closed() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.ws.queue = 2).await;
    let api = Api::tenant(&app).await;
    let (device, _) = api.create_device(json!({"name": "ws-slow"})).await;
    let mut ws = legacy(&app, &api).await;
    send(
        &mut ws,
        json!({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device}]}),
    )
    .await;
    update_of(&mut ws, 1).await;
    // Large values fill the socket buffers quickly; the client reads nothing meanwhile.
    let big = "x".repeat(48 * 1024);
    let mut closed_seen = false;
    for i in 0..600 {
        post_telemetry(&api, &device, json!({"ts": i + 1, "values": {"blob": big}})).await;
        if i % 50 == 49 && metric_of(&app, "ferroboard_ws_closed_slow_total").await >= 1.0 {
            closed_seen = true;
            break;
        }
    }
    assert!(closed_seen, "the slow client was closed");
    // The buffered updates, then the end: a close frame when it got through, else the socket ends.
    let end = loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the connection ends")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| (f.code, f.reason.to_string())),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break None,
        }
    };
    if let Some((code, reason)) = end {
        assert_eq!(code, CloseCode::Policy, "{reason}");
        assert!(reason.contains("ws.queue"), "{reason}");
    }
    app.shutdown().await;
}

async fn metric_of(app: &TestApp, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
