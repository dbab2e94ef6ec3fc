//! The MQTT settings of device profiles as sessions use them, compiled once per saved version of
//! a profile (protobuf schemas included) and shared by the sessions of its devices. Bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::domain::profile::MqttSettings;
use crate::domain::{Device, DeviceProfileId, StorageError};
use crate::storage::DynStore;

/// Profiles whose compiled settings are kept; past it the cache starts afresh.
const MAX_PROFILES: usize = 4096;

#[derive(Default)]
pub struct ProfileSettings {
    /// By profile: the profile data the settings were compiled from, and the settings.
    compiled: Mutex<HashMap<DeviceProfileId, (Value, Arc<MqttSettings>)>>,
}

impl ProfileSettings {
    /// The settings of the device's profile as stored now. The profile is read on every call
    /// (a saved change applies to the next session); compiling happens only when it changed.
    pub async fn of(
        &self,
        store: &DynStore,
        device: &Device,
    ) -> Result<Arc<MqttSettings>, StorageError> {
        let Some(profile) = store
            .get_profile(device.tenant_id, device.profile_id)
            .await?
        else {
            return Ok(Arc::default());
        };
        if let Some((data, settings)) = self.lock().get(&profile.id)
            && *data == profile.profile_data
        {
            return Ok(settings.clone());
        }
        let settings = MqttSettings::of(&profile.profile_data).map_err(|e| {
            StorageError::Invalid(format!("device profile '{}': {e}", profile.name))
        })?;
        let settings = Arc::new(settings);
        let mut compiled = self.lock();
        if compiled.len() >= MAX_PROFILES {
            compiled.clear();
        }
        compiled.insert(profile.id, (profile.profile_data, settings.clone()));
        Ok(settings)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DeviceProfileId, (Value, Arc<MqttSettings>)>> {
        self.compiled.lock().unwrap_or_else(|e| e.into_inner())
    }
}
