//! REST callers of server-side RPCs waiting on this node, keyed by tenant, device and RPC id: a reply
//! completes a call only when all three match, so another tenant (or another device) can neither
//! complete nor replace it. A caller that goes away takes its waiter with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::{RpcReply, RpcRequest};
use crate::domain::{DeviceId, TenantId};

/// Who a call is for: its tenant, its device, its RPC id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaiterKey {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub rpc: Uuid,
}

/// A call with this key is already waiting.
#[derive(Debug, thiserror::Error)]
#[error("an RPC with requestUUID {0} is already in progress")]
pub struct Duplicate(pub Uuid);

#[derive(Default)]
pub struct RpcWaiters {
    waiting: Mutex<HashMap<WaiterKey, Waiter>>,
}

struct Waiter {
    request: RpcRequest,
    delivered: bool,
    tx: oneshot::Sender<RpcReply>,
}

/// A registered caller: its reply arrives on `reply`; dropping it (the caller gave up or went
/// away) removes the waiter.
pub struct Waiting {
    pub reply: oneshot::Receiver<RpcReply>,
    key: WaiterKey,
    waiters: Arc<RpcWaiters>,
}

impl Waiting {
    /// The time ran out: removes the waiter and tells whether its request had been delivered.
    pub fn give_up(self) -> bool {
        self.waiters
            .lock()
            .remove(&self.key)
            .is_some_and(|w| w.delivered)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.key);
    }
}

impl RpcWaiters {
    /// Registers a caller; a one-way call completes on delivery, a two-way call on the reply.
    /// The same tenant, device and RPC id waiting already is refused.
    pub fn wait(
        self: &Arc<Self>,
        tenant: TenantId,
        device: DeviceId,
        request: RpcRequest,
    ) -> Result<Waiting, Duplicate> {
        let key = WaiterKey {
            tenant,
            device,
            rpc: request.rpc,
        };
        let (tx, reply) = oneshot::channel();
        {
            let mut map = self.lock();
            if map.contains_key(&key) {
                return Err(Duplicate(key.rpc));
            }
            let waiter = Waiter {
                request,
                delivered: false,
                tx,
            };
            map.insert(key, waiter);
        }
        Ok(Waiting {
            reply,
            key,
            waiters: self.clone(),
        })
    }

    /// Callers waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reply (or delivery) for the call with exactly this key.
    pub(super) fn complete(&self, key: WaiterKey, reply: RpcReply) {
        let mut map = self.lock();
        let Some(waiter) = map.get_mut(&key) else {
            return;
        };
        if reply == RpcReply::Delivered && !waiter.request.oneway {
            waiter.delivered = true;
            return;
        }
        if let Some(waiter) = map.remove(&key) {
            let _ = waiter.tx.send(reply);
        }
    }

    /// Requests not delivered yet and not expired at `now` (epoch ms), of `device` or of every
    /// device, to offer again.
    pub(super) fn undelivered(
        &self,
        device: Option<DeviceId>,
        now: i64,
    ) -> Vec<(DeviceId, RpcRequest)> {
        self.lock()
            .iter()
            .filter(|(k, _)| device.is_none_or(|d| k.device == d))
            .filter(|(_, w)| !w.delivered && w.request.expiration_time > now)
            .map(|(k, w)| (k.device, w.request.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WaiterKey, Waiter>> {
        // Single inserts and removes: a panic elsewhere cannot leave the map inconsistent.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(rpc: Uuid) -> RpcRequest {
        RpcRequest {
            rpc,
            request_id: 0,
            method: "m".to_owned(),
            params: "{}".to_owned(),
            oneway: false,
            persistent: false,
            expiration_time: i64::MAX,
            traceparent: None,
        }
    }

    fn reply(body: &str) -> RpcReply {
        RpcReply::Ok {
            body: body.to_owned(),
        }
    }

    #[test]
    fn only_the_same_tenant_and_device_complete_a_call() {
        let waiters = Arc::new(RpcWaiters::default());
        let (tenant, device, rpc) = (TenantId::new(), DeviceId::new(), Uuid::new_v4());
        let mut mine = waiters.wait(tenant, device, request(rpc)).expect("first");
        // Another tenant with the same device and RPC id, or another device of the tenant.
        for (t, d) in [(TenantId::new(), device), (tenant, DeviceId::new())] {
            let key = WaiterKey {
                tenant: t,
                device: d,
                rpc,
            };
            waiters.complete(key, reply("forged"));
        }
        assert!(mine.reply.try_recv().is_err(), "not completed by others");
        // Another tenant registering the same RPC id does not replace the call.
        let other_tenant = TenantId::new();
        let theirs = waiters
            .wait(other_tenant, device, request(rpc))
            .expect("separate key");
        assert_eq!(waiters.len(), 2);
        let key = WaiterKey {
            tenant,
            device,
            rpc,
        };
        waiters.complete(key, reply("mine"));
        assert_eq!(mine.reply.try_recv(), Ok(reply("mine")));
        drop(theirs);
        assert!(waiters.is_empty());
    }

    #[test]
    fn a_duplicate_is_refused_and_a_dropped_caller_leaves_nothing() {
        let waiters = Arc::new(RpcWaiters::default());
        let (tenant, device, rpc) = (TenantId::new(), DeviceId::new(), Uuid::new_v4());
        let first = waiters.wait(tenant, device, request(rpc)).expect("first");
        assert!(waiters.wait(tenant, device, request(rpc)).is_err());
        drop(first);
        assert!(waiters.is_empty(), "caller gone, waiter gone");
        let again = waiters
            .wait(tenant, device, request(rpc))
            .expect("free again");
        assert!(!again.give_up(), "not delivered");
        assert!(waiters.is_empty());
    }

    #[test]
    fn delivery_marks_a_twoway_call_and_completes_a_oneway_call() {
        let waiters = Arc::new(RpcWaiters::default());
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let twoway = request(Uuid::new_v4());
        let mut oneway = request(Uuid::new_v4());
        oneway.oneway = true;
        let (k2, k1) = (
            WaiterKey {
                tenant,
                device,
                rpc: twoway.rpc,
            },
            WaiterKey {
                tenant,
                device,
                rpc: oneway.rpc,
            },
        );
        let w2 = waiters.wait(tenant, device, twoway).expect("two-way");
        let mut w1 = waiters.wait(tenant, device, oneway).expect("one-way");
        assert_eq!(waiters.undelivered(Some(device), 0).len(), 2);
        waiters.complete(k2, RpcReply::Delivered);
        waiters.complete(k1, RpcReply::Delivered);
        assert_eq!(w1.reply.try_recv(), Ok(RpcReply::Delivered));
        assert!(waiters.undelivered(None, 0).is_empty());
        assert!(w2.give_up(), "delivered, not answered");
    }
}
