//! What operators see: Prometheus series with HELP and TYPE and latency histograms that move, the
//! separate metrics listener, request ids and the JSON access log, and OTLP traces — one device
//! message's span tree (with the per-device trace switch overriding the sampler) and one
//! server-side RPC traced across two nodes.

mod common;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "observability/otlp.rs"]
mod otlp;

use std::path::Path;

use common::{Backend, eventually};
use harness::{Cluster, Device, Rest, WAIT};
use rumqttc::QoS;
use serde_json::{Value, json};

/// Every `ferroboard_*` name recorded with a `metrics` macro anywhere in `src/`.
fn recorded_series() -> Vec<String> {
    fn walk(dir: &Path, re: &regex::Regex, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, re, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                out.extend(re.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
    }
    let re = regex::Regex::new(r#"(?:counter|gauge|histogram)!\(\s*"(ferroboard_[a-z0-9_]+)""#)
        .expect("regex");
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &re,
        &mut out,
    );
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_recorded_series_is_described() {
    let described: Vec<&str> = ferroboard::observability::metrics::SERIES
        .iter()
        .map(|s| s.0)
        .collect();
    let recorded = recorded_series();
    assert!(
        recorded.len() > 20,
        "the scan finds the series: {recorded:?}"
    );
    let missing: Vec<&String> = recorded
        .iter()
        .filter(|name| !described.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "series recorded without HELP text (add them to observability::metrics::SERIES): {missing:?}"
    );
}

/// The value of the sample of `name` whose labels include all of `labels`; 0 when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The series names of an exposition whose samples have no `# HELP` or no `# TYPE` line.
fn undescribed(text: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line
            .split(['{', ' '])
            .next()
            .unwrap_or_default()
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        let help = text.contains(&format!("# HELP {name} "));
        let kind = text.contains(&format!("# TYPE {name} "));
        let described = help && kind;
        if !described && !missing.iter().any(|m| m == name) {
            missing.push(name.to_owned());
        }
    }
    missing
}

async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

async fn metrics_have_help_and_type_and_the_histograms_move(backend: Backend) {
    let app = common::spawn_app(backend).await;
    let before = scrape(&app.http).await;
    let rest = Rest::login_at(&app.http).await;
    let (_id, token) = rest.device().await;
    let mut dev = Device::try_connect(app.mqtt_port, &token)
        .await
        .expect("device connects");
    dev.telemetry(json!({"temperature": 21.5})).await;
    dev.subscribe("v1/devices/me/attributes/response/+").await;
    dev.publish(
        "v1/devices/me/attributes/request/1",
        QoS::AtLeastOnce,
        json!({}),
    )
    .await;
    dev.publish_on("v1/devices/me/attributes/response/1", WAIT)
        .await
        .expect("attribute response");
    let refused = Device::try_connect(app.mqtt_port, "no-such-token").await;
    assert!(refused.is_err(), "a wrong token is refused");

    let after = eventually("the histograms moved", WAIT, || {
        let http = app.http.clone();
        let before = before.clone();
        async move {
            let after = scrape(&http).await;
            let moved = |name: &str, labels: &[(&str, &str)]| {
                sample(&after, name, labels) > sample(&before, name, labels)
            };
            (moved(
                "ferroboard_mqtt_publish_ack_seconds_count",
                &[("protocol", "3")],
            ) && moved(
                "ferroboard_http_request_duration_seconds_count",
                &[("method", "POST"), ("route", "/api/auth/login")],
            ) && moved("ferroboard_storage_commit_seconds_count", &[])
                && moved(
                    "ferroboard_rule_node_seconds_count",
                    &[("node", "save_timeseries")],
                )
                && moved(
                    "ferroboard_mqtt_connects_total",
                    &[("protocol", "3"), ("code", "0")],
                )
                && moved(
                    "ferroboard_mqtt_connects_total",
                    &[("protocol", "3"), ("code", "5")],
                )
                && moved(
                    "ferroboard_messages_out_total",
                    &[("type", "attributes_response")],
                ))
            .then_some(after)
        }
    })
    .await;
    let missing = undescribed(&after);
    assert!(
        missing.is_empty(),
        "series without HELP or TYPE: {missing:?}"
    );
    assert!(
        after.contains("# TYPE ferroboard_mqtt_publish_ack_seconds histogram"),
        "PUBLISH → PUBACK latency is a histogram"
    );
    assert_eq!(
        sample(
            &after,
            "ferroboard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(after.contains("ferroboard_mqtt_sessions"), "sessions gauge");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_help_and_type_and_the_histograms_move_sqlite() {
    metrics_have_help_and_type_and_the_histograms_move(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_help_and_type_and_the_histograms_move_postgres() {
    metrics_have_help_and_type_and_the_histograms_move(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_metrics_listener_takes_metrics_off_the_http_port() {
    let app = common::spawn_app_with(Backend::Sqlite, |c| {
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    let addr = app
        .app
        .as_ref()
        .and_then(|a| a.metrics_addr)
        .expect("the metrics listener's address");
    let text = scrape(&format!("http://{addr}")).await;
    assert!(
        text.contains("# TYPE ferroboard_build_info gauge"),
        "{text}"
    );
    let public = reqwest::get(format!("{}/metrics", app.http))
        .await
        .expect("request");
    assert_eq!(
        public.status(),
        404,
        "the HTTP port no longer serves /metrics"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_an_id_and_leave_one_json_access_line() {
    let env = vec![("FERROBOARD_LOG_FORMAT".to_owned(), "json".to_owned())];
    let cluster = Cluster::launch_with_env(Backend::Sqlite, None, false, &["a"], env).await;
    let node = cluster.a();
    let client = reqwest::Client::new();
    let get = |id: Option<&'static str>| {
        let mut req = client.get(format!("{}/api/health", node.http));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        async move {
            let resp = req.send().await.expect("health");
            resp.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .expect("x-request-id in the answer")
        }
    };
    assert_eq!(
        get(Some("probe-42.a:b_c")).await,
        "probe-42.a:b_c",
        "a valid id is kept"
    );
    let made = get(None).await;
    assert_eq!(made.len(), 32, "a made id: {made}");
    let replaced = get(Some("no spaces allowed")).await;
    assert_ne!(replaced, "no spaces allowed", "an invalid id is replaced");

    let line = eventually("the access line of the request", WAIT, || async {
        node.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["target"] == "ferroboard::access" && v["request_id"] == "probe-42.a:b_c")
    })
    .await;
    assert_eq!(line["route"], "/api/health", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    assert!(
        line["timestamp"].is_string() && line["level"] == "INFO",
        "{line}"
    );
    let log = node.log_text();
    let not_json: Vec<&str> = log
        .lines()
        .filter(|l| !l.trim().is_empty() && serde_json::from_str::<Value>(l).is_err())
        .collect();
    assert!(not_json.is_empty(), "every log line is JSON: {not_json:?}");
    assert!(
        log.contains(&format!("\"request_id\":\"{made}\"")),
        "the made id is logged as returned"
    );
}

/// Node variables that export spans to `endpoint` quickly.
fn otel_env(endpoint: &str, sampler: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            endpoint.to_owned(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
        // Export does not follow the log filter.
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ];
    if let Some(s) = sampler {
        env.push(("OTEL_TRACES_SAMPLER".to_owned(), s.to_owned()));
    }
    env
}

const SHOW: &[&str] = &[
    "device.id",
    "rule.node",
    "batch.points",
    "mqtt.outcome",
    "http.route",
    "ferroboard.device_traced",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_span_tree_and_the_device_trace_switch() {
    let (endpoint, received) = otlp::start().await;
    // The sampler keeps nothing: only the switched device is traced.
    let env = otel_env(&endpoint, Some("always_off"));
    let cluster = Cluster::launch_with_env(Backend::Sqlite, None, false, &["a"], env).await;
    let rest = Rest::login(cluster.a()).await;
    let (quiet, quiet_token) = rest.device().await;
    let (traced, traced_token) = rest.device().await;

    let mut dev = Device::connect(cluster.a(), &quiet_token).await;
    dev.telemetry(json!({"t": 1})).await;
    let (status, body) = rest
        .post(&format!("/api/device/{traced}/trace?minutes=5"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exporting"], true, "{body}");
    assert!(body["tracedUntil"].as_i64().unwrap_or(0) > 0, "{body}");
    let (status, _) = rest
        .post(
            &format!("/api/device/{traced}/trace?minutes=99999"),
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "a window over a day is refused");
    let mut dev = Device::connect(cluster.a(), &traced_token).await;
    dev.telemetry(json!({"temperature": 21.5})).await;

    let (spans, root) = eventually("the traced message's spans", WAIT, || async {
        let spans = received.spans();
        let root = spans
            .iter()
            .find(|s| s.name == "mqtt.publish" && s.attr("device.id") == Some(traced.as_str()))?
            .clone();
        let of_trace = spans.iter().filter(|s| s.trace_id == root.trace_id);
        (of_trace.clone().any(|s| s.name == "storage.commit")
            && of_trace.clone().any(|s| s.name == "mqtt.puback"))
        .then_some((spans, root))
    })
    .await;
    eprintln!("{}", otlp::tree(&spans, &root.trace_id, SHOW));
    assert!(root.parent.is_empty(), "the PUBLISH starts its trace");
    assert_eq!(root.node, "a", "the node id is in the resource");
    assert_eq!(root.attr("ferroboard.device_traced"), Some("true"));
    let children: Vec<&otlp::Span> = spans.iter().filter(|s| s.parent == root.span_id).collect();
    let nodes: Vec<&str> = children
        .iter()
        .filter_map(|s| s.attr("rule.node"))
        .collect();
    assert_eq!(
        nodes,
        ["message_type_switch", "save_timeseries"],
        "each rule node"
    );
    let save = children
        .iter()
        .find(|s| s.attr("rule.node") == Some("save_timeseries"))
        .expect("save node span");
    let commit = spans
        .iter()
        .find(|s| s.name == "storage.commit" && s.trace_id == root.trace_id)
        .expect("commit span");
    assert_eq!(
        commit.parent, save.span_id,
        "the commit under the save node"
    );
    let ack = children
        .iter()
        .find(|s| s.name == "mqtt.puback")
        .expect("PUBACK span under the message");
    assert_eq!(ack.attr("mqtt.outcome"), Some("accepted"));
    assert!(
        !spans
            .iter()
            .any(|s| s.attr("device.id") == Some(quiet.as_str())),
        "the sampler's choice holds for other devices"
    );
    assert!(
        !spans.iter().any(|s| s.attr("http.route").is_some()),
        "REST requests follow the sampler (always_off)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_rpc_is_one_trace_across_two_nodes() {
    let (endpoint, received) = otlp::start().await;
    let env = otel_env(&endpoint, None);
    let cluster = Cluster::launch_with_env(Backend::Postgres, None, true, &["a", "b"], env).await;
    let rest_a = Rest::login(cluster.a()).await;
    let (id, token) = rest_a.device().await;
    let mut dev = Device::connect(cluster.b(), &token).await;
    dev.subscribe("v1/devices/me/rpc/request/+").await;

    let path = format!("/api/plugins/rpc/twoway/{id}");
    let call = rest_a.post(&path, json!({"method": "m", "params": {}, "timeout": 5000}));
    let device_side = async {
        let (topic, _) = dev
            .publish_on("v1/devices/me/rpc/request/", WAIT)
            .await
            .expect("the request reaches the device on B");
        let request_id = topic.rsplit('/').next().expect("request id").to_owned();
        dev.publish(
            &format!("v1/devices/me/rpc/response/{request_id}"),
            QoS::AtLeastOnce,
            json!({"ok": true}),
        )
        .await;
    };
    let ((status, body), ()) = tokio::join!(call, device_side);
    assert_eq!(status, 200, "{body}");

    let find = |spans: &[otlp::Span], name: &str, node: &str, trace: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.node == node && s.trace_id == trace)
            .cloned()
    };
    let (spans, http) = eventually("the RPC's spans from both nodes", WAIT, || async {
        let spans = received.spans();
        let http = spans
            .iter()
            .find(|s| {
                s.node == "a" && s.attr("http.route") == Some("/api/plugins/rpc/{kind}/{device}")
            })?
            .clone();
        let t = http.trace_id.as_str();
        (find(&spans, "bus.rpc.deliver", "b", t).is_some()
            && find(&spans, "mqtt.rpc.publish", "b", t).is_some()
            && find(&spans, "rpc.device.reply", "b", t).is_some())
        .then_some((spans, http))
    })
    .await;
    eprintln!("{}", otlp::tree(&spans, &http.trace_id, SHOW));
    let t = http.trace_id.as_str();
    let deliver = find(&spans, "bus.rpc.deliver", "b", t).expect("deliver");
    let publish = find(&spans, "mqtt.rpc.publish", "b", t).expect("publish");
    let reply = find(&spans, "rpc.device.reply", "b", t).expect("reply");
    assert!(http.parent.is_empty(), "the REST request starts the trace");
    let node = spans
        .iter()
        .find(|s| s.trace_id == t && s.attr("rule.node") == Some("rpc_call_request"))
        .expect("the rule node that sends the request");
    assert_eq!(
        (node.node.as_str(), node.parent.as_str()),
        ("a", http.span_id.as_str())
    );
    assert_eq!(
        deliver.parent, node.span_id,
        "REST on A → the rules → the bus → B"
    );
    assert_eq!(publish.parent, deliver.span_id, "B publishes to the device");
    assert_eq!(reply.parent, publish.span_id, "the device's answer");
}
