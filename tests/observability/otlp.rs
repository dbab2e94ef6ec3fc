//! A small OTLP/HTTP receiver for the trace tests: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, kept as flat span records, and a printer of span trees.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message as _;

/// One received span.
#[derive(Clone, Debug)]
pub struct Span {
    /// The exporting node (`ferroboard.node` of the resource).
    pub node: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root.
    pub parent: String,
    pub attrs: BTreeMap<String, String>,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Span>>>);

impl Received {
    pub fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().clone()
    }
}

/// Listens on a free port; returns the endpoint URL (for `OTEL_EXPORTER_OTLP_ENDPOINT`).
pub async fn start() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the OTLP receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), received)
}

async fn export(State(received): State<Received>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut out = received.0.lock().unwrap();
    for rs in request.resource_spans {
        let node = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "ferroboard.node"))
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    node: node.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    attrs: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                kv.value.as_ref().map(text).unwrap_or_default(),
                            )
                        })
                        .collect(),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                });
            }
        }
    }
    StatusCode::OK
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The spans of `trace_id` as an indented tree (children by start time), with node, duration
/// and the attributes in `show`.
pub fn tree(spans: &[Span], trace_id: &str, show: &[&str]) -> String {
    let of_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let ids: std::collections::HashSet<&str> =
        of_trace.iter().map(|s| s.span_id.as_str()).collect();
    let mut roots: Vec<&Span> = of_trace
        .iter()
        .copied()
        .filter(|s| s.parent.is_empty() || !ids.contains(s.parent.as_str()))
        .collect();
    roots.sort_by_key(|s| s.start_ns);
    let mut out = format!("trace {trace_id}\n");
    for root in roots {
        write_span(&of_trace, root, 0, show, &mut out);
    }
    out
}

fn write_span(spans: &[&Span], span: &Span, depth: usize, show: &[&str], out: &mut String) {
    let us = span.end_ns.saturating_sub(span.start_ns) / 1000;
    let attrs: Vec<String> = show
        .iter()
        .filter_map(|k| span.attr(k).map(|v| format!("{k}={v}")))
        .collect();
    out.push_str(&format!(
        "{}{} [node {}] {us} µs {}\n",
        "  ".repeat(depth),
        span.name,
        span.node,
        attrs.join(" ")
    ));
    let mut children: Vec<&&Span> = spans.iter().filter(|s| s.parent == span.span_id).collect();
    children.sort_by_key(|s| s.start_ns);
    for child in children {
        write_span(spans, child, depth + 1, show, out);
    }
}
