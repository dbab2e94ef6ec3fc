//! What every HTTP request leaves behind: a request id (a valid incoming `x-request-id` is kept,
//! otherwise one is made; both are returned in the response header), a span when trace export is
//! on (the parent of the request's work; a W3C `traceparent` header continues the caller's trace),
//! one access-log line (target `ferroboard::access`) and the request metrics by route template.
//! With export off the request has no span: its id is held for its log lines (`request_id`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header::HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The header carrying the request id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id kept.
const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    /// The id of the request being answered, while no span carries it (trace export off).
    static UNTRACED_ID: HeaderValue;
}

/// The id of the REST request being answered, for a log line, when no span carries it already
/// (trace export off); None outside a request or when its span does.
pub fn request_id() -> Option<String> {
    UNTRACED_ID
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(req.method());
    let id =
        incoming_id(req.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let header = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(REQUEST_ID, header.clone());
    let span = crate::observability::trace::http_span(method, &route, &id, req.headers());
    let run = next.run(req);
    let mut response = if span.is_none() {
        UNTRACED_ID.scope(header.clone(), run).await
    } else {
        run.instrument(span.clone()).await
    };
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let elapsed = started.elapsed();
    response.headers_mut().insert(REQUEST_ID, header);
    tracing::info!(
        target: "ferroboard::access",
        method,
        route = %route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %id,
        "HTTP request"
    );
    metrics::counter!(
        "ferroboard_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        "ferroboard_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(elapsed.as_secs_f64());
    response
}

/// An incoming id when it is 1 to 128 characters of letters, digits and `-_.:`.
fn incoming_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID)?.to_str().ok()?;
    let valid = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    valid.then(|| value.to_owned())
}

/// The method as a bounded label: extension methods are "OTHER".
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_ids_are_kept_only_when_valid() {
        let mut h = HeaderMap::new();
        assert_eq!(incoming_id(&h), None);
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(incoming_id(&h).as_deref(), Some("abc-123_x.y:z"));
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(incoming_id(&h), None);
        h.insert(REQUEST_ID, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(incoming_id(&h), None);
        h.insert(REQUEST_ID, HeaderValue::from_static(""));
        assert_eq!(incoming_id(&h), None);
    }

    #[tokio::test]
    async fn without_a_span_the_request_id_is_held_for_log_lines() {
        // Trace export is never on in unit tests: the request has no span.
        let span = crate::observability::trace::http_span("GET", "/x", "id-1", &HeaderMap::new());
        assert!(span.is_none(), "no span is made with export off");
        assert_eq!(request_id(), None, "outside a request");
        let inside = UNTRACED_ID.scope(HeaderValue::from_static("id-1"), async { request_id() });
        assert_eq!(inside.await.as_deref(), Some("id-1"));
    }

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"FOO").unwrap()), "OTHER");
    }
}
