//! The last messages of each device, kept for dry runs of a candidate chain: a bounded ring per
//! device (`engine.recorded_messages`, 0 keeps none) over a bounded number of devices
//! (`engine.recorded_devices`; the device recorded first is forgotten first).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{DeviceId, EntityId, Msg, MsgType, TenantId};

/// A message as recorded (and as a dry run takes it: over REST, or from a file for the CLI).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedMsg {
    #[serde(default)]
    pub ts: i64,
    #[serde(rename = "type")]
    pub msg_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl RecordedMsg {
    pub fn of(msg: &Msg) -> Self {
        Self {
            ts: msg.ts,
            msg_type: msg.msg_type.as_str().to_owned(),
            data: msg.data().clone(),
            metadata: (*msg.metadata).clone(),
        }
    }

    /// The message again, from `device` of `tenant`.
    pub fn to_msg(&self, tenant: TenantId, device: DeviceId) -> Msg {
        let mut msg = Msg::new(
            MsgType::parse(&self.msg_type),
            tenant,
            EntityId::Device(device),
            self.data.clone(),
        );
        if self.ts > 0 {
            msg.ts = self.ts;
        }
        msg.metadata = self.metadata.clone().into();
        msg
    }
}

/// The messages themselves are kept (a copy shares their metadata and typed values, so recording
/// allocates nothing per message); they become `RecordedMsg` when read.
#[derive(Default)]
struct Rings {
    by_device: HashMap<Uuid, VecDeque<Msg>>,
    order: VecDeque<Uuid>,
}

pub struct RecentMessages {
    per_device: usize,
    devices: usize,
    rings: Mutex<Rings>,
}

impl RecentMessages {
    pub fn new(per_device: usize, devices: usize) -> Self {
        Self {
            per_device,
            devices: devices.max(1),
            rings: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_device > 0
    }

    /// Keeps a device's message (nothing when recording is off or the originator is no device).
    pub fn record(&self, msg: &Msg) {
        let EntityId::Device(device) = msg.originator else {
            return;
        };
        if !self.enabled() {
            return;
        }
        let recorded = msg.clone();
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let rings = &mut *rings;
        if !rings.by_device.contains_key(&device.0) {
            if rings.order.len() >= self.devices
                && let Some(oldest) = rings.order.pop_front()
            {
                rings.by_device.remove(&oldest);
            }
            rings.order.push_back(device.0);
        }
        let ring = rings.by_device.entry(device.0).or_default();
        if ring.len() >= self.per_device {
            ring.pop_front();
        }
        ring.push_back(recorded);
    }

    /// The device's recorded messages, oldest first.
    pub fn of(&self, device: DeviceId) -> Vec<RecordedMsg> {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings
            .by_device
            .get(&device.0)
            .map(|r| r.iter().map(RecordedMsg::of).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(device: Uuid, n: i64) -> Msg {
        Msg::new(
            MsgType::PostTelemetryRequest,
            TenantId(Uuid::nil()),
            EntityId::Device(DeviceId(device)),
            serde_json::json!({ "n": n }),
        )
    }

    #[test]
    fn rings_are_bounded_per_device_and_in_devices() {
        let recent = RecentMessages::new(2, 2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for n in 0..3 {
            recent.record(&msg(a, n));
        }
        let kept: Vec<_> = recent
            .of(DeviceId(a))
            .iter()
            .map(|m| m.data["n"].clone())
            .collect();
        assert_eq!(kept, [1, 2]);
        recent.record(&msg(b, 0));
        recent.record(&msg(c, 0));
        assert!(
            recent.of(DeviceId(a)).is_empty(),
            "the first device is forgotten"
        );
        assert_eq!(recent.of(DeviceId(c)).len(), 1);
        let off = RecentMessages::new(0, 2);
        off.record(&msg(a, 0));
        assert!(off.of(DeviceId(a)).is_empty());
    }
}
