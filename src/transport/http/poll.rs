//! Long polls: a request waiting for one downlink is a session of its device in the registry
//! (beside the device's MQTT session, which it never takes over) for as long as it waits. The
//! node-wide cap `http_device.max_polls`, the timeout ThingsBoard uses (default, and at most
//! the configured maximum), and the cleanup when the request ends in any way — answered, timed
//! out, or dropped because the client went away — live here.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::device::HttpDevice;
use crate::api::error::{ApiError, Params, code, error_json};
use crate::bus::registry::CloseSignal;
use crate::bus::{CloseReason, Downlink, PollKind, SessionCmd};
use crate::observability::LogLimiter;
use crate::services::rpc::Undelivered;

/// The node's long-poll slots (`http_device.max_polls`).
pub struct Polls {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Polls {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Long polls open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    fn take(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        static FULL_LOG: LogLimiter = LogLimiter::new(1000, 1);
        self.slots.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("ferroboard_http_polls_refused_total").increment(1);
            if let Some(suppressed) = FULL_LOG.allow() {
                tracing::warn!(
                    limit = self.max,
                    suppressed,
                    "HTTP long poll refused: http_device.max_polls long polls are open"
                );
            }
            ApiError::TooManyRequests(
                format!(
                    "Too many long polls open on this server (http_device.max_polls = {}); retry later",
                    self.max
                ),
                1,
            )
        })
    }
}

/// The timeout a long poll asked for in `timeout` (ms): absent or 0 is the default
/// (`http_device.poll_timeout_ms`), as in ThingsBoard; above `http_device.max_poll_timeout_ms`
/// it is cut to that; negative or not a number is 400.
pub fn requested_timeout(
    config: &crate::config::HttpDeviceConfig,
    params: &Params,
) -> Result<Duration, ApiError> {
    let ms = match params.int("timeout")? {
        None | Some(0) => config.poll_timeout_ms,
        Some(ms) if ms < 0 => {
            return Err(ApiError::BadRequest(format!(
                "timeout must not be negative: {ms}"
            )));
        }
        Some(ms) => u64::try_from(ms)
            .unwrap_or(u64::MAX)
            .min(config.max_poll_timeout_ms),
    };
    Ok(Duration::from_millis(ms))
}

/// What ended one wait of a poll.
pub enum Next {
    Cmd(SessionCmd),
    /// The server closes the device's sessions (shutdown, credentials changed, device deleted).
    Closed(CloseReason),
    TimedOut,
}

/// One long poll, registered as a session of its device until dropped.
pub struct Poll {
    pub device: HttpDevice,
    pub session: u64,
    rx: mpsc::Receiver<SessionCmd>,
    close: CloseSignal,
    deadline: Instant,
    _slot: OwnedSemaphorePermit,
}

impl Poll {
    /// Registers the poll for `timeout`; refused when the node's or the device's polls are at
    /// their bound, or when the device's credentials changed since its token was checked.
    pub fn open(device: HttpDevice, kind: PollKind, timeout: Duration) -> Result<Self, ApiError> {
        let state = device.state.clone();
        if state.shutdown.is_cancelled() {
            return Err(closed(CloseReason::ServerShutdown));
        }
        let slot = state.http_polls.take()?;
        // One command: a poll ends with the first thing it gets.
        let (tx, rx) = mpsc::channel(1);
        let (session, close) = state
            .sessions
            .register_poll(device.device.id, kind, tx)
            .map_err(|e| {
                static DEVICE_FULL_LOG: LogLimiter = LogLimiter::new(1000, 1);
                if let Some(suppressed) = DEVICE_FULL_LOG.allow() {
                    tracing::warn!(device = %device.device.id, suppressed, "HTTP long poll refused: {e}");
                }
                ApiError::TooManyRequests(e.to_string(), 1)
            })?;
        let poll = Self {
            session,
            rx,
            close,
            deadline: Instant::now() + timeout,
            _slot: slot,
            device,
        };
        metrics::gauge!("ferroboard_http_polls").set(state.http_polls.open() as f64);
        if state
            .sessions
            .revoked_since(poll.device.device.id, poll.device.authenticated_at)
        {
            return Err(closed(CloseReason::Administrative));
        }
        Ok(poll)
    }

    /// Waits for the next command, the close signal or the deadline (looked at in this order).
    pub async fn next(&mut self) -> Next {
        tokio::select! {
            biased;
            reason = self.close.wait_for(Option::is_some) => match reason.ok().and_then(|r| *r) {
                Some(reason) => Next::Closed(reason),
                // The registry forgot the poll: only at shutdown.
                None => Next::Closed(CloseReason::ServerShutdown),
            },
            cmd = self.rx.recv() => match cmd {
                Some(cmd) => Next::Cmd(cmd),
                None => Next::Closed(CloseReason::ServerShutdown),
            },
            () = tokio::time::sleep_until(self.deadline) => Next::TimedOut,
        }
    }

    /// The answer when the poll ends without a downlink.
    pub fn ended(&self, next: &Next) -> Response {
        match next {
            Next::Closed(reason) => closed(*reason).into_response(),
            Next::TimedOut | Next::Cmd(_) => timed_out(),
        }
    }
}

impl Drop for Poll {
    /// Leaves the registry; a server-side RPC handed to the poll and not answered (the client
    /// went away, or the poll ended meanwhile) was never delivered: it is reported so, and a
    /// persistent one goes back to QUEUED for the device's next session or poll.
    fn drop(&mut self) {
        let state = &self.device.state;
        state
            .sessions
            .unregister(self.device.device.id, self.session);
        let mut undelivered = Vec::new();
        while let Ok(cmd) = self.rx.try_recv() {
            if let SessionCmd::Deliver(downlink) = cmd
                && let Downlink::Rpc(req) = *downlink
            {
                undelivered.push(req);
            }
        }
        if !undelivered.is_empty() {
            let services = state.services.clone();
            state.rt.spawn(async move {
                for req in undelivered {
                    services.rpc.undelivered(&req, Undelivered::NotSent).await;
                }
            });
        }
        // The slot is released after this (a field); the gauge may lag by this poll.
        metrics::gauge!("ferroboard_http_polls")
            .set(state.http_polls.open().saturating_sub(1) as f64);
    }
}

/// 408: nothing arrived within the poll's timeout (the status ThingsBoard answers).
fn timed_out() -> Response {
    let status = StatusCode::REQUEST_TIMEOUT;
    let body = error_json(
        status,
        "Nothing arrived within the long poll's timeout",
        code::GENERAL,
    );
    (status, axum::Json(body)).into_response()
}

/// The poll was ended by the server.
fn closed(reason: CloseReason) -> ApiError {
    match reason {
        CloseReason::Administrative => ApiError::Text(
            StatusCode::FORBIDDEN,
            "Device was deleted or its credentials changed".to_owned(),
        ),
        CloseReason::ServerShutdown | CloseReason::TakenOver => ApiError::Text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server is shutting down; retry later".to_owned(),
        ),
        CloseReason::ProfileChanged => ApiError::Text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The device's profile changed; retry".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
        )
    }

    #[test]
    fn timeouts_default_and_are_bounded() {
        let config = crate::config::HttpDeviceConfig::default();
        let ms = |q: &str| requested_timeout(&config, &params(q)).map(|d| d.as_millis());
        assert_eq!(ms("").unwrap(), 60_000);
        assert_eq!(ms("timeout=0").unwrap(), 60_000);
        assert_eq!(ms("timeout=1500").unwrap(), 1500);
        assert_eq!(ms("timeout=99999999999").unwrap(), 300_000);
        assert!(ms("timeout=-1").is_err());
        assert!(ms("timeout=soon").is_err());
    }

    #[test]
    fn polls_are_capped() {
        let polls = Polls::new(2);
        let a = polls.take().unwrap();
        let _b = polls.take().unwrap();
        assert_eq!(polls.open(), 2);
        assert!(matches!(polls.take(), Err(ApiError::TooManyRequests(..))));
        drop(a);
        assert!(polls.take().is_ok());
    }
}
