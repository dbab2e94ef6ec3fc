//! Admission to the MQTT listener: the cap on sessions (`mqtt.max_connections`), counted before
//! any credential lookup, and the accounting of refused CONNECTs — a metric by reason
//! (`ferroboard_mqtt_connect_refused_total{reason}`) and a log line at a bounded rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::observability::LogLimiter;

/// Counts the connections between CONNECT and the end of their session.
pub struct Gate {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One admitted connection; leaving frees its place.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A place for one more connection, unless `max` are open.
    pub fn enter(&self) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.open.clone()))
    }
}

/// Why a CONNECT was refused (the metric's `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    ConnectionLimit,
    NoCredentials,
    NotAuthorized,
    Unavailable,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection_limit",
            Self::NoCredentials => "no_credentials",
            Self::NotAuthorized => "not_authorized",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One line per second at most for all refusals together.
static REFUSED_LOG: LogLimiter = LogLimiter::per_second();

/// Counts a refused CONNECT and logs it at a bounded rate (the client id escaped).
pub fn refused(reason: Refusal, client_id: &str) {
    metrics::counter!("ferroboard_mqtt_connect_refused_total", "reason" => reason.label())
        .increment(1);
    if let Some(suppressed) = REFUSED_LOG.allow() {
        tracing::info!(
            reason = reason.label(),
            client_id = ?client_id,
            suppressed,
            "MQTT CONNECT refused (at most one such line per second; `suppressed` counts the others)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_cap_and_frees_places() {
        let gate = Gate::new(2);
        let a = gate.enter().expect("first");
        let _b = gate.enter().expect("second");
        assert!(gate.enter().is_none(), "third refused");
        drop(a);
        assert!(gate.enter().is_some(), "a freed place is taken again");
    }
}
