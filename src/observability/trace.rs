//! Trace spans of the node: whether export is on, the head sampling of device messages (the
//! standard `OTEL_TRACES_SAMPLER`, overridden for devices switched to full tracing), the spans
//! every part opens (`message_span`, `http_span`, `child!`), and W3C `traceparent` text for
//! contexts that travel between nodes.
//!
//! When export is off nothing here allocates: `message_span`, `http_span` and `child!` answer a
//! disabled span.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanKind, TraceContextExt as _, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

/// The attribute of a span this node decided to sample itself (a device message picked by the
/// head sampler or a traced device): the exporter's sampler keeps it.
pub const SAMPLED_ATTR: &str = "ferroboard.sampled";

/// The span target of everything traced here; `FERROBOARD_OTEL_FILTER` selects by it.
pub const TARGET: &str = "ferroboard::trace";

static ENABLED: AtomicBool = AtomicBool::new(false);
static HEAD: OnceLock<Box<dyn ShouldSample>> = OnceLock::new();

/// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` set and the exporter started).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns span creation on; `head` is the sampler of traces that start here.
pub(super) fn enable(head: Box<dyn ShouldSample>) {
    let _ = HEAD.set(head);
    ENABLED.store(true, Ordering::Relaxed);
}

/// The exporter's sampler: spans marked `ferroboard.sampled` are kept, children follow their
/// parent, other roots (REST requests) ask the configured sampler.
#[derive(Clone, Debug)]
pub struct NodeSampler {
    pub configured: Box<dyn ShouldSample>,
}

impl ShouldSample for NodeSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let forced = attributes.iter().any(|kv| {
            kv.key.as_str() == SAMPLED_ATTR && kv.value == opentelemetry::Value::Bool(true)
        });
        let parent_span = parent
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let decision = match (&parent_span, forced) {
            (_, true) => SamplingDecision::RecordAndSample,
            (Some(sc), false) if sc.is_sampled() => SamplingDecision::RecordAndSample,
            (Some(_), false) => SamplingDecision::Drop,
            (None, false) => {
                return self
                    .configured
                    .should_sample(parent, trace_id, name, kind, attributes, links);
            }
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent_span
                .map_or_else(TraceState::default, |sc| sc.trace_state().clone()),
        }
    }
}

/// Devices switched to full tracing, with the end of their window. Process-wide (as the
/// exporter is); every node learns a switch over the bus.
static FORCED: Mutex<Option<HashMap<Uuid, Instant>>> = Mutex::new(None);
static FORCED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Devices traced at once, at most (older switches are not displaced: the new one is refused).
pub const MAX_TRACED_DEVICES: usize = 10_000;

/// Samples every message of `device` for `window` (zero: ends the switch). False when
/// `MAX_TRACED_DEVICES` are traced already.
pub fn trace_device(device: Uuid, window: Duration) -> bool {
    let mut guard = FORCED.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    map.retain(|_, until| *until > now);
    let ok = if window.is_zero() {
        map.remove(&device);
        true
    } else if map.len() < MAX_TRACED_DEVICES || map.contains_key(&device) {
        map.insert(device, now + window);
        true
    } else {
        false
    };
    FORCED_COUNT.store(map.len(), Ordering::Relaxed);
    ok
}

/// Whether `device` is switched to full tracing now.
pub fn device_traced(device: Uuid) -> bool {
    if FORCED_COUNT.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let guard = FORCED.lock().unwrap_or_else(PoisonError::into_inner);
    guard
        .as_ref()
        .and_then(|m| m.get(&device))
        .is_some_and(|until| *until > Instant::now())
}

/// The head decision for a message of `device`: traced device, or the configured sampler.
fn sample(device: Uuid) -> Option<bool> {
    if !enabled() {
        return None;
    }
    if device_traced(device) {
        return Some(true);
    }
    let head = HEAD.get()?;
    let id = TraceId::from_bytes(rand::random::<[u8; 16]>());
    let decision = head
        .should_sample(None, id, "mqtt.publish", &SpanKind::Server, &[], &[])
        .decision;
    (decision == SamplingDecision::RecordAndSample).then_some(false)
}

/// The root span of one device PUBLISH when it is sampled; a disabled span otherwise (nothing
/// allocated).
pub fn message_span(device: Uuid, topic: &str) -> Span {
    match sample(device) {
        None => Span::none(),
        Some(forced) => tracing::info_span!(
            target: TARGET,
            "mqtt.publish",
            otel.kind = "server",
            ferroboard.sampled = true,
            ferroboard.device_traced = forced,
            device.id = %device,
            mqtt.topic = topic,
        ),
    }
}

/// The span of one HTTP request when export is on (a W3C `traceparent` header of the caller
/// becomes its parent; log lines of the request carry its id); a disabled span otherwise (the
/// request id reaches its log lines without it: `api::observe`).
pub fn http_span(
    method: &str,
    route: &str,
    request_id: &str,
    headers: &axum::http::HeaderMap,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        request_id,
    );
    if let Some(parent) = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
    {
        let _ = span.set_parent(parent);
    }
    span
}

/// Marks the PUBACK of a traced PUBLISH: a span under the message's, named for the outcome.
pub fn puback(message: &Span, outcome: &'static str) {
    if message.is_none() {
        return;
    }
    let _ack =
        tracing::info_span!(target: TARGET, parent: message, "mqtt.puback", mqtt.outcome = outcome)
            .entered();
}

/// Whether the current span is one being traced (children are made only then).
#[inline]
pub fn in_trace() -> bool {
    enabled() && !Span::current().is_none()
}

/// A child span of the current one when a trace is being recorded; a disabled span otherwise.
#[macro_export]
macro_rules! trace_child {
    ($name:expr $(, $($fields:tt)*)?) => {
        if $crate::observability::trace::in_trace() {
            tracing::info_span!(target: "ferroboard::trace", $name $(, $($fields)*)?)
        } else {
            tracing::Span::none()
        }
    };
}

/// The current span when it is traced (to hand to work done elsewhere: the storage writer).
pub fn current_traced() -> Option<Span> {
    in_trace().then(Span::current)
}

/// The W3C `traceparent` of the current span, when a sampled trace is being recorded.
pub fn current_traceparent() -> Option<String> {
    if !in_trace() {
        return None;
    }
    let cx = Span::current().context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// A remote parent from a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn parse_traceparent(text: &str) -> Option<Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    sc.is_valid()
        .then(|| Context::new().with_remote_span_context(sc))
}

/// A span continuing the trace of `traceparent` (work a message from another node asked for),
/// made by `make`; disabled (and `make` not called) when export is off or there is no parent.
pub fn remote_child(traceparent: Option<&str>, make: impl FnOnce() -> Span) -> Span {
    let Some(parent) = traceparent
        .filter(|_| enabled())
        .and_then(parse_traceparent)
    else {
        return Span::none();
    };
    let span = make();
    let _ = span.set_parent(parent);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_only_when_well_formed() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(ok).expect("valid");
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_trace_switch_has_a_window_and_can_end() {
        let device = Uuid::new_v4();
        assert!(!device_traced(device));
        assert!(trace_device(device, Duration::from_secs(60)));
        assert!(device_traced(device));
        assert!(trace_device(device, Duration::ZERO));
        assert!(!device_traced(device));
    }

    #[test]
    fn nothing_is_sampled_while_export_is_off() {
        // Export is never enabled in unit tests.
        assert!(message_span(Uuid::new_v4(), "v1/devices/me/telemetry").is_none());
        assert!(current_traceparent().is_none());
    }
}
