//! The Prometheus series the node exports: every name with its type and help text in one table
//! (`SERIES`, registered with `describe_*` when the recorder is installed), the build-info gauge,
//! and the helpers the transports share (CONNACK codes, outbound message types).

use metrics::Unit;

/// The kind of a series, as its `# TYPE` line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every series of the node: name, kind, unit, help text. A series recorded anywhere in the
/// code must be listed here (a test reads the sources and checks it).
pub const SERIES: &[(&str, Kind, Option<Unit>, &str)] = &[
    // MQTT transport
    (
        "ferroboard_mqtt_sessions",
        Kind::Gauge,
        None,
        "Device sessions (MQTT and HTTP long polls) registered on this node.",
    ),
    (
        "ferroboard_mqtt_connects_total",
        Kind::Counter,
        None,
        "MQTT CONNECT attempts by protocol (3 = 3.1.1, 5) and the CONNACK code answered (0 = accepted).",
    ),
    (
        "ferroboard_mqtt_connect_refused_total",
        Kind::Counter,
        None,
        "MQTT CONNECTs refused, by reason.",
    ),
    (
        "ferroboard_mqtt_disconnects_total",
        Kind::Counter,
        None,
        "MQTT device sessions ended.",
    ),
    (
        "ferroboard_mqtt_publish_ack_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time from a device's QoS 1 PUBLISH being read to its PUBACK being handed to the connection (processing and storage commit included), by protocol.",
    ),
    (
        "ferroboard_mqtt_publishes_in_flight",
        Kind::Gauge,
        None,
        "Device PUBLISHes read and not yet acknowledged.",
    ),
    (
        "ferroboard_mqtt_outbound_dropped_total",
        Kind::Counter,
        None,
        "Server-to-device messages dropped because a session's outbound queue was full.",
    ),
    (
        "ferroboard_mqtt_auth_lookups_total",
        Kind::Counter,
        None,
        "Device credential lookups in the database, by kind.",
    ),
    (
        "ferroboard_mqtt_auth_cache_hits_total",
        Kind::Counter,
        None,
        "Device credential checks answered by the authentication cache, by kind.",
    ),
    (
        "ferroboard_rate_limited_total",
        Kind::Counter,
        None,
        "Device messages refused by a rate limit, by limit.",
    ),
    // Messages
    (
        "ferroboard_messages_in_total",
        Kind::Counter,
        None,
        "Messages from devices and REST entering the rule engine, by message type.",
    ),
    (
        "ferroboard_messages_out_total",
        Kind::Counter,
        None,
        "Messages published to devices over MQTT, by type.",
    ),
    // Rule engine
    (
        "ferroboard_rule_node_runs_total",
        Kind::Counter,
        None,
        "Rule node executions, by node id.",
    ),
    (
        "ferroboard_rule_node_failures_total",
        Kind::Counter,
        None,
        "Rule node executions that failed, by node id.",
    ),
    (
        "ferroboard_rule_node_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of one rule node execution (storage waits included), by node id.",
    ),
    (
        "ferroboard_rule_messages_dropped_total",
        Kind::Counter,
        None,
        "Messages (or copies) a chain dropped: no matching connection, an unconnected Failure, or past the hop limits.",
    ),
    // Storage
    (
        "ferroboard_storage_commit_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of one storage batch commit.",
    ),
    (
        "ferroboard_storage_batch_points",
        Kind::Histogram,
        None,
        "Data points per storage batch commit.",
    ),
    (
        "ferroboard_storage_batch_requests",
        Kind::Histogram,
        None,
        "Write requests per storage batch commit.",
    ),
    (
        "ferroboard_storage_commit_failures_total",
        Kind::Counter,
        None,
        "Storage batch commits that failed.",
    ),
    (
        "ferroboard_storage_refused_writes_total",
        Kind::Counter,
        None,
        "Writes refused by storage (e.g. a value over a limit).",
    ),
    (
        "ferroboard_ws_connections",
        Kind::Gauge,
        None,
        "Open WebSocket subscription connections on this node.",
    ),
    (
        "ferroboard_ws_updates_total",
        Kind::Counter,
        None,
        "Subscription updates sent to WebSocket clients.",
    ),
    (
        "ferroboard_ws_closed_slow_total",
        Kind::Counter,
        None,
        "WebSocket clients closed because more than ws.queue updates waited for them.",
    ),
    (
        "ferroboard_ws_updates_dropped_total",
        Kind::Counter,
        None,
        "Committed changes of watched entities not passed to other nodes, by reason (publish_queue: the bus publish queue was full).",
    ),
    (
        "ferroboard_telemetry_rows_expired_total",
        Kind::Counter,
        None,
        "Time-series points deleted because their TTL had passed.",
    ),
    (
        "ferroboard_gateway_latency_ms",
        Kind::Histogram,
        None,
        "Age of gateway telemetry when it reached the server (ms), from the connector's receive (stage=received) and publish (stage=published) timestamps the IoT Gateway reports.",
    ),
    // Bus
    (
        "ferroboard_bus_up",
        Kind::Gauge,
        None,
        "1 when the Redis bus answers, 0 when it does not.",
    ),
    (
        "ferroboard_bus_published_total",
        Kind::Counter,
        None,
        "Events published on the Redis bus.",
    ),
    (
        "ferroboard_bus_publish_failures_total",
        Kind::Counter,
        None,
        "Events that could not be published on the Redis bus.",
    ),
    (
        "ferroboard_bus_received_total",
        Kind::Counter,
        None,
        "Events received from the Redis bus.",
    ),
    (
        "ferroboard_bus_undecodable_total",
        Kind::Counter,
        None,
        "Events received from the Redis bus that could not be decoded.",
    ),
    (
        "ferroboard_bus_events_total",
        Kind::Counter,
        None,
        "Bus events handled by this node, by kind.",
    ),
    (
        "ferroboard_device_state_events_dropped_total",
        Kind::Counter,
        None,
        "Device activity events dropped because the device-state queue was full.",
    ),
    // HTTP
    (
        "ferroboard_http_requests_total",
        Kind::Counter,
        None,
        "HTTP requests answered, by method, route template and status.",
    ),
    (
        "ferroboard_http_request_duration_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of HTTP requests, by method and route template.",
    ),
    (
        "ferroboard_http_connections_refused_total",
        Kind::Counter,
        None,
        "HTTP connections refused because http.max_connections were open.",
    ),
    (
        "ferroboard_http_polls",
        Kind::Gauge,
        None,
        "Open long polls of the HTTP device API.",
    ),
    (
        "ferroboard_http_polls_refused_total",
        Kind::Counter,
        None,
        "Long polls of the HTTP device API refused because http_device.max_polls were open.",
    ),
    // Accounts and logs
    (
        "ferroboard_logins_refused_total",
        Kind::Counter,
        None,
        "REST logins refused, by reason.",
    ),
    (
        "ferroboard_refused_input_logs_suppressed_total",
        Kind::Counter,
        None,
        "Log lines about refused input suppressed by the log rate limit.",
    ),
    (
        "ferroboard_build_info",
        Kind::Gauge,
        None,
        "Always 1; the labels name the running version.",
    ),
];

/// Registers the help text of every series and sets the build-info gauge. Call once the global
/// recorder is installed.
pub fn describe() {
    for &(name, kind, unit, help) in SERIES {
        match (kind, unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(name, u, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(name, u, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
    metrics::gauge!("ferroboard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Counts one MQTT CONNECT attempt by the CONNACK code answered (`protocol` is "3" or "5").
pub fn connack(protocol: &'static str, code: u8) {
    metrics::counter!("ferroboard_mqtt_connects_total", "protocol" => protocol, "code" => code_label(code))
        .increment(1);
}

/// The label of a CONNACK code without allocating (the codes MQTT defines; others are "other").
fn code_label(code: u8) -> &'static str {
    CODE_LABELS[usize::from(code)]
}

/// `"0"` to `"255"`.
const CODE_LABELS: [&str; 256] = {
    let mut out = [""; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = match i {
            0 => "0",
            1 => "1",
            2 => "2",
            3 => "3",
            4 => "4",
            5 => "5",
            0x80 => "128",
            0x81 => "129",
            0x82 => "130",
            0x83 => "131",
            0x84 => "132",
            0x85 => "133",
            0x86 => "134",
            0x87 => "135",
            0x88 => "136",
            0x89 => "137",
            0x8A => "138",
            0x8C => "140",
            0x90 => "144",
            0x95 => "149",
            0x97 => "151",
            0x9F => "159",
            _ => "other",
        };
        i += 1;
    }
    out
};

/// Records the PUBLISH → PUBACK latency of one QoS 1 message (`protocol` is "3" or "5").
pub fn publish_acked(protocol: &'static str, started: std::time::Instant) {
    metrics::histogram!("ferroboard_mqtt_publish_ack_seconds", "protocol" => protocol)
        .record(started.elapsed().as_secs_f64());
}

/// The type label of a message published to a device, from its topic.
pub fn out_type(topic: &str) -> &'static str {
    if topic.starts_with("v1/devices/me/rpc/request/") || topic.starts_with("v2/r/req/") {
        "rpc_request"
    } else if topic.starts_with("v1/devices/me/rpc/response/") || topic.starts_with("v2/r/res/") {
        "rpc_response"
    } else if topic.starts_with("v1/devices/me/attributes/response/")
        || topic.starts_with("v2/a/res/")
    {
        "attributes_response"
    } else if topic == "v1/devices/me/attributes" || topic.starts_with("v2/a") {
        "attributes_update"
    } else if topic.starts_with("/provision") {
        "provision_response"
    } else if topic.starts_with("v2/fw/") || topic.starts_with("v2/sw/") {
        "ota"
    } else if topic == "v1/gateway/rpc" {
        "gateway_rpc"
    } else if topic == "v1/gateway/attributes/response" {
        "gateway_attributes_response"
    } else if topic == "v1/gateway/attributes" {
        "gateway_attributes_update"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connack_codes_have_their_decimal_label() {
        assert_eq!(code_label(0), "0");
        assert_eq!(code_label(5), "5");
        assert_eq!(code_label(0x87), "135");
        assert_eq!(code_label(0x89), "137");
        assert_eq!(code_label(0x99), "other");
    }

    #[test]
    fn outbound_topics_are_typed() {
        assert_eq!(out_type("v1/devices/me/rpc/request/3"), "rpc_request");
        assert_eq!(out_type("v2/r/res/3"), "rpc_response");
        assert_eq!(out_type("v1/devices/me/attributes"), "attributes_update");
        assert_eq!(out_type("v1/gateway/rpc"), "gateway_rpc");
        assert_eq!(
            out_type("v1/gateway/attributes"),
            "gateway_attributes_update"
        );
        assert_eq!(out_type("v2/a/res/4"), "attributes_response");
        assert_eq!(out_type("/provision/response"), "provision_response");
        assert_eq!(out_type("v2/fw/response/1/chunk/0"), "ota");
    }

    #[test]
    fn every_series_is_listed_once() {
        let mut names: Vec<_> = SERIES.iter().map(|s| s.0).collect();
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len, "a series listed twice");
    }
}
