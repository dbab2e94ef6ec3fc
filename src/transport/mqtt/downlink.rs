//! Sessions' downlink: one mailbox per worker thread fed by the registry (bus deliveries, close),
//! shared-attribute pushes, server-side RPC delivery with request ids, and replies to the device's
//! own requests.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tracing::Instrument as _;

use ntex_bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;

use super::session::{DeviceSession, Granted};
use super::sink::PublishError;
use crate::bus::mailbox::{Address, Letter, LetterKind, Mailbox};
use crate::bus::{Downlink, RpcRequest, SessionCmd};
use crate::domain::now_ms;
use crate::services::rpc::Undelivered;

/// Most RPC requests held for a session that has not subscribed to RPC yet.
const MAX_QUEUED_RPC: usize = 100;

/// This worker thread's mailbox and the sessions it serves; made with the thread's first session.
struct Worker {
    mailbox: Mailbox,
    sessions: RefCell<HashMap<u64, Weak<DeviceSession>>>,
}

thread_local! {
    static WORKER: OnceCell<Rc<Worker>> = const { OnceCell::new() };
}

/// The worker of this thread, its mailbox task started on first use.
fn worker() -> Rc<Worker> {
    WORKER.with(|cell| {
        cell.get_or_init(|| {
            let (mailbox, rx) = Mailbox::new();
            let worker = Rc::new(Worker {
                mailbox,
                sessions: RefCell::new(HashMap::new()),
            });
            ntex_rt::spawn(serve(worker.clone(), rx));
            worker
        })
        .clone()
    })
}

/// The address of a new session on this worker, holding at most `bound` commands.
pub(super) fn address(bound: usize) -> Address {
    worker().mailbox.address(bound)
}

/// Lets this worker's mailbox reach the session (from now on: call it before the task yields, so
/// that nothing sent since its registration is missed).
pub(super) fn attach(sess: &Rc<DeviceSession>) {
    worker()
        .sessions
        .borrow_mut()
        .insert(sess.session, Rc::downgrade(sess));
}

/// The session ended: its mailbox letters are ignored from now on.
pub(super) fn detach(session: u64) {
    let _ = WORKER.try_with(|cell| {
        if let Some(worker) = cell.get()
            && let Ok(mut sessions) = worker.sessions.try_borrow_mut()
        {
            sessions.remove(&session);
        }
    });
}

/// Letters handled per turn before the task yields to the connections of its worker.
const LETTERS_PER_TURN: usize = 64;

/// Runs the worker's mailbox until every sender is gone (its runtime stopping ends it sooner).
async fn serve(worker: Rc<Worker>, mut rx: UnboundedReceiver<Letter>) {
    let mut letters = Vec::with_capacity(LETTERS_PER_TURN);
    while rx.recv_many(&mut letters, LETTERS_PER_TURN).await > 0 {
        for letter in letters.drain(..) {
            handle(&worker, letter);
        }
    }
}

/// One letter: the session's close request is looked at first, so a full queue never holds a
/// close back (commands still queued behind it are dropped with the session's link).
fn handle(worker: &Worker, letter: Letter) {
    let sess = worker
        .sessions
        .borrow()
        .get(&letter.session)
        .and_then(Weak::upgrade);
    let Some(sess) = sess else { return };
    if matches!(letter.kind, LetterKind::Cmd(_)) {
        sess.flags.taken();
    }
    if let Some(reason) = sess.flags.close_reason() {
        worker.sessions.borrow_mut().remove(&letter.session);
        sess.close_session(reason);
        return;
    }
    match letter.kind {
        LetterKind::Close => {}
        LetterKind::Cmd(SessionCmd::PendingRpc) => load_persistent(&sess),
        LetterKind::Cmd(SessionCmd::Deliver(downlink)) => match *downlink {
            Downlink::Attributes { payload } => sess.push_attributes(payload),
            Downlink::Rpc(req) => sess.offer_rpc(req),
            Downlink::ClientRpcReply {
                session,
                request_id,
                body,
            } => {
                if session == sess.session {
                    sess.client_rpc_reply(&request_id, Bytes::from(body));
                }
            }
        },
    }
}

impl DeviceSession {
    pub(super) fn push_attributes(self: &Rc<Self>, payload: String) {
        let Some(sub) = self.attributes_grant() else {
            return;
        };
        let body = self.attributes_body(payload);
        self.spawn_publish(sub.filter, Bytes::from(body), sub.qos1);
    }

    /// Sends the RPC now when the device subscribed to RPC (and the connection is open), else
    /// holds it until it does. Offers repeat (a device's session opening, the bus recovering, a
    /// reload of stored RPCs): a copy of an RPC the session holds or recently answered is ignored,
    /// and a copy of a one-way RPC it delivered is reported delivered again instead of being re-sent.
    pub(super) fn offer_rpc(self: &Rc<Self>, req: RpcRequest) {
        let (held, done) = {
            let rpc = self.rpc.borrow();
            let sent = &self.state.services.rpc.sent;
            (
                rpc.holds(req.rpc) || sent.holds(self.device.id, req.rpc),
                rpc.recently_done(req.rpc),
            )
        };
        if held {
            tracing::debug!(device = %self.device.id, rpc = %req.rpc, "RPC offered again while held; copy ignored");
            return;
        }
        if done && req.oneway {
            tracing::debug!(device = %self.device.id, rpc = %req.rpc, "one-way RPC offered again after delivery; not re-sent");
            let (tenant, device) = (self.device.tenant_id, self.device.id);
            self.on_runtime(move |s| async move { s.rpc.delivered(tenant, device, &req).await });
            return;
        }
        if done {
            tracing::debug!(device = %self.device.id, rpc = %req.rpc, "two-way RPC offered again after its reply; copy ignored");
            return;
        }
        if req.expiration_time <= now_ms() {
            self.on_runtime(move |s| async move { s.rpc.expired(&req).await });
            return;
        }
        // A closed connection sends nothing: the request waits, and the session's end reports it.
        let sub = self.rpc_grant().filter(|_| self.is_open());
        let Some(sub) = sub else {
            let mut rpc = self.rpc.borrow_mut();
            if rpc.queued.len() >= MAX_QUEUED_RPC
                && let Some(dropped) = rpc.queued.pop_front()
            {
                tracing::warn!(device = %self.device.id, "more than {MAX_QUEUED_RPC} RPCs wait for an RPC subscription; dropping the oldest");
                self.on_runtime(move |s| async move {
                    s.rpc.undelivered(&dropped, Undelivered::NotSent).await;
                });
            }
            rpc.queued.push_back(req);
            return;
        };
        self.send_rpc(&sub, req);
    }

    /// Whether the connection can still carry publishes.
    fn is_open(&self) -> bool {
        !self.closed.get() && self.sink.is_open()
    }

    /// Publishes the request with the subscription's QoS, under the device's next request id (a
    /// two-way request is remembered under it, on every node, for the answer from any session of
    /// the device). Its outcome is recorded by one task on the main runtime, in order: the id
    /// announced to other nodes, SENT (persistent at QoS 1), then DELIVERED or why it was not (no
    /// PUBACK in time, or the connection closed).
    fn send_rpc(self: &Rc<Self>, sub: &Granted, mut req: RpcRequest) {
        let (tenant, device) = (self.device.tenant_id, self.device.id);
        let span = crate::observability::trace::remote_child(req.traceparent.as_deref(), || {
            tracing::info_span!(
                target: crate::observability::trace::TARGET,
                "mqtt.rpc.publish",
                otel.kind = "producer",
                device.id = %device,
                mqtt.qos = u8::from(sub.qos1),
            )
        });
        if !span.is_none() {
            // The device's answer continues under this span.
            req.traceparent = span
                .in_scope(crate::observability::trace::current_traceparent)
                .or(req.traceparent);
        }
        let id = self.state.services.rpc.sent.allocate(tenant, device, &req);
        req.request_id = id;
        self.rpc.borrow_mut().sending.insert(req.rpc);
        let body = self.rpc_body(&req, id);
        let topic = sub.filter.replace('+', &id.to_string());
        let timeout = self.ack_timeout(&req);
        let (sess, qos1) = (self.clone(), sub.qos1);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), Undelivered>>();
        let outcome = req.clone();
        self.on_runtime(move |s| async move {
            if !outcome.oneway {
                s.rpc
                    .announce_sent(tenant, device, id, outcome.clone())
                    .await;
            }
            if qos1 && outcome.persistent {
                s.rpc.sent(&outcome).await;
            }
            // A dropped sender means the publish never finished: the session's runtime is gone.
            match done_rx.await.unwrap_or(Err(Undelivered::ConnectionLost)) {
                Ok(()) => s.rpc.delivered(tenant, device, &outcome).await,
                Err(cause) => s.rpc.undelivered(&outcome, cause).await,
            }
        });
        ntex_rt::spawn(async move {
            let result = sess
                .sink
                .publish(&topic, Bytes::from(body), qos1, timeout)
                .await;
            {
                let mut rpc = sess.rpc.borrow_mut();
                rpc.sending.remove(&req.rpc);
                match &result {
                    Ok(()) if req.oneway => rpc.done(req.rpc),
                    Ok(()) => {}
                    Err(e) => {
                        tracing::debug!(device = %sess.device.id, error = %e, "RPC request not delivered");
                        // The device may still have it and answer; a copy offered again is sent.
                        sess.state.services.rpc.sent.failed(sess.device.id, id);
                    }
                }
            }
            let outcome = result.map_err(|e| match e {
                PublishError::AckTimeout(_) => Undelivered::AckTimeout,
                PublishError::Disconnected => {
                    // Nothing more goes out on this session; a re-offer waits for its end.
                    sess.closed.set(true);
                    Undelivered::ConnectionLost
                }
                // Counted as a failed attempt, so a request the connection cannot carry ends
                // FAILED instead of being offered to it again and again.
                PublishError::Refused(_) => Undelivered::AckTimeout,
            });
            let _ = done_tx.send(outcome);
        }.instrument(span));
    }

    fn ack_timeout(&self, req: &RpcRequest) -> Duration {
        let left = u64::try_from(req.expiration_time - now_ms()).unwrap_or(0);
        Duration::from_millis(left.min(self.state.config.mqtt.ack_timeout_ms).max(1))
    }

    /// The device subscribed to RPC: send what waited, and the persistent RPCs stored for it.
    /// Requests sent to the device meanwhile by another of its sessions (an HTTP long poll,
    /// another node) are not sent again.
    pub(super) fn rpc_subscribed(self: &Rc<Self>) {
        let Some(sub) = self.rpc_grant() else {
            return;
        };
        let queued: Vec<RpcRequest> = self.rpc.borrow_mut().queued.drain(..).collect();
        let sent = &self.state.services.rpc.sent;
        for req in queued {
            if sent.holds(self.device.id, req.rpc) {
                tracing::debug!(device = %self.device.id, rpc = %req.rpc, "queued RPC sent meanwhile by another session; not sent again");
                continue;
            }
            self.send_rpc(&sub, req);
        }
        load_persistent(self);
    }

    /// Answers the device's own RPC request `request_id` (rules' reply, timeout, or session limits).
    pub(super) fn client_rpc_reply(self: &Rc<Self>, request_id: &str, body: Bytes) {
        let Some(v2) = self.client_rpc.borrow_mut().remove(request_id) else {
            return;
        };
        let topic = if v2 {
            format!("v2/r/res/{request_id}")
        } else {
            format!("v1/devices/me/rpc/response/{request_id}")
        };
        let qos1 = self.response_qos(&topic);
        self.spawn_publish(topic, body, qos1);
    }

    /// QoS of the response subscription matching `topic`; QoS 1 without one.
    pub(super) fn response_qos(&self, topic: &str) -> bool {
        self.response_subs
            .borrow()
            .iter()
            .find(|g| matches_filter(&g.filter, topic))
            .is_none_or(|g| g.qos1)
    }

    pub(super) fn spawn_publish(self: &Rc<Self>, topic: String, payload: Bytes, qos1: bool) {
        self.spawn_publish_with(topic, payload, qos1, None, ());
    }

    /// `spawn_publish` with an MQTT 5 user property, keeping `held` until the publish ends.
    pub(super) fn spawn_publish_with<H: 'static>(
        self: &Rc<Self>,
        topic: String,
        payload: Bytes,
        qos1: bool,
        property: Option<(&'static str, String)>,
        held: H,
    ) {
        let sess = self.clone();
        let timeout = Duration::from_millis(self.state.config.mqtt.ack_timeout_ms);
        ntex_rt::spawn(async move {
            let _held = held;
            let sent = sess
                .sink
                .publish_with(&topic, payload, qos1, timeout, property);
            if let Err(e) = sent.await {
                tracing::debug!(device = %sess.device.id, topic, error = %e, "downlink publish failed");
            }
        });
    }

    /// Runs service work on the main runtime without waiting for it.
    pub(super) fn on_runtime<F, Fut>(&self, f: F)
    where
        F: FnOnce(std::sync::Arc<crate::services::Services>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.state.rt.spawn(f(self.state.services.clone()));
    }
}

/// Fetches the device's stored persistent RPCs and offers them to the session (not to one whose
/// connection closed: its requests go back to QUEUED and are announced when it ends).
fn load_persistent(sess: &Rc<DeviceSession>) {
    if sess.rpc_grant().is_none() || !sess.is_open() {
        return;
    }
    let services = sess.state.services.clone();
    let device = sess.device.id;
    let fetch = sess
        .state
        .rt
        .spawn(async move { services.rpc.queued_for(device).await });
    let weak = Rc::downgrade(sess);
    ntex_rt::spawn(async move {
        let Ok(requests) = fetch.await else { return };
        let Some(sess) = weak.upgrade() else { return };
        // Those the session holds or recently finished are ignored by `offer_rpc`.
        for req in requests {
            sess.offer_rpc(req);
        }
    });
}

/// MQTT filter matching for the filters devices use (`+` = one level).
fn matches_filter(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (None, None) => return true,
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if !level.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches_filter;

    #[test]
    fn filters_match_one_level_per_plus() {
        assert!(matches_filter(
            "v1/devices/me/rpc/response/+",
            "v1/devices/me/rpc/response/7"
        ));
        assert!(!matches_filter(
            "v1/devices/me/rpc/response/+",
            "v1/devices/me/rpc/response/7/x"
        ));
        assert!(!matches_filter(
            "v1/devices/me/rpc/response/+",
            "v1/devices/me/rpc/response/"
        ));
        assert!(matches_filter(
            "v2/fw/response/+/chunk/+",
            "v2/fw/response/1/chunk/0"
        ));
    }
}
