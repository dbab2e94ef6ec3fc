//! Cases: saving, deleting and choosing the default device profile; provisioning keys.

use super::fixtures::*;
use ferroboard::storage::{StorageError, Store};
use serde_json::json;

pub async fn profile_update_delete_and_default(store: &dyn Store) {
    let t = tenant(store).await;
    let other = tenant(store).await;
    let default = default_profile(store, t).await;
    let mut mqtt = profile(t, "mqtt", false, 2);
    mqtt.profile_data =
        json!({"transportConfiguration": {"type": "MQTT", "deviceTelemetryTopic": "a/+"}});
    mqtt.provision_device_key = Some("key-1".into());
    store.create_profile(&mqtt).await.unwrap();
    assert_eq!(
        store.get_profile(t, mqtt.id).await.unwrap(),
        Some(mqtt.clone())
    );
    assert_eq!(mqtt.transport_type(), "MQTT");

    // The provisioning key is unique across tenants; absent keys do not collide.
    let mut clash = profile(other, "clash", false, 3);
    clash.provision_device_key = Some("key-1".into());
    let text = conflict_text(store.create_profile(&clash).await.unwrap_err());
    assert_eq!(
        text,
        "Device profile with such provision device key already exists!"
    );
    store
        .create_profile(&profile(other, "no-key", false, 4))
        .await
        .unwrap();
    assert_eq!(
        store.find_profile_by_provision_key("key-1").await.unwrap(),
        Some(mqtt.clone())
    );
    assert_eq!(
        store.find_profile_by_provision_key("nope").await.unwrap(),
        None
    );
    assert_eq!(store.profile_owner(mqtt.id).await.unwrap(), Some(t));
    assert_eq!(
        store
            .profile_owner(ferroboard::domain::DeviceProfileId::new())
            .await
            .unwrap(),
        None
    );

    // Update: renamed, new data and key; a taken name is a conflict and changes nothing.
    let mut renamed = mqtt.clone();
    renamed.name = "mqtt-2".into();
    renamed.profile_data = json!({"transportConfiguration": {"type": "DEFAULT"}});
    renamed.provision_device_key = None;
    store.update_profile(&renamed).await.unwrap();
    assert_eq!(
        store.get_profile(t, mqtt.id).await.unwrap(),
        Some(renamed.clone())
    );
    let mut taken = renamed.clone();
    taken.name = "default".into();
    let text = conflict_text(store.update_profile(&taken).await.unwrap_err());
    assert_eq!(text, "Device profile with such name already exists!");
    assert_eq!(
        store.get_profile(t, mqtt.id).await.unwrap(),
        Some(renamed.clone())
    );
    let mut foreign = renamed.clone();
    foreign.tenant_id = other;
    assert!(matches!(
        store.update_profile(&foreign).await,
        Err(StorageError::NotFound)
    ));

    // The default moves; another tenant's id changes nothing.
    assert!(!store.set_default_profile(other, mqtt.id).await.unwrap());
    assert_eq!(
        store.default_profile(t).await.unwrap().unwrap().id,
        default.id
    );
    assert!(store.set_default_profile(t, mqtt.id).await.unwrap());
    assert_eq!(store.default_profile(t).await.unwrap().unwrap().id, mqtt.id);
    assert!(
        !store
            .get_profile(t, default.id)
            .await
            .unwrap()
            .unwrap()
            .is_default
    );
    assert!(
        store.set_default_profile(t, mqtt.id).await.unwrap(),
        "again: a no-op"
    );

    // Delete: refused while a device uses it; another tenant's id is absent.
    let device = new_device(store, t, &default, "d1", 5).await;
    let text = conflict_text(store.delete_profile(t, default.id).await.unwrap_err());
    assert_eq!(
        text,
        "The device profile referenced by the devices cannot be deleted!"
    );
    assert!(!store.delete_profile(other, default.id).await.unwrap());
    assert!(store.delete_device(t, device.id).await.unwrap());
    assert!(store.delete_profile(t, default.id).await.unwrap());
    assert_eq!(store.get_profile(t, default.id).await.unwrap(), None);
    assert!(!store.delete_profile(t, default.id).await.unwrap());
}
