//! Server-side and client-side RPC: sending toward a device through the bus, completing the waiting
//! caller, and the state of persistent RPCs (stored by the REST API, advanced by the session's
//! callbacks here; the database is authoritative, so states survive restarts).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::bus::{Bus, BusError, Downlink, Event, RpcReply, RpcRequest, RpcWaiters, SentRpcs};
use crate::domain::{DeviceId, TenantId, now_ms};
use crate::storage::{DynStore, Rpc, RpcStatus, RpcTransition};

use RpcStatus::{Delivered, Expired, Failed, Queued, Sent, Successful, Timeout};

/// States of a persistent RPC that still waits to reach the device.
const UNDELIVERED: [RpcStatus; 3] = [Queued, Sent, Timeout];
/// Also waiting for the device's answer (two-way).
const OPEN_TWOWAY: [RpcStatus; 4] = [Queued, Sent, Timeout, Delivered];

/// Why a server-side RPC did not reach the device on a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undelivered {
    /// Published at QoS 1 and not acknowledged in time (or refused by the connection): a failed
    /// attempt, the only cause that counts a retry.
    AckTimeout,
    /// Never published: it waited for the session's RPC subscription when the session ended, or
    /// was dropped from a full queue.
    NotSent,
    /// The connection closed (or the server shut down) before the PUBACK.
    ConnectionLost,
}

pub struct RpcService {
    pub bus: Arc<dyn Bus>,
    pub waiters: Arc<RpcWaiters>,
    /// Two-way requests sent to devices, by device and request id (every node's copy).
    pub sent: Arc<SentRpcs>,
    /// This node's id (announcements name their origin).
    pub node: String,
    pub store: DynStore,
    /// Platform cap on delivery retries of a persistent RPC.
    pub max_retries: u32,
}

impl RpcService {
    /// Hands a server-side RPC to whichever node holds the device's session (rule node "rpc call request").
    /// A persistent request was stored by its creator; offline devices get it when they subscribe.
    /// One marked persistent that is not stored for this device is refused: its states are
    /// another device's (or nobody's) to change.
    pub async fn send(&self, device: DeviceId, request: RpcRequest) -> Result<(), BusError> {
        if request.persistent {
            match self.store.get_rpc(None, request.rpc).await {
                Ok(Some(stored)) if stored.device_id == device => {}
                Ok(_) => {
                    return Err(BusError(format!(
                        "persistent RPC {} is not stored for device {device}",
                        request.rpc
                    )));
                }
                Err(e) => return Err(BusError(format!("persistent RPC not read: {e}"))),
            }
        }
        self.bus
            .publish(Event::ToDevice {
                device: device.0,
                downlink: Downlink::Rpc(request),
            })
            .await
    }

    /// A persistent request was published at QoS 1 and waits for the device's PUBACK. Only a
    /// queued or timed-out RPC becomes SENT, so a late call never undoes a later state.
    pub async fn sent(&self, request: &RpcRequest) {
        if request.persistent {
            self.transition(request, &[Queued, Timeout], Sent, None, None)
                .await;
        }
    }

    /// A two-way request was published to the device under `request_id`: other nodes learn the
    /// id, so that an answer from a session there completes it too.
    pub async fn announce_sent(
        &self,
        tenant: TenantId,
        device: DeviceId,
        request_id: i32,
        request: RpcRequest,
    ) {
        let rpc = request.rpc;
        let event = Event::RpcSent {
            node: self.node.clone(),
            tenant: tenant.0,
            device: device.0,
            request_id,
            request,
        };
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(%rpc, error = %e, "RPC request id not announced to other nodes; only this node matches the answer");
        }
    }

    /// The request reached the device (PUBACK, or written at QoS 0).
    pub async fn delivered(&self, tenant: TenantId, device: DeviceId, request: &RpcRequest) {
        if request.persistent {
            self.transition(request, &UNDELIVERED, Delivered, None, None)
                .await;
        }
        self.reply(tenant, device, request, RpcReply::Delivered)
            .await;
    }

    /// The device answered. A persistent RPC keeps a non-JSON answer as `{"error": "<raw>"}`.
    pub async fn replied(
        &self,
        tenant: TenantId,
        device: DeviceId,
        request: &RpcRequest,
        body: String,
    ) {
        if request.persistent {
            let response = stored_response(&body);
            self.transition(request, &OPEN_TWOWAY, Successful, response.as_ref(), None)
                .await;
        }
        self.reply(tenant, device, request, RpcReply::Ok { body })
            .await;
    }

    /// The request did not reach the device on this session; what becomes of a persistent RPC
    /// depends on why (a non-persistent caller just waits for its expiration):
    /// * [`Undelivered::AckTimeout`]: TIMEOUT with one more retry counted, announced again so a
    ///   live session sends it anew; FAILED once `min(request retries, max_retries)` are used up.
    /// * [`Undelivered::NotSent`], [`Undelivered::ConnectionLost`]: back to QUEUED with the retries
    ///   unchanged, announced so a live session takes it. A two-way RPC already DELIVERED stays so.
    pub async fn undelivered(&self, request: &RpcRequest, cause: Undelivered) {
        tracing::debug!(rpc = %request.rpc, ?cause, "RPC not delivered on this session");
        if !request.persistent {
            return;
        }
        let rpc = match self.store.get_rpc(None, request.rpc).await {
            Ok(Some(rpc)) => rpc,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(rpc = %request.rpc, error = %e, "persistent RPC state not read");
                return;
            }
        };
        let offered = match cause {
            Undelivered::NotSent | Undelivered::ConnectionLost => {
                self.transition(request, &UNDELIVERED, Queued, None, None)
                    .await
            }
            Undelivered::AckTimeout => {
                let cap = i64::from(self.max_retries);
                let allowed = rpc.request["retries"]
                    .as_i64()
                    .map_or(cap, |r| r.clamp(0, cap));
                if i64::from(rpc.retries) >= allowed {
                    self.transition(request, &UNDELIVERED, Failed, None, None)
                        .await;
                    return;
                }
                let retries = Some(rpc.retries.saturating_add(1));
                self.transition(request, &UNDELIVERED, Timeout, None, retries)
                    .await
            }
        };
        if offered {
            // A live session (if any) picks it up again.
            let event = Event::RpcPending {
                device: rpc.device_id.0,
            };
            if let Err(e) = self.bus.publish(event).await {
                tracing::warn!(rpc = %request.rpc, error = %e, "undelivered RPC not announced again");
            }
        }
    }

    /// The request expired before it could be sent.
    pub async fn expired(&self, request: &RpcRequest) {
        tracing::debug!(rpc = %request.rpc, "RPC expired before delivery");
        if request.persistent {
            self.transition(request, open_states(request), Expired, None, None)
                .await;
        }
    }

    /// Persistent RPCs stored for the device and not delivered yet (QUEUED, SENT, TIMEOUT), oldest
    /// first; overdue ones are marked EXPIRED instead.
    pub async fn queued_for(&self, device: DeviceId) -> Vec<RpcRequest> {
        let rpcs = match self.store.pending_rpcs(device).await {
            Ok(rpcs) => rpcs,
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "persistent RPCs not loaded");
                return Vec::new();
            }
        };
        let now = now_ms();
        let mut out = Vec::with_capacity(rpcs.len());
        for rpc in rpcs {
            let request = request_of(&rpc);
            if rpc.expiration_time <= now {
                self.expired(&request).await;
            } else {
                out.push(request);
            }
        }
        out
    }

    /// Marks every overdue open persistent RPC EXPIRED (the sweeper).
    pub async fn expire_overdue(&self) {
        match self.store.expire_rpcs(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(count = n, "persistent RPCs expired"),
            Err(e) => tracing::warn!(error = %e, "persistent RPC expiry sweep failed"),
        }
    }

    /// Answers a device's client-side RPC (rule node "rpc call reply").
    pub async fn reply_to_client(
        &self,
        device: DeviceId,
        session: u64,
        request_id: String,
        body: String,
    ) -> Result<(), BusError> {
        self.bus
            .publish(Event::ToDevice {
                device: device.0,
                downlink: Downlink::ClientRpcReply {
                    session,
                    request_id,
                    body,
                },
            })
            .await
    }

    async fn transition(
        &self,
        request: &RpcRequest,
        from: &[RpcStatus],
        to: RpcStatus,
        response: Option<&Value>,
        retries: Option<i32>,
    ) -> bool {
        let change = RpcTransition {
            from,
            to,
            response,
            retries,
        };
        match self.store.transition_rpc(request.rpc, &change).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(rpc = %request.rpc, status = to.as_str(), error = %e, "persistent RPC state not saved");
                false
            }
        }
    }

    async fn reply(
        &self,
        tenant: TenantId,
        device: DeviceId,
        request: &RpcRequest,
        reply: RpcReply,
    ) {
        let event = Event::RpcReply {
            tenant: tenant.0,
            device: device.0,
            rpc: request.rpc,
            reply,
        };
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(rpc = %request.rpc, error = %e, "RPC outcome not passed to the waiting caller");
        }
    }
}

/// States in which the RPC is not finished: a delivered one-way RPC is done.
fn open_states(request: &RpcRequest) -> &'static [RpcStatus] {
    if request.oneway {
        &UNDELIVERED
    } else {
        &OPEN_TWOWAY
    }
}

/// The stored form of a device's answer: its JSON, `{"error": raw}` for other text, None when empty.
fn stored_response(body: &str) -> Option<Value> {
    if body.trim().is_empty() {
        return None;
    }
    Some(serde_json::from_str(body).unwrap_or_else(|_| json!({ "error": body })))
}

/// A stored RPC as the session sends it (the session allocates the request id).
pub fn request_of(rpc: &Rpc) -> RpcRequest {
    let text = |k: &str| rpc.request[k].as_str().unwrap_or_default().to_owned();
    RpcRequest {
        rpc: rpc.id,
        request_id: 0,
        method: text("method"),
        params: text("params"),
        oneway: rpc.request["oneway"].as_bool().unwrap_or(false),
        persistent: true,
        expiration_time: rpc.expiration_time,
        traceparent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_stored_as_json() {
        assert_eq!(stored_response(r#"{"ok":true}"#), Some(json!({"ok": true})));
        assert_eq!(stored_response("ok"), Some(json!({"error": "ok"})));
        assert_eq!(stored_response("  "), None);
    }
}
