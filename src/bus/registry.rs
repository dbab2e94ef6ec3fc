//! The live-session registry: one session per device, the newest wins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::Downlink;
use crate::domain::{DeviceId, DeviceProfileId};

/// Why the server closes a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// SIGTERM: MQTT 5 DISCONNECT 0x8B.
    ServerShutdown,
    /// A newer session of the same device: MQTT 5 DISCONNECT 0x8E.
    TakenOver,
    /// The device's credentials changed or it was deleted: MQTT 5 DISCONNECT 0x98.
    Administrative,
    /// The device's profile (its transport settings) changed: MQTT 5 DISCONNECT 0x98; the device
    /// reconnects under the new settings.
    ProfileChanged,
}

/// Commands to a session's task, which owns the MQTT sink on its worker thread. Closing is not
/// among them: it has its own signal (`CloseSignal`), which a full queue cannot hold back.
#[derive(Debug)]
pub enum SessionCmd {
    /// Boxed so that an idle session's queue stays small (a queue block holds 32 commands).
    Deliver(Box<Downlink>),
    /// Persistent RPCs wait in the database for this device.
    PendingRpc,
}

/// The session's side of its close signal: the first reason set (take-over, revocation,
/// shutdown) is seen however full its command queue is.
pub type CloseSignal = watch::Receiver<Option<CloseReason>>;

struct Entry {
    session: u64,
    /// The device's profile when the session opened.
    profile: Option<DeviceProfileId>,
    tx: mpsc::Sender<SessionCmd>,
    close: watch::Sender<Option<CloseReason>>,
}

impl Entry {
    /// Asks the session to close; a reason set earlier stays.
    fn close(&self, reason: CloseReason) {
        self.close.send_if_modified(|current| {
            let unset = current.is_none();
            if unset {
                *current = Some(reason);
            }
            unset
        });
    }
}

/// How long a revocation is remembered for CONNECTs still being admitted (far longer than a
/// credentials lookup can take: the CONNECT timeout is 10 s).
const REVOCATION_MEMORY: Duration = Duration::from_secs(30);

/// Live sessions by device. Shared by both runtimes.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<DeviceId, Entry>>,
    next_id: AtomicU64,
    /// Devices whose credentials changed (or which were deleted) recently, and when: a CONNECT
    /// authenticated before that instant must not become a session.
    revoked: Mutex<HashMap<DeviceId, Instant>>,
}

impl Registry {
    /// Registers a new session for `device`; an older session of the device is told to close
    /// (even when its command queue is full). Returns the session id and its close signal.
    pub fn register(&self, device: DeviceId, tx: mpsc::Sender<SessionCmd>) -> (u64, CloseSignal) {
        self.register_of_profile(device, None, tx)
    }

    /// As `register`, remembering the device's profile for `close_profile`.
    pub fn register_of_profile(
        &self,
        device: DeviceId,
        profile: Option<DeviceProfileId>,
        tx: mpsc::Sender<SessionCmd>,
    ) -> (u64, CloseSignal) {
        let session = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (close, signal) = watch::channel(None);
        let entry = Entry {
            session,
            profile,
            tx,
            close,
        };
        let old = self.lock().insert(device, entry);
        if let Some(old) = old {
            static TAKE_OVER_LOG: crate::observability::LogLimiter =
                crate::observability::LogLimiter::new(1000, 10);
            if let Some(suppressed) = TAKE_OVER_LOG.allow() {
                tracing::info!(device = %device, suppressed, "newer session of the device connected; closing the older one");
            }
            old.close(CloseReason::TakenOver);
        }
        metrics::gauge!("ferroboard_mqtt_sessions").set(self.len() as f64);
        (session, signal)
    }

    /// Removes the device's entry if it still belongs to `session`.
    pub fn unregister(&self, device: DeviceId, session: u64) {
        let mut map = self.lock();
        if map.get(&device).is_some_and(|e| e.session == session) {
            map.remove(&device);
        }
        let len = map.len();
        drop(map);
        metrics::gauge!("ferroboard_mqtt_sessions").set(len as f64);
    }

    /// Closes the device's session on this node (a newer one opened on another node, or an
    /// administrative change to the device).
    pub fn close(&self, device: DeviceId, reason: CloseReason) {
        if reason == CloseReason::Administrative {
            self.revoke(device);
        }
        if let Some(entry) = self.lock().get(&device) {
            entry.close(reason);
        }
    }

    /// Remembers that the device's credentials were revoked now (forgetting old revocations).
    fn revoke(&self, device: DeviceId) {
        let now = Instant::now();
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, at| now.duration_since(*at) < REVOCATION_MEMORY);
        revoked.insert(device, now);
    }

    /// Whether the device's credentials were revoked at or after `since` (the start of a CONNECT's
    /// credentials lookup): such a CONNECT may have been accepted on credentials no longer valid.
    pub fn revoked_since(&self, device: DeviceId, since: Instant) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&device)
            .is_some_and(|at| *at >= since)
    }

    /// Hands a downlink to the device's session if it lives on this node; false otherwise.
    pub fn deliver(&self, device: DeviceId, downlink: Downlink) -> bool {
        let map = self.lock();
        let Some(entry) = map.get(&device) else {
            return false;
        };
        match entry.tx.try_send(SessionCmd::Deliver(Box::new(downlink))) {
            Ok(()) => true,
            Err(_) => {
                metrics::counter!("ferroboard_mqtt_outbound_dropped_total").increment(1);
                tracing::warn!(device = %device, "outbound queue of the session is full (mqtt.outbound_queue); message dropped");
                false
            }
        }
    }

    pub fn signal_pending_rpc(&self, device: DeviceId) {
        if let Some(entry) = self.lock().get(&device) {
            let _ = entry.tx.try_send(SessionCmd::PendingRpc);
        }
    }

    /// The session id of the device's live session on this node.
    pub fn session_of(&self, device: DeviceId) -> Option<u64> {
        self.lock().get(&device).map(|e| e.session)
    }

    /// The devices with a live session on this node.
    pub fn devices(&self) -> Vec<DeviceId> {
        self.lock().keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_connected(&self, device: DeviceId) -> bool {
        self.lock().contains_key(&device)
    }

    /// Closes the sessions of the profile's devices on this node (its settings changed).
    pub fn close_profile(&self, profile: DeviceProfileId) {
        for entry in self.lock().values() {
            if entry.profile == Some(profile) {
                entry.close(CloseReason::ProfileChanged);
            }
        }
    }

    /// Tells every session to close (shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for entry in self.lock().values() {
            entry.close(reason);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_authenticated_before_a_revocation_are_refused() {
        let reg = Registry::default();
        let device = DeviceId::new();
        let before = Instant::now();
        assert!(!reg.revoked_since(device, before));
        // A takeover is not a revocation.
        reg.close(device, CloseReason::TakenOver);
        assert!(!reg.revoked_since(device, before));
        reg.close(device, CloseReason::Administrative);
        assert!(
            reg.revoked_since(device, before),
            "lookup started before the change"
        );
        let after = Instant::now();
        assert!(
            !reg.revoked_since(device, after),
            "lookup started after the change"
        );
        assert!(
            !reg.revoked_since(DeviceId::new(), before),
            "other devices unaffected"
        );
    }

    #[test]
    fn newest_session_wins() {
        let reg = Registry::default();
        let device = DeviceId::new();
        let (tx1, _rx1) = mpsc::channel(4);
        let (tx2, _rx2) = mpsc::channel(4);
        let (s1, close1) = reg.register(device, tx1);
        let (s2, close2) = reg.register(device, tx2);
        assert_eq!(*close1.borrow(), Some(CloseReason::TakenOver));
        assert_eq!(*close2.borrow(), None);
        reg.unregister(device, s1);
        assert!(
            reg.is_connected(device),
            "the old session must not remove the new one"
        );
        reg.unregister(device, s2);
        assert!(!reg.is_connected(device));
    }

    #[test]
    fn close_reaches_a_session_whose_queue_is_full() {
        let reg = Registry::default();
        let device = DeviceId::new();
        let (tx, _rx) = mpsc::channel(1);
        let (_, close) = reg.register(device, tx);
        let push = || Downlink::Attributes {
            payload: "{}".to_owned(),
        };
        assert!(reg.deliver(device, push()));
        assert!(!reg.deliver(device, push()), "queue full");
        reg.close(device, CloseReason::Administrative);
        assert_eq!(*close.borrow(), Some(CloseReason::Administrative));
        // The first reason stays; a take-over of a full, stuck session is still delivered.
        let (tx2, _rx2) = mpsc::channel(1);
        let (_, close2) = reg.register(device, tx2);
        assert_eq!(*close.borrow(), Some(CloseReason::Administrative));
        assert!(reg.deliver(device, push()));
        let (tx3, _rx3) = mpsc::channel(1);
        reg.register(device, tx3);
        assert_eq!(*close2.borrow(), Some(CloseReason::TakenOver));
    }
}
