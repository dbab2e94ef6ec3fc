//! The live-session registry: one MQTT session per device (the newest wins), and beside it the
//! device's HTTP long polls, each waiting for one kind of downlink; a long poll never takes an
//! MQTT session over, nor is it taken over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::Downlink;
use super::mailbox::Address;
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
    outbox: Outbox,
}

/// Where an entry's commands and close request go.
enum Outbox {
    /// A queue and a close signal of its own (HTTP long polls).
    Channel {
        tx: mpsc::Sender<SessionCmd>,
        close: watch::Sender<Option<CloseReason>>,
    },
    /// The mailbox of the MQTT worker the session lives on.
    Mailbox(Address),
}

/// What an HTTP long poll waits for (it ends with the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollKind {
    /// Shared-attribute updates: every poll of the device gets each update, as its MQTT session does.
    Attributes,
    /// A server-side RPC: one poll gets it (the oldest), before the MQTT session.
    Rpc,
    /// The rules' answer to the client-side RPC the poll made.
    ClientRpcReply,
}

/// A device's long polls on this node, at most (beyond it a new one is refused).
pub const MAX_POLLS_PER_DEVICE: usize = 16;

/// The registration of a long poll was refused: the device has `MAX_POLLS_PER_DEVICE` already.
#[derive(Debug, thiserror::Error)]
#[error("the device has {MAX_POLLS_PER_DEVICE} long polls open on this node already")]
pub struct TooManyPolls;

/// A device's live sessions on this node.
#[derive(Default)]
struct DeviceSessions {
    /// The MQTT session.
    main: Option<Entry>,
    /// The long polls, oldest first.
    polls: Vec<(PollKind, Entry)>,
}

impl DeviceSessions {
    fn is_empty(&self) -> bool {
        self.main.is_none() && self.polls.is_empty()
    }

    fn polls_of(&self, kind: PollKind) -> impl Iterator<Item = &Entry> {
        self.polls
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, e)| e)
    }

    /// Every entry (MQTT session first) with this session id.
    fn by_session(&self, session: u64) -> Option<&Entry> {
        self.main
            .iter()
            .chain(self.polls.iter().map(|(_, e)| e))
            .find(|e| e.session == session)
    }
}

/// Hands a command to one entry's queue; a full queue drops it (counted and logged).
fn offer(device: DeviceId, entry: &Entry, cmd: SessionCmd) -> bool {
    if entry.try_send(cmd) {
        return true;
    }
    metrics::counter!("ferroboard_mqtt_outbound_dropped_total").increment(1);
    tracing::warn!(device = %device, "outbound queue of the session is full (mqtt.outbound_queue); message dropped");
    false
}

impl Entry {
    /// Queues a command for the session; false when its queue is full or it is gone.
    fn try_send(&self, cmd: SessionCmd) -> bool {
        match &self.outbox {
            Outbox::Channel { tx, .. } => tx.try_send(cmd).is_ok(),
            Outbox::Mailbox(address) => address.offer(self.session, cmd),
        }
    }

    /// Asks the session to close; a reason set earlier stays.
    fn close(&self, reason: CloseReason) {
        match &self.outbox {
            Outbox::Channel { close, .. } => {
                close.send_if_modified(|current| {
                    let unset = current.is_none();
                    if unset {
                        *current = Some(reason);
                    }
                    unset
                });
            }
            Outbox::Mailbox(address) => address.close(self.session, reason),
        }
    }
}

/// How long a revocation is remembered for CONNECTs still being admitted (far longer than a
/// credentials lookup can take: the CONNECT timeout is 10 s).
const REVOCATION_MEMORY: Duration = Duration::from_secs(30);

/// Live sessions by device. Shared by both runtimes.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<DeviceId, DeviceSessions>>,
    next_id: AtomicU64,
    /// Devices whose credentials changed (or which were deleted) recently, and when: a CONNECT
    /// authenticated before that instant must not become a session.
    revoked: Mutex<HashMap<DeviceId, Instant>>,
    /// Devices' tenants, for REST calls; forgotten with every administrative close.
    pub owners: super::owners::Owners,
}

impl Registry {
    /// Registers a new session for `device` with a queue of its own; an older session of the
    /// device is told to close (even when its command queue is full). Returns the session id and
    /// its close signal.
    pub fn register(&self, device: DeviceId, tx: mpsc::Sender<SessionCmd>) -> (u64, CloseSignal) {
        let (close, signal) = watch::channel(None);
        let session = self.register_main(device, None, Outbox::Channel { tx, close });
        (session, signal)
    }

    /// Registers a new MQTT session of `device` reached through its worker's mailbox,
    /// remembering the device's profile for `close_profile`; an older session of the device is
    /// told to close. Returns the session id.
    pub fn register_mailbox(
        &self,
        device: DeviceId,
        profile: Option<DeviceProfileId>,
        address: Address,
    ) -> u64 {
        self.register_main(device, profile, Outbox::Mailbox(address))
    }

    fn register_main(
        &self,
        device: DeviceId,
        profile: Option<DeviceProfileId>,
        outbox: Outbox,
    ) -> u64 {
        let session = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut map = self.lock();
        let old = map.entry(device).or_default().main.replace(Entry {
            session,
            profile,
            outbox,
        });
        let len = mains(&map);
        drop(map);
        if let Some(old) = old {
            static TAKE_OVER_LOG: crate::observability::LogLimiter =
                crate::observability::LogLimiter::new(1000, 10);
            if let Some(suppressed) = TAKE_OVER_LOG.allow() {
                tracing::info!(device = %device, suppressed, "newer session of the device connected; closing the older one");
            }
            old.close(CloseReason::TakenOver);
        }
        metrics::gauge!("ferroboard_mqtt_sessions").set(len as f64);
        session
    }

    /// Registers an HTTP long poll of `device` waiting for `kind`; the device's MQTT session (if
    /// any) stays. Returns the poll's session id and close signal.
    pub fn register_poll(
        &self,
        device: DeviceId,
        kind: PollKind,
        tx: mpsc::Sender<SessionCmd>,
    ) -> Result<(u64, CloseSignal), TooManyPolls> {
        let mut map = self.lock();
        let sessions = map.entry(device).or_default();
        if sessions.polls.len() >= MAX_POLLS_PER_DEVICE {
            return Err(TooManyPolls);
        }
        let session = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (close, signal) = watch::channel(None);
        sessions.polls.push((
            kind,
            Entry {
                session,
                profile: None,
                outbox: Outbox::Channel { tx, close },
            },
        ));
        Ok((session, signal))
    }

    /// Removes the device's session or long poll `session` (a newer MQTT session stays).
    pub fn unregister(&self, device: DeviceId, session: u64) {
        let mut map = self.lock();
        if let Some(sessions) = map.get_mut(&device) {
            if sessions.main.as_ref().is_some_and(|e| e.session == session) {
                sessions.main = None;
            }
            sessions.polls.retain(|(_, e)| e.session != session);
            if sessions.is_empty() {
                map.remove(&device);
            }
        }
        let len = mains(&map);
        drop(map);
        metrics::gauge!("ferroboard_mqtt_sessions").set(len as f64);
    }

    /// Closes the device's session on this node (a newer one opened on another node, or an
    /// administrative change to the device). A take-over closes the MQTT session only; its long
    /// polls end on an administrative change.
    pub fn close(&self, device: DeviceId, reason: CloseReason) {
        if reason == CloseReason::Administrative {
            self.revoke(device);
            self.owners.forget(device);
        }
        if let Some(sessions) = self.lock().get(&device) {
            if let Some(entry) = &sessions.main {
                entry.close(reason);
            }
            if reason != CloseReason::TakenOver {
                for (_, entry) in &sessions.polls {
                    entry.close(reason);
                }
            }
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

    /// Hands a downlink to the device's sessions on this node; false when none took it. Shared
    /// attributes go to the MQTT session and every attributes poll; a server-side RPC to the
    /// oldest RPC poll that takes it, else the MQTT session; a client-RPC answer to the session
    /// that asked.
    pub fn deliver(&self, device: DeviceId, downlink: Downlink) -> bool {
        let map = self.lock();
        let Some(sessions) = map.get(&device) else {
            return false;
        };
        let cmd = |d: &Downlink| SessionCmd::Deliver(Box::new(d.clone()));
        match &downlink {
            Downlink::Attributes { .. } => {
                let mut taken = sessions
                    .main
                    .as_ref()
                    .is_some_and(|entry| offer(device, entry, cmd(&downlink)));
                // A poll's queue holds one update: a full one answers with the update it has.
                for entry in sessions.polls_of(PollKind::Attributes) {
                    taken |= entry.try_send(cmd(&downlink));
                }
                taken
            }
            Downlink::Rpc(_) => {
                let mut polls = sessions.polls_of(PollKind::Rpc);
                if polls.any(|entry| entry.try_send(cmd(&downlink))) {
                    return true;
                }
                sessions.main.as_ref().is_some_and(|entry| {
                    offer(device, entry, SessionCmd::Deliver(Box::new(downlink)))
                })
            }
            Downlink::ClientRpcReply { session, .. } => sessions
                .by_session(*session)
                .is_some_and(|entry| offer(device, entry, SessionCmd::Deliver(Box::new(downlink)))),
        }
    }

    /// Persistent RPCs wait in the database: the oldest RPC poll loads them, or else the MQTT
    /// session (as a server-side RPC is handed out).
    pub fn signal_pending_rpc(&self, device: DeviceId) {
        if let Some(sessions) = self.lock().get(&device) {
            let poll = sessions.polls_of(PollKind::Rpc).next();
            if let Some(entry) = poll.or(sessions.main.as_ref()) {
                let _ = entry.try_send(SessionCmd::PendingRpc);
            }
        }
    }

    /// The session id of the device's MQTT session on this node.
    pub fn session_of(&self, device: DeviceId) -> Option<u64> {
        self.lock()
            .get(&device)
            .and_then(|s| s.main.as_ref())
            .map(|e| e.session)
    }

    /// The devices with a live session or long poll on this node.
    pub fn devices(&self) -> Vec<DeviceId> {
        self.lock().keys().copied().collect()
    }

    /// MQTT sessions on this node.
    pub fn len(&self) -> usize {
        mains(&self.lock())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the device has an MQTT session on this node.
    pub fn is_connected(&self, device: DeviceId) -> bool {
        self.lock().get(&device).is_some_and(|s| s.main.is_some())
    }

    /// Long polls open on this node, all devices.
    pub fn polls(&self) -> usize {
        self.lock().values().map(|s| s.polls.len()).sum()
    }

    /// Closes the sessions of the profile's devices on this node (its settings changed).
    pub fn close_profile(&self, profile: DeviceProfileId) {
        for entry in self.lock().values().filter_map(|s| s.main.as_ref()) {
            if entry.profile == Some(profile) {
                entry.close(CloseReason::ProfileChanged);
            }
        }
    }

    /// Tells every session to close (shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for sessions in self.lock().values() {
            for entry in sessions
                .main
                .iter()
                .chain(sessions.polls.iter().map(|(_, e)| e))
            {
                entry.close(reason);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, DeviceSessions>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// MQTT sessions in the map.
fn mains(map: &HashMap<DeviceId, DeviceSessions>) -> usize {
    map.values().filter(|s| s.main.is_some()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc() -> Downlink {
        Downlink::Rpc(super::super::RpcRequest {
            rpc: uuid::Uuid::new_v4(),
            request_id: 0,
            method: "m".to_owned(),
            params: "{}".to_owned(),
            oneway: false,
            persistent: false,
            expiration_time: i64::MAX,
            traceparent: None,
        })
    }

    #[test]
    fn long_polls_live_beside_the_mqtt_session() {
        let reg = Registry::default();
        let device = DeviceId::new();
        let (tx, mut mqtt) = mpsc::channel(4);
        let (main, main_close) = reg.register(device, tx);
        let (tx, mut attrs) = mpsc::channel(1);
        let (a, _) = reg.register_poll(device, PollKind::Attributes, tx).unwrap();
        let (tx, mut rpcs) = mpsc::channel(1);
        let (r, rpc_close) = reg.register_poll(device, PollKind::Rpc, tx).unwrap();
        assert_eq!(*main_close.borrow(), None, "a poll takes nothing over");
        assert_eq!((reg.len(), reg.polls()), (1, 2));
        // An update reaches the MQTT session and the attributes poll; an RPC only the RPC poll.
        assert!(reg.deliver(
            device,
            Downlink::Attributes {
                payload: "{}".to_owned()
            }
        ));
        assert!(mqtt.try_recv().is_ok() && attrs.try_recv().is_ok());
        assert!(reg.deliver(device, rpc()));
        assert!(rpcs.try_recv().is_ok());
        assert!(mqtt.try_recv().is_err(), "the RPC went to the poll");
        // A take-over from another node closes the MQTT session, not the polls.
        reg.close(device, CloseReason::TakenOver);
        assert_eq!(*main_close.borrow(), Some(CloseReason::TakenOver));
        assert_eq!(*rpc_close.borrow(), None);
        // Without an RPC poll the MQTT session gets the RPC again.
        reg.unregister(device, r);
        assert!(reg.deliver(device, rpc()));
        assert!(mqtt.try_recv().is_ok());
        reg.close(device, CloseReason::Administrative);
        reg.unregister(device, a);
        reg.unregister(device, main);
        assert!(reg.devices().is_empty(), "nothing left behind");
    }

    #[test]
    fn a_device_has_a_bounded_number_of_polls() {
        let reg = Registry::default();
        let device = DeviceId::new();
        let mut keep = Vec::new();
        for _ in 0..MAX_POLLS_PER_DEVICE {
            let (tx, rx) = mpsc::channel(1);
            keep.push((reg.register_poll(device, PollKind::Rpc, tx).unwrap(), rx));
        }
        let (tx, _rx) = mpsc::channel(1);
        assert!(reg.register_poll(device, PollKind::Rpc, tx).is_err());
        let (tx, _rx) = mpsc::channel(1);
        assert!(
            reg.register_poll(DeviceId::new(), PollKind::Rpc, tx)
                .is_ok()
        );
    }

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

    #[test]
    fn mailbox_sessions_are_bounded_and_closed_through_their_worker() {
        let reg = Registry::default();
        let device = DeviceId::new();
        let (mailbox, mut rx) = super::super::mailbox::Mailbox::new();
        let first = mailbox.address(1);
        let flags = first.flags();
        let s1 = reg.register_mailbox(device, None, first);
        let push = || Downlink::Attributes {
            payload: "{}".to_owned(),
        };
        assert!(reg.deliver(device, push()));
        assert!(
            !reg.deliver(device, push()),
            "the session's bound holds in a shared mailbox"
        );
        let s2 = reg.register_mailbox(device, None, mailbox.address(1));
        assert_eq!(flags.close_reason(), Some(CloseReason::TakenOver));
        let letters: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(letters.len(), 2, "the push, then the close request");
        assert!(letters.iter().all(|l| l.session == s1));
        assert!(matches!(
            letters[1].kind,
            super::super::mailbox::LetterKind::Close
        ));
        assert!(reg.deliver(device, push()), "the newer session takes it");
        assert_eq!(rx.try_recv().map(|l| l.session).ok(), Some(s2));
        reg.unregister(device, s1);
        assert_eq!(reg.session_of(device), Some(s2));
    }
}
