//! Gateway sessions: the sessions of the devices behind one gateway connection. Each device
//! behind a gateway is a `DeviceSession` of its own (registry entry, activity, RPC state) whose
//! traffic goes out on the gateway's connection; `uplink` serves the `v1/gateway/*` topics.

mod payload;
mod uplink;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::session::{DeviceSession, Granted, Role};
use super::uplink::Outcome;
use crate::domain::{Device, EntityId, Msg, MsgType};
use crate::state::AppState;
use crate::transport::limits::SessionLimits;

/// Where server→device traffic for the devices behind a gateway is published.
pub const ATTRIBUTES_TOPIC: &str = "v1/gateway/attributes";
pub const RPC_TOPIC: &str = "v1/gateway/rpc";
pub const ATTRIBUTE_RESPONSE_TOPIC: &str = "v1/gateway/attributes/response";
pub const DISCONNECT_TOPIC: &str = "v1/gateway/disconnect";

/// MQTT 5 gateways are told why one of their devices was dropped (`v1/gateway/disconnect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// 150: a rate limit refused the device's message.
    RateLimited = 150,
}

/// The gateway side of a gateway's session.
pub struct Gateway {
    /// Sessions of the devices behind the gateway, by name (at most
    /// `limits.max_devices_per_gateway`).
    devices: RefCell<HashMap<String, Rc<DeviceSession>>>,
    /// The buckets all its devices share (`limits.gateway_*`).
    limits: Arc<SessionLimits>,
}

/// A device's side of its session behind a gateway.
pub struct SubDevice {
    /// The name the gateway knows the device by.
    pub name: String,
    gateway: Weak<DeviceSession>,
    /// When the gateway last sent something for the device.
    last_seen: Cell<Instant>,
}

impl Gateway {
    pub fn new(state: &Arc<AppState>, gateway: crate::domain::DeviceId) -> Self {
        Self {
            devices: RefCell::new(HashMap::new()),
            limits: state.gateway_limits.of(gateway),
        }
    }

    /// Devices behind the gateway with a session now.
    fn connected(&self) -> usize {
        self.devices.borrow().len()
    }
}

impl DeviceSession {
    /// The gateway side of a gateway's session.
    pub fn gateway(&self) -> Option<&Gateway> {
        match &self.role {
            Role::Gateway(gw) => Some(gw),
            _ => None,
        }
    }

    /// The device side of a session behind a gateway.
    pub fn sub_device(&self) -> Option<&SubDevice> {
        match &self.role {
            Role::SubDevice(sub) => Some(sub),
            _ => None,
        }
    }

    /// The gateway's session, for a device behind one.
    fn parent(&self) -> Option<Rc<DeviceSession>> {
        self.sub_device().and_then(|s| s.gateway.upgrade())
    }

    /// Where shared-attribute updates go: the device's own subscription, or for a device behind
    /// a gateway the gateway's topic (subscribed or not, as in ThingsBoard) at the QoS the
    /// gateway subscribed with.
    pub(super) fn attributes_grant(&self) -> Option<Granted> {
        match self.parent() {
            Some(gw) => Some(gw.gateway_grant(ATTRIBUTES_TOPIC)),
            None if self.sub_device().is_some() => None,
            None => self.attributes_sub.borrow().clone(),
        }
    }

    /// Where server-side RPCs go (as `attributes_grant`).
    pub(super) fn rpc_grant(&self) -> Option<Granted> {
        match self.parent() {
            Some(gw) => Some(gw.gateway_grant(RPC_TOPIC)),
            None if self.sub_device().is_some() => None,
            None => self.rpc_sub.borrow().clone(),
        }
    }

    fn gateway_grant(&self, topic: &str) -> Granted {
        Granted {
            filter: topic.to_owned(),
            qos1: self.response_qos(topic),
        }
    }

    /// The body of a shared-attribute update: the device's own, or wrapped for its gateway as
    /// `{"device": name, "data": update}`.
    pub(super) fn attributes_body(&self, update: String) -> String {
        match self.sub_device() {
            Some(sub) => {
                let data: Value = serde_json::from_str(&update).unwrap_or(Value::String(update));
                json!({"device": sub.name, "data": data}).to_string()
            }
            None => update,
        }
    }

    /// The body of a server-side RPC sent under `id`: `{"method", "params"}` for the device, or
    /// `{"device": name, "data": {"id", "method", "params"}}` for its gateway.
    pub(super) fn rpc_body(&self, req: &crate::bus::RpcRequest, id: i32) -> String {
        match self.sub_device() {
            Some(sub) => json!({
                "device": sub.name,
                "data": crate::transport::uplink::rpc_request_json(req, Some(id)),
            })
            .to_string(),
            None => crate::transport::uplink::rpc_request_json(req, None).to_string(),
        }
    }

    /// The registry closed this session (take-over, administrative change, shutdown): a device
    /// behind a gateway leaves the gateway's session, which stays; a device closes its connection.
    pub(super) fn close_session(&self, reason: crate::bus::CloseReason) {
        self.closed.set(true);
        match self.sub_device() {
            Some(sub) => {
                if let Some(gw) = sub.gateway.upgrade() {
                    gw.detach(&sub.name, self.session);
                }
            }
            None => self.sink.close(reason),
        }
    }

    /// Removes the session of the device `name` from this gateway's, if it is session `session`.
    fn detach(&self, name: &str, session: u64) {
        let Some(gw) = self.gateway() else { return };
        let removed = {
            let mut devices = gw.devices.borrow_mut();
            match devices.get(name) {
                Some(s) if s.session == session => devices.remove(name),
                _ => None,
            }
        };
        // Dropped outside the borrow: its end (registry, DISCONNECT_EVENT) runs in `Drop`.
        drop(removed);
    }

    /// A PINGREQ: the session's device is active; a gateway with `overwriteActivityTime` keeps
    /// its devices active too, and devices silent for the inactivity timeout leave a gateway's
    /// session.
    pub fn ping(&self) {
        let device_state = &self.state.services.device_state;
        device_state.activity(&self.device);
        if let Some(gw) = self.gateway()
            && crate::services::gateway::overwrites_activity_time(&self.device)
        {
            for sub in gw.devices.borrow().values() {
                device_state.activity(&sub.device);
                if let Some(s) = sub.sub_device() {
                    s.last_seen.set(Instant::now());
                }
            }
        }
        self.expire_idle();
    }

    /// The session of the device `name` behind this gateway: the one open, or a new one, the
    /// device found or created in the gateway's tenant (profile `type_name` for a new device).
    /// Devices silent for the inactivity timeout are dropped first.
    async fn sub_session(
        self: &Rc<Self>,
        name: &str,
        type_name: &str,
    ) -> Result<Rc<DeviceSession>, Outcome> {
        let Some(gw) = self.gateway() else {
            return Err(Outcome::Failed("not a gateway session".to_owned()));
        };
        if let Some(sess) = gw.devices.borrow().get(name).cloned() {
            if let Some(sub) = sess.sub_device() {
                sub.last_seen.set(Instant::now());
            }
            return Ok(sess);
        }
        self.expire_idle();
        let max = self.state.config.limits.max_devices_per_gateway;
        if gw.connected() >= max {
            tracing::warn!(gateway = %self.device.id, max, "the gateway has {max} devices connected (limits.max_devices_per_gateway); '{name}' refused");
            return Err(Outcome::Malformed(format!(
                "more than {max} devices behind one gateway (limits.max_devices_per_gateway)"
            )));
        }
        let state = self.state.clone();
        let gateway = self.device.clone();
        let (name_owned, type_owned) = (name.to_owned(), type_name.to_owned());
        let found = self
            .state
            .rt
            .spawn(async move {
                state
                    .services
                    .gateway_device(&gateway, &name_owned, &type_owned)
                    .await
            })
            .await;
        let sub = match found {
            Ok(Ok(sub)) => sub,
            Ok(Err(e)) => {
                tracing::warn!(gateway = %self.device.id, name, error = %e, "device behind the gateway not found or created");
                return Err(Outcome::Failed(e.to_string()));
            }
            Err(e) => return Err(Outcome::Failed(format!("device lookup failed: {e}"))),
        };
        if sub.created {
            self.announce_created(&sub.device);
        }
        // Another message for the same device may have opened its session meanwhile.
        if let Some(sess) = gw.devices.borrow().get(name).cloned() {
            return Ok(sess);
        }
        Ok(self.attach(gw, name, sub.device))
    }

    /// Opens the session of `device` behind this gateway: registered (closing its other
    /// sessions, on any node), CONNECT_EVENT, persistent RPCs loaded.
    fn attach(self: &Rc<Self>, gw: &Gateway, name: &str, device: Device) -> Rc<DeviceSession> {
        let device = std::sync::Arc::new(device);
        let address = super::downlink::address(self.state.config.mqtt.outbound_queue);
        let flags = address.flags();
        let session =
            self.state
                .sessions
                .register_mailbox(device.id, Some(device.profile_id), address);
        super::session::announce_opened(&self.state, &device, session);
        tracing::debug!(gateway = %self.device.id, device = %device.id, name, "device connected through its gateway");
        let role = Role::SubDevice(SubDevice {
            name: name.to_owned(),
            gateway: Rc::downgrade(self),
            last_seen: Cell::new(Instant::now()),
        });
        let sess = Rc::new(DeviceSession::new(
            self.state.clone(),
            device,
            self.settings.clone(),
            (session, flags),
            self.sink.clone(),
            gw.limits.clone(),
            role,
        ));
        super::downlink::attach(&sess);
        gw.devices
            .borrow_mut()
            .insert(name.to_owned(), sess.clone());
        sess.rpc_subscribed();
        sess
    }

    /// ENTITY_CREATED of a device the gateway created, into the rules (metadata `gatewayId`).
    fn announce_created(&self, device: &Device) {
        let data = json!({
            "id": {"entityType": "DEVICE", "id": device.id.0},
            "createdTime": device.created_time,
            "tenantId": {"entityType": "TENANT", "id": device.tenant_id.0},
            "customerId": device.customer_id.map(|c| json!({"entityType": "CUSTOMER", "id": c.0})),
            "name": device.name,
            "type": device.profile_name,
            "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": device.profile_id.0},
            "additionalInfo": device.additional_info,
        });
        let mut msg = Msg::new(
            MsgType::EntityCreated,
            device.tenant_id,
            EntityId::Device(device.id),
            data,
        );
        msg.customer = device.customer_id;
        for (k, v) in [
            ("gatewayId", self.device.id.0.to_string()),
            ("entityName", device.name.clone()),
            ("entityType", "DEVICE".to_owned()),
            ("deviceName", device.name.clone()),
            ("deviceType", device.profile_name.clone()),
        ] {
            msg.metadata.insert(k.to_owned(), v);
        }
        let state = self.state.clone();
        self.state.rt.spawn(async move {
            if let Err(e) = state.ingest(vec![msg]).await {
                tracing::warn!(error = %e, "ENTITY_CREATED of a gateway's device not processed");
            }
        });
    }

    /// `v1/gateway/disconnect` or the gateway leaving: the device's session behind it ends.
    fn disconnect_sub(&self, name: &str) {
        let Some(gw) = self.gateway() else { return };
        let removed = gw.devices.borrow_mut().remove(name);
        drop(removed);
    }

    /// Drops the sessions of devices the gateway has sent nothing for during the inactivity
    /// timeout (§9.7; PINGREQs count with `overwriteActivityTime`).
    fn expire_idle(&self) {
        let Some(gw) = self.gateway() else { return };
        let timeout = std::time::Duration::from_millis(
            u64::try_from(self.state.config.rpc.inactivity_timeout_ms).unwrap_or(u64::MAX),
        );
        let now = Instant::now();
        let idle: Vec<Rc<DeviceSession>> = {
            let mut devices = gw.devices.borrow_mut();
            let names: Vec<String> = devices
                .iter()
                .filter(|(_, s)| {
                    s.sub_device()
                        .is_some_and(|sub| now.duration_since(sub.last_seen.get()) >= timeout)
                })
                .map(|(n, _)| n.clone())
                .collect();
            names.iter().filter_map(|n| devices.remove(n)).collect()
        };
        if !idle.is_empty() {
            tracing::debug!(gateway = %self.device.id, devices = idle.len(), "devices behind the gateway silent for the inactivity timeout; their sessions end");
        }
    }

    /// MQTT 5: tells the gateway that its device `name` was dropped, and why. Written before the
    /// connection closes (QoS 0, in order with the DISCONNECT).
    fn notify_dropped(&self, name: &str, notice: Notice) {
        if !matches!(self.sink, super::sink::Sink::V5(_)) {
            return;
        }
        let body = json!({"device": name, "reason": notice as u8}).to_string();
        if let Err(e) = self
            .sink
            .publish_at_most_once(DISCONNECT_TOPIC, body.into())
        {
            tracing::debug!(gateway = %self.device.id, error = %e, "disconnect notice not written");
        }
    }
}
