//! The HTTP listener: hyper HTTP/1.1 connections with a header-read deadline (a client that trickles
//! its headers is disconnected), a cap on open connections (the excess gets a 503 and is closed,
//! counted in `ferroboard_http_connections_refused_total`), and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use crate::observability::LogLimiter;

/// The listener's connection limits (`[http]` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl ConnLimits {
    pub fn from_config(http: &crate::config::HttpConfig) -> Self {
        Self {
            max_connections: http.max_connections,
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
        }
    }
}

/// What a connection over the cap reads before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: application/json\r\ncontent-length: 80\r\n\r\n\
{\"status\":503,\"message\":\"Too many open connections; retry later\",\"errorCode\":2}\n";

/// Serves `router` on `listener` until `stop`; then stops accepting, lets requests in progress
/// finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection watches `drain`; the tracker waits for them (hyper-util's GracefulShutdown
    // does not take connections that may be upgraded to WebSockets).
    let drain = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let refused_log = LogLimiter::per_second();
    let accept_log = LogLimiter::per_second();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    if let Some(suppressed) = accept_log.allow() {
                        tracing::warn!(error = %e, suppressed, "cannot accept an HTTP connection");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(&stream);
            metrics::counter!("ferroboard_http_connections_refused_total").increment(1);
            if let Some(suppressed) = refused_log.allow() {
                tracing::warn!(
                    limit = limits.max_connections,
                    suppressed,
                    "HTTP connection refused: http.max_connections open connections reached"
                );
            }
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().call(req.map(axum::body::Body::new))
        });
        // Upgrades: the WebSocket subscriptions (`/api/ws`) take the connection over.
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let drain = drain.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = drain.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    drain.cancel();
    tracker.close();
    tracker.wait().await;
}

/// Answers a connection over the cap with a 503 without waiting for it (a fresh socket's send
/// buffer is empty, so the write does not block), then closes it.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], 503);
    }
}
