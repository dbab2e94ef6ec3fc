//! Device connectivity: CONNECT/DISCONNECT/ACTIVITY/INACTIVITY events into the rule engine and the
//! device's `active` state and last connect/disconnect/activity times.

use crate::storage::Device;

#[derive(Default)]
pub struct DeviceStateService {}

impl DeviceStateService {
    pub async fn connected(&self, device: &Device) {
        tracing::trace!(device = %device.id, "connected");
    }

    pub async fn disconnected(&self, device: &Device) {
        tracing::trace!(device = %device.id, "disconnected");
    }
}
