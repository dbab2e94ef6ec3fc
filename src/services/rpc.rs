//! Server-side and client-side RPC: sending toward a device through the bus, completing the waiting
//! caller, and the hooks where persistent RPCs record their state.

use std::sync::Arc;

use crate::bus::{Bus, BusError, Downlink, Event, RpcReply, RpcRequest, RpcWaiters};
use crate::domain::DeviceId;

pub struct RpcService {
    pub bus: Arc<dyn Bus>,
    pub waiters: Arc<RpcWaiters>,
}

impl RpcService {
    /// Hands a server-side RPC to whichever node holds the device's session (rule node "rpc call request").
    pub async fn send(&self, device: DeviceId, request: RpcRequest) -> Result<(), BusError> {
        self.bus
            .publish(Event::ToDevice {
                device: device.0,
                downlink: Downlink::Rpc(request),
            })
            .await
    }

    /// The request reached the device (PUBACK, or written at QoS 0).
    pub async fn delivered(&self, request: &RpcRequest) {
        self.reply(request, RpcReply::Delivered).await;
    }

    /// The device answered.
    pub async fn replied(&self, request: &RpcRequest, body: String) {
        self.reply(request, RpcReply::Ok { body }).await;
    }

    /// The request could not be delivered on this session (no PUBACK in time, session closed).
    pub async fn undelivered(&self, request: &RpcRequest) {
        tracing::debug!(rpc = %request.rpc, "RPC not delivered on this session");
    }

    /// The request expired before it could be sent.
    pub async fn expired(&self, request: &RpcRequest) {
        tracing::debug!(rpc = %request.rpc, "RPC expired before delivery");
    }

    /// Persistent RPCs stored for the device and not finished yet, oldest first.
    pub async fn queued_for(&self, _device: DeviceId) -> Vec<RpcRequest> {
        Vec::new()
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

    async fn reply(&self, request: &RpcRequest, reply: RpcReply) {
        let event = Event::RpcReply {
            rpc: request.rpc,
            reply,
        };
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(rpc = %request.rpc, error = %e, "RPC outcome not passed to the waiting caller");
        }
    }
}
