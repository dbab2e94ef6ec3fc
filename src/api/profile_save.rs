//! `POST /api/deviceProfile`: create (no `id`) or update a device profile from ThingsBoard's
//! DeviceProfile JSON; `profileData` is checked and completed (`domain::profile::normalise`).

use serde_json::{Map, Value};
use uuid::Uuid;

use super::State as AppStateRef;
use super::devices::id_field;
use super::error::ApiError;
use super::ota::check_assignments;
use crate::domain::profile::normalise;
use crate::domain::{DeviceProfile, DeviceProfileId, PageQuery, SortOrder, TenantId, now_ms};
use crate::storage::DEFAULT_PROFILE_TAKEN;

/// The fields of a DeviceProfile body this server honours.
struct ProfileInput {
    id: Option<Uuid>,
    name: String,
    description: Option<String>,
    is_default: bool,
    profile_data: Value,
    provision_device_key: Option<String>,
    firmware_id: Option<Uuid>,
    software_id: Option<Uuid>,
}

fn text(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::BadRequest(format!(
            "Invalid value of '{name}': a string is expected"
        ))),
    }
}

fn parse(body: &Value) -> Result<ProfileInput, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
    let name = text(obj, "name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("Device profile name should be specified!"))?;
    if let Some(kind) = text(obj, "type")?
        && kind != "DEFAULT"
    {
        return Err(ApiError::BadRequest(format!(
            "Device profile type {kind} is not supported; use DEFAULT"
        )));
    }
    let is_default = match obj.get("default") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("Invalid value of 'default'")),
    };
    let transport_type = text(obj, "transportType")?;
    let provision_type = text(obj, "provisionType")?;
    // The top-level transport type names the transport when profileData leaves it out.
    let mut data = obj.get("profileData").cloned().unwrap_or(Value::Null);
    if let (Some(t), Value::Object(d)) = (&transport_type, &mut data)
        && d.get("transportConfiguration").is_none_or(Value::is_null)
    {
        d.insert(
            "transportConfiguration".into(),
            serde_json::json!({"type": t}),
        );
    }
    if let (Some(t), Value::Null) = (&transport_type, &data) {
        data = serde_json::json!({"transportConfiguration": {"type": t}});
    }
    let profile_data =
        normalise(Some(&data), provision_type.as_deref()).map_err(ApiError::BadRequest)?;
    if let Some(t) = transport_type {
        let saved = profile_data.pointer("/transportConfiguration/type");
        if saved.and_then(Value::as_str) != Some(t.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "Device profile transportType {t} differs from its transportConfiguration type!"
            )));
        }
    }
    // A chain profile is found by its CA certificate's hash, as in ThingsBoard.
    let provision_device_key =
        match crate::domain::profile::x509_chain::provision_key(&profile_data) {
            Some(key) => Some(key),
            None => text(obj, "provisionDeviceKey")?.filter(|k| !k.trim().is_empty()),
        };
    Ok(ProfileInput {
        id: id_field(obj, "id")?,
        name,
        description: text(obj, "description")?,
        is_default,
        profile_data,
        provision_device_key,
        firmware_id: id_field(obj, "firmwareId")?,
        software_id: id_field(obj, "softwareId")?,
    })
}

/// Creates or updates the profile; answers it as stored.
pub async fn save(
    state: &AppStateRef,
    tenant: TenantId,
    body: &Value,
) -> Result<DeviceProfile, ApiError> {
    let input = parse(body)?;
    let store = &state.services.store;
    let Some(id) = input.id else {
        let mut profile = DeviceProfile {
            description: input.description,
            profile_data: input.profile_data,
            provision_device_key: input.provision_device_key,
            ..DeviceProfile::new(tenant, &input.name, input.is_default, now_ms())
        };
        // A new profile has no packages yet: any package given is of another profile (refused).
        (profile.firmware_id, profile.software_id) = check_assignments(
            state,
            tenant,
            (input.firmware_id, input.software_id),
            profile.id,
        )
        .await?;
        store.create_profile(&profile).await?;
        return Ok(profile);
    };
    let id = DeviceProfileId(id);
    let old = super::profiles::owned_profile(state, tenant, id).await?;
    // The default flag moves with `POST /api/deviceProfile/{id}/default` only.
    if input.is_default && !old.is_default {
        return Err(ApiError::bad_request(DEFAULT_PROFILE_TAKEN));
    }
    let packages = (input.firmware_id, input.software_id);
    let (firmware_id, software_id) = check_assignments(state, tenant, packages, id).await?;
    let new = DeviceProfile {
        name: input.name,
        description: input.description,
        profile_data: input.profile_data,
        provision_device_key: input.provision_device_key,
        firmware_id,
        software_id,
        ..old.clone()
    };
    if new.transport_type() != old.transport_type() && devices_use(state, &old).await? {
        return Err(ApiError::bad_request(
            "Can't change device profile transport type because devices referenced it!",
        ));
    }
    store.update_profile(&new).await?;
    // Sessions run under the profile's transport settings; its packages are pushed instead.
    let settings_changed = DeviceProfile {
        firmware_id: old.firmware_id,
        software_id: old.software_id,
        ..new.clone()
    } != old;
    if settings_changed {
        super::credentials::close_profile_sessions(state, new.id).await;
    }
    crate::services::ota_state::profile_saved(&state.services, &old, &new);
    Ok(new)
}

/// Whether any device of the tenant uses the profile.
async fn devices_use(state: &AppStateRef, profile: &DeviceProfile) -> Result<bool, ApiError> {
    let query = PageQuery {
        page_size: 1,
        page: 0,
        text_search: None,
        sort_property: None,
        sort_order: SortOrder::Asc,
    };
    let page = state
        .services
        .store
        .page_devices(profile.tenant_id, Some(&profile.name), &query)
        .await?;
    Ok(page.total_elements > 0)
}
