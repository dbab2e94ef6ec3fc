//! The server's side of a firmware or software update (ThingsBoard's OTA package state service):
//! when the package a device should run changes (its own assignment, its profile's, or its
//! profile), the target is recorded as telemetry (`target_fw_*`, `fw_state` QUEUED then
//! INITIATED) and the package's `fw_*` SHARED attributes are saved and pushed to the device on
//! whichever node holds its session; with nothing assigned any more those attributes are deleted
//! and the deletion pushed. The same with `sw_` for software.

use std::sync::Arc;

use super::Services;
use crate::domain::ota::OtaPackageType;
use crate::domain::{AttributeScope, Device, DeviceProfile, Kv, KvValue, OtaPackage};
use crate::domain::{DeviceId, DeviceProfileId, OtaPackageId, TenantId, TsKv, now_ms};
use crate::storage::StorageError;

/// Both kinds of package.
pub const KINDS: [OtaPackageType; 2] = [OtaPackageType::Firmware, OtaPackageType::Software];

/// Devices read per step when a profile's package changes.
const ROLLOUT_PAGE: u32 = 100;

/// The SHARED attribute keys of a kind, in the order they are written: `fw_title`, `fw_version`,
/// `fw_tag`, `fw_url`, `fw_size`, `fw_checksum_algorithm`, `fw_checksum`.
pub fn attribute_keys(kind: OtaPackageType) -> Vec<String> {
    let p = kind.prefix();
    [
        "title",
        "version",
        "tag",
        "url",
        "size",
        "checksum_algorithm",
        "checksum",
    ]
    .iter()
    .map(|k| format!("{p}_{k}"))
    .collect()
}

/// The device's own package of `kind`.
pub fn own(device: &Device, kind: OtaPackageType) -> Option<OtaPackageId> {
    match kind {
        OtaPackageType::Firmware => device.firmware_id,
        OtaPackageType::Software => device.software_id,
    }
}

/// The profile's package of `kind`.
pub fn of_profile(profile: &DeviceProfile, kind: OtaPackageType) -> Option<OtaPackageId> {
    match kind {
        OtaPackageType::Firmware => profile.firmware_id,
        OtaPackageType::Software => profile.software_id,
    }
}

/// The package of `kind` a device should run: its own, else its profile's.
pub fn effective(
    device: &Device,
    profile: Option<&DeviceProfile>,
    kind: OtaPackageType,
) -> Option<OtaPackageId> {
    own(device, kind).or_else(|| profile.and_then(|p| of_profile(p, kind)))
}

/// Reads the package of `kind` a device should run now (None when the device is gone too).
pub async fn current_target(
    services: &Services,
    tenant: TenantId,
    device: DeviceId,
    kind: OtaPackageType,
) -> Result<Option<OtaPackageId>, StorageError> {
    match services.store.get_device(tenant, device).await? {
        Some(device) => target_of(services, &device, kind).await,
        None => Ok(None),
    }
}

/// The package of `kind` the device should run, its profile read now.
pub async fn target_of(
    services: &Services,
    device: &Device,
    kind: OtaPackageType,
) -> Result<Option<OtaPackageId>, StorageError> {
    if let Some(id) = own(device, kind) {
        return Ok(Some(id));
    }
    let profile = services
        .store
        .get_profile(device.tenant_id, device.profile_id)
        .await?;
    Ok(profile.and_then(|p| of_profile(&p, kind)))
}

async fn profile_of(services: &Services, device: &Device) -> Option<DeviceProfile> {
    match services
        .store
        .get_profile(device.tenant_id, device.profile_id)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(device = %device.id, error = %e, "could not read the device's profile for its packages");
            None
        }
    }
}

/// After a device was created (`old` None) or updated: for each kind whose effective package
/// changed, the device is sent the new one; an update that leaves nothing assigned clears it.
pub async fn device_saved(services: &Services, old: Option<&Device>, new: &Device) {
    let new_profile = profile_of(services, new).await;
    let old_profile = match old {
        Some(o) if o.profile_id == new.profile_id => new_profile.clone(),
        Some(o) => profile_of(services, o).await,
        None => None,
    };
    for kind in KINDS {
        let target = effective(new, new_profile.as_ref(), kind);
        let before = old.map(|o| effective(o, old_profile.as_ref(), kind));
        let result = match (target, before) {
            (Some(id), before) if before != Some(Some(id)) => {
                assign(services, new.tenant_id, new.id, id, kind, now_ms()).await
            }
            (None, Some(_)) => unassign(services, new.id, kind).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(device = %new.id, kind = kind.as_str(), error = %e, "could not update the device's package state");
        }
    }
}

/// After a profile was updated: the devices of the profile without a package of their own are
/// sent the profile's new package (or cleared), a page at a time, in the background.
pub fn profile_saved(services: &Arc<Services>, old: &DeviceProfile, new: &DeviceProfile) {
    for kind in KINDS {
        let target = of_profile(new, kind);
        if target == of_profile(old, kind) {
            continue;
        }
        let services = services.clone();
        let (tenant, profile) = (new.tenant_id, new.id);
        tokio::spawn(async move {
            match rollout(&services, tenant, profile, kind, target).await {
                Ok(devices) => {
                    tracing::info!(%profile, kind = kind.as_str(), devices, "device profile package change applied")
                }
                Err(e) => {
                    tracing::warn!(%profile, kind = kind.as_str(), error = %e, "device profile package change stopped")
                }
            }
        });
    }
}

/// Applies a profile's package `target` of `kind` to its devices that have none of their own;
/// stops when the profile's package changes again meanwhile (that change has its own rollout).
/// Returns how many devices were updated.
async fn rollout(
    services: &Services,
    tenant: TenantId,
    profile: DeviceProfileId,
    kind: OtaPackageType,
    target: Option<OtaPackageId>,
) -> Result<u64, StorageError> {
    let ts = now_ms();
    let mut after = None;
    let mut done = 0u64;
    loop {
        let current = services.store.get_profile(tenant, profile).await?;
        if current.as_ref().and_then(|p| of_profile(p, kind)) != target {
            return Ok(done);
        }
        let devices = services
            .store
            .devices_following_profile(tenant, profile, kind, after, ROLLOUT_PAGE)
            .await?;
        for device in &devices {
            let result = match target {
                Some(id) => assign(services, tenant, device.id, id, kind, ts).await,
                None => unassign(services, device.id, kind).await,
            };
            if let Err(e) = result {
                tracing::warn!(device = %device.id, kind = kind.as_str(), error = %e, "could not update the device's package state");
            }
            done += 1;
        }
        match devices.last() {
            Some(last) if devices.len() == ROLLOUT_PAGE as usize => after = Some(last.id),
            _ => return Ok(done),
        }
    }
}

/// Sends package `id` of `kind` to the device: `target_*` and `fw_state` QUEUED stamped `ts`;
/// then, if it is still the device's package, `fw_state` INITIATED and the SHARED attributes.
async fn assign(
    services: &Services,
    tenant: TenantId,
    device: DeviceId,
    id: OtaPackageId,
    kind: OtaPackageType,
    ts: i64,
) -> Result<(), StorageError> {
    let Some(package) = services.store.get_package(tenant, id).await? else {
        tracing::warn!(%device, package = %id, "the assigned package was deleted meanwhile");
        return Ok(());
    };
    services
        .save_timeseries(device.0, queued_telemetry(&package, ts))
        .await?;
    if current_target(services, tenant, device, kind).await? != Some(id) {
        tracing::info!(%device, package = %id, "the device's package changed again before its update started");
        return Ok(());
    }
    // After QUEUED even within the same millisecond.
    let initiated = TsKv {
        ts: now_ms().max(ts + 1),
        key: format!("{}_state", kind.prefix()),
        value: KvValue::Str("INITIATED".to_owned()),
    };
    services.save_timeseries(device.0, vec![initiated]).await?;
    let (kvs, removed) = package_attributes(&package);
    services
        .save_attributes(device.0, AttributeScope::Shared, kvs.clone(), ts)
        .await?;
    services.push_shared_attributes(device, &kvs).await;
    delete_shared(services, device, &removed).await
}

/// Deletes the device's `fw_*` (or `sw_*`) SHARED attributes and tells the device.
async fn unassign(
    services: &Services,
    device: DeviceId,
    kind: OtaPackageType,
) -> Result<(), StorageError> {
    delete_shared(services, device, &attribute_keys(kind)).await
}

async fn delete_shared(
    services: &Services,
    device: DeviceId,
    keys: &[String],
) -> Result<(), StorageError> {
    if keys.is_empty() {
        return Ok(());
    }
    let deleted = services
        .store
        .delete_attributes(device.0, AttributeScope::Shared, keys)
        .await?;
    services.push_shared_deleted(device, &deleted).await;
    Ok(())
}

fn text(key: String, value: &str) -> Kv {
    Kv {
        key,
        value: KvValue::Str(value.to_owned()),
    }
}

/// `target_fw_title`, `target_fw_version`, `target_fw_tag` (when the package has one),
/// `target_fw_ts` and `fw_state` = QUEUED, all stamped `ts`.
pub fn queued_telemetry(package: &OtaPackage, ts: i64) -> Vec<TsKv> {
    let p = package.package_type.prefix();
    let mut kvs = vec![
        text(format!("target_{p}_title"), &package.title),
        text(format!("target_{p}_version"), &package.version),
    ];
    if let Some(tag) = package.tag.as_deref().filter(|t| !t.is_empty()) {
        kvs.push(text(format!("target_{p}_tag"), tag));
    }
    kvs.push(Kv {
        key: format!("target_{p}_ts"),
        value: KvValue::Long(ts),
    });
    kvs.push(text(format!("{p}_state"), "QUEUED"));
    kvs.into_iter()
        .map(|kv| TsKv {
            ts,
            key: kv.key,
            value: kv.value,
        })
        .collect()
}

/// The SHARED attributes a package sets, and the keys it removes: a file package has size,
/// checksum algorithm and checksum but no URL; a URL package has its URL and no file details.
pub fn package_attributes(package: &OtaPackage) -> (Vec<Kv>, Vec<String>) {
    let p = package.package_type.prefix();
    let key = |k: &str| format!("{p}_{k}");
    let mut kvs = vec![
        text(key("title"), &package.title),
        text(key("version"), &package.version),
    ];
    let mut removed = Vec::new();
    match package.tag.as_deref().filter(|t| !t.is_empty()) {
        Some(tag) => kvs.push(text(key("tag"), tag)),
        None => removed.push(key("tag")),
    }
    match &package.data {
        Some(data) => {
            kvs.push(Kv {
                key: key("size"),
                value: KvValue::Long(data.size),
            });
            kvs.push(text(
                key("checksum_algorithm"),
                data.checksum_algorithm.as_str(),
            ));
            kvs.push(text(key("checksum"), &data.checksum));
            removed.push(key("url"));
        }
        None => {
            if let Some(url) = &package.url {
                kvs.push(text(key("url"), url));
            }
            removed.extend([key("size"), key("checksum_algorithm"), key("checksum")]);
        }
    }
    (kvs, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ota::{ChecksumAlgorithm, OtaPackageData};

    fn package(data: bool) -> OtaPackage {
        OtaPackage {
            id: OtaPackageId::new(),
            tenant_id: TenantId(uuid::Uuid::new_v4()),
            created_time: 1,
            profile_id: DeviceProfileId::new(),
            package_type: OtaPackageType::Firmware,
            title: "fw".into(),
            version: "1.0".into(),
            tag: Some("fw 1.0".into()),
            url: (!data).then(|| "https://example.com/fw.bin".to_owned()),
            data: data.then(|| OtaPackageData {
                blob_id: uuid::Uuid::new_v4(),
                file_name: "fw.bin".into(),
                content_type: "application/octet-stream".into(),
                checksum_algorithm: ChecksumAlgorithm::Sha256,
                checksum: "ab".into(),
                size: 10,
            }),
            additional_info: serde_json::Value::Null,
        }
    }

    #[test]
    fn file_and_url_packages_set_their_own_attributes() {
        let (kvs, removed) = package_attributes(&package(true));
        let keys: Vec<&str> = kvs.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "fw_title",
                "fw_version",
                "fw_tag",
                "fw_size",
                "fw_checksum_algorithm",
                "fw_checksum"
            ]
        );
        assert_eq!(removed, ["fw_url"]);
        let (kvs, removed) = package_attributes(&package(false));
        let keys: Vec<&str> = kvs.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["fw_title", "fw_version", "fw_tag", "fw_url"]);
        assert_eq!(removed, ["fw_size", "fw_checksum_algorithm", "fw_checksum"]);
    }

    #[test]
    fn queued_telemetry_names_the_target() {
        let mut p = package(true);
        p.tag = None;
        let keys: Vec<String> = queued_telemetry(&p, 5).into_iter().map(|t| t.key).collect();
        assert_eq!(
            keys,
            [
                "target_fw_title",
                "target_fw_version",
                "target_fw_ts",
                "fw_state"
            ]
        );
    }
}
