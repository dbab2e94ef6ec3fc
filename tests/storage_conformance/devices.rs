//! Cases: device profiles, devices, credentials, paging.

use super::fixtures::*;
use ferroboard::domain::{AttributeScope, CustomerId, DeviceId, KvValue, TenantId};
use ferroboard::storage::{Device, DeviceCredentials, SortOrder, StorageError, Store};
use serde_json::json;

pub async fn device_profiles(store: &dyn Store) {
    let t = tenant(store).await;
    let other = tenant(store).await;
    assert_eq!(store.default_profile(t).await.unwrap(), None);
    let default = default_profile(store, t).await;
    let thermo = profile(t, "thermostat", false, 2);
    store.create_profile(&thermo).await.unwrap();
    // The same name in another tenant is fine.
    store
        .create_profile(&profile(other, "thermostat", true, 3))
        .await
        .unwrap();

    assert_eq!(
        store.default_profile(t).await.unwrap(),
        Some(default.clone())
    );
    assert_eq!(
        store.get_profile(t, thermo.id).await.unwrap(),
        Some(thermo.clone())
    );
    assert_eq!(store.get_profile(other, thermo.id).await.unwrap(), None);
    assert_eq!(
        store.find_profile_by_name(t, "thermostat").await.unwrap(),
        Some(thermo.clone())
    );
    assert_eq!(store.find_profile_by_name(t, "nope").await.unwrap(), None);

    let text = conflict_text(
        store
            .create_profile(&profile(t, "thermostat", false, 4))
            .await
            .unwrap_err(),
    );
    assert_eq!(text, "Device profile with such name already exists!");
    let second_default = store
        .create_profile(&profile(t, "another", true, 5))
        .await
        .unwrap_err();
    assert!(
        matches!(second_default, StorageError::Conflict(_)),
        "{second_default:?}"
    );

    let all = store
        .page_profiles(t, &page(10, 0, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(all.total_elements, 2);
    assert_eq!(all.data, vec![default.clone(), thermo.clone()]);
    let found = store
        .page_profiles(t, &page(10, 0, Some("THERM"), None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        (found.total_elements, found.data),
        (1, vec![thermo.clone()])
    );
    let desc = store
        .page_profiles(t, &page(1, 0, None, Some("name"), SortOrder::Desc))
        .await
        .unwrap();
    assert_eq!((desc.total_elements, desc.data), (2, vec![thermo]));
}

pub async fn devices_crud_and_conflicts(store: &dyn Store) {
    let t = tenant(store).await;
    let p = default_profile(store, t).await;
    let other_profile = profile(t, "sensor", false, 2);
    store.create_profile(&other_profile).await.unwrap();

    let mut d = device(t, &p, "Dev-1", 10);
    d.label = Some("Kitchen".into());
    d.additional_info = json!({"description": "first", "gateway": true, "n": 1.5});
    store.create_device(&d, &token(&d, "tok-1")).await.unwrap();
    assert_eq!(store.get_device(t, d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(
        store.find_device_by_name(t, "Dev-1").await.unwrap(),
        Some(d.clone())
    );
    assert_eq!(store.get_device(TenantId::new(), d.id).await.unwrap(), None);

    let same_name = device(t, &p, "Dev-1", 11);
    let text = conflict_text(
        store
            .create_device(&same_name, &token(&same_name, "tok-x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(text, "Device with such name already exists!");
    let same_token = device(t, &p, "Dev-2", 12);
    let text = conflict_text(
        store
            .create_device(&same_token, &token(&same_token, "tok-1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(text, "Specified credentials are already registered!");
    assert_eq!(
        store.find_device_by_name(t, "Dev-2").await.unwrap(),
        None,
        "rolled back with its credentials"
    );

    let mut changed = d.clone();
    changed.name = "Dev-1b".into();
    changed.label = None;
    changed.profile_id = other_profile.id;
    changed.customer_id = Some(CustomerId::new());
    changed.additional_info = json!({"description": "second"});
    let stored = store.update_device(&changed).await.unwrap();
    let expected = Device {
        profile_name: "sensor".into(),
        version: d.version + 1,
        ..changed.clone()
    };
    assert_eq!(stored, expected);
    assert_eq!(
        store.get_device(t, d.id).await.unwrap(),
        Some(expected.clone())
    );

    let d3 = new_device(store, t, &p, "Dev-3", 13).await;
    let taken = Device {
        name: "Dev-1b".into(),
        ..d3.clone()
    };
    let text = conflict_text(store.update_device(&taken).await.unwrap_err());
    assert_eq!(text, "Device with such name already exists!");
    let missing = Device {
        id: DeviceId::new(),
        ..d3.clone()
    };
    assert!(matches!(
        store.update_device(&missing).await,
        Err(StorageError::NotFound)
    ));

    assert!(
        !store.delete_device(TenantId::new(), d.id).await.unwrap(),
        "other tenant"
    );
    assert!(store.delete_device(t, d.id).await.unwrap());
    assert!(!store.delete_device(t, d.id).await.unwrap());
    assert_eq!(store.get_device(t, d.id).await.unwrap(), None);
    // The name and token are free again.
    new_device(store, t, &p, "Dev-1b", 14).await;
    let again = device(t, &p, "Dev-4", 15);
    store
        .create_device(&again, &token(&again, "tok-1"))
        .await
        .unwrap();
}

pub async fn credentials_lookup_and_update(store: &dyn Store) {
    let t = tenant(store).await;
    let p = default_profile(store, t).await;
    let d = device(t, &p, "meter", 1);
    let mut creds = token(&d, "A1_TEST_TOKEN");
    creds.credentials_value = Some("v".into());
    store.create_device(&d, &creds).await.unwrap();
    let other = new_device(store, t, &p, "other", 2).await;

    assert_eq!(
        store.get_credentials(d.id).await.unwrap(),
        Some(creds.clone())
    );
    assert_eq!(store.get_credentials(DeviceId::new()).await.unwrap(), None);
    let (found, found_creds) = store
        .find_by_credentials_id("A1_TEST_TOKEN")
        .await
        .unwrap()
        .expect("found");
    assert_eq!((found, found_creds), (d.clone(), creds.clone()));
    assert_eq!(
        store.find_by_credentials_id("a1_test_token").await.unwrap(),
        None,
        "tokens are exact"
    );

    let replaced = DeviceCredentials {
        credentials_type: "MQTT_BASIC".into(),
        credentials_id: "NEW_TOKEN".into(),
        credentials_value: None,
        ..creds.clone()
    };
    let stored = store.update_credentials(&replaced).await.unwrap();
    assert_eq!(
        stored,
        DeviceCredentials {
            version: creds.version + 1,
            ..replaced.clone()
        }
    );
    assert_eq!(
        store.find_by_credentials_id("A1_TEST_TOKEN").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .find_by_credentials_id("NEW_TOKEN")
            .await
            .unwrap()
            .map(|(d, _)| d.id),
        Some(d.id)
    );

    let steal = DeviceCredentials {
        credentials_id: "token-other".into(),
        ..stored.clone()
    };
    let text = conflict_text(store.update_credentials(&steal).await.unwrap_err());
    assert_eq!(text, "Specified credentials are already registered!");
    assert_eq!(
        store
            .get_credentials(other.id)
            .await
            .unwrap()
            .map(|c| c.credentials_id),
        Some("token-other".into())
    );
    let orphan = DeviceCredentials {
        device_id: DeviceId::new(),
        credentials_id: "free".into(),
        ..stored
    };
    assert!(matches!(
        store.update_credentials(&orphan).await,
        Err(StorageError::NotFound)
    ));
}

pub async fn delete_device_removes_its_data(store: &dyn Store) {
    let t = tenant(store).await;
    let p = default_profile(store, t).await;
    let d = new_device(store, t, &p, "doomed", 1).await;
    let keep = new_device(store, t, &p, "kept", 2).await;
    for id in [d.id.0, keep.id.0] {
        store
            .commit(&[
                ts_op(
                    id,
                    vec![
                        pt(10, "temp", KvValue::Long(1)),
                        pt(20, "temp", KvValue::Long(2)),
                    ],
                ),
                attr_op(
                    id,
                    AttributeScope::Server,
                    5,
                    &[("active", KvValue::Bool(true))],
                ),
            ])
            .await
            .unwrap();
    }
    assert!(store.delete_device(t, d.id).await.unwrap());
    assert!(store.latest(d.id.0, None).await.unwrap().is_empty());
    assert!(
        store
            .history(d.id.0, &history("temp", 0, 100, 10, SortOrder::Asc))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .find_attributes(d.id.0, AttributeScope::Server, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.timeseries_keys(d.id.0).await.unwrap().is_empty());
    assert_eq!(store.get_credentials(d.id).await.unwrap(), None);
    assert_eq!(
        store.find_by_credentials_id("token-doomed").await.unwrap(),
        None
    );
    // The neighbour is untouched.
    assert_eq!(store.latest(keep.id.0, None).await.unwrap().len(), 1);
    assert_eq!(
        store
            .history(keep.id.0, &history("temp", 0, 100, 10, SortOrder::Asc))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .find_attributes(keep.id.0, AttributeScope::Server, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn device_paging_sorting_and_search(store: &dyn Store) {
    let t = tenant(store).await;
    let other_tenant = tenant(store).await;
    let p = default_profile(store, t).await;
    let q = profile(t, "alpha", false, 2);
    store.create_profile(&q).await.unwrap();
    let specs = [
        ("delta", Some("roof"), &q),
        ("alpha", None, &p),
        ("charlie", Some("cellar"), &q),
        ("bravo", Some("attic"), &p),
        ("echo", None, &p),
    ];
    let mut devices = Vec::new();
    for (i, (name, label, prof)) in specs.iter().enumerate() {
        let mut d = device(t, prof, name, 100 + i as i64);
        d.label = label.map(str::to_owned);
        store
            .create_device(&d, &token(&d, &format!("tok-{name}")))
            .await
            .unwrap();
        devices.push(d);
    }
    let op = profile(other_tenant, "default", true, 1);
    store.create_profile(&op).await.unwrap();
    new_device(store, other_tenant, &op, "zulu", 1).await;
    let names = |page: &ferroboard::storage::Page<Device>| {
        page.data.iter().map(|d| d.name.clone()).collect::<Vec<_>>()
    };

    let by_created = store
        .page_devices(t, None, &page(2, 0, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        (by_created.total_elements, names(&by_created)),
        (5, strs(&["delta", "alpha"]))
    );
    let last = store
        .page_devices(t, None, &page(2, 2, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!((last.total_elements, names(&last)), (5, strs(&["echo"])));
    let beyond = store
        .page_devices(t, None, &page(2, 5, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!((beyond.total_elements, beyond.data.len()), (5, 0));
    let created_desc = store
        .page_devices(
            t,
            None,
            &page(10, 0, None, Some("createdTime"), SortOrder::Desc),
        )
        .await
        .unwrap();
    assert_eq!(
        names(&created_desc),
        strs(&["echo", "bravo", "charlie", "alpha", "delta"])
    );

    let by_name = store
        .page_devices(t, None, &page(10, 0, None, Some("name"), SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        names(&by_name),
        strs(&["alpha", "bravo", "charlie", "delta", "echo"])
    );
    let by_name_desc = store
        .page_devices(t, None, &page(3, 0, None, Some("name"), SortOrder::Desc))
        .await
        .unwrap();
    assert_eq!(names(&by_name_desc), strs(&["echo", "delta", "charlie"]));
    let by_type = store
        .page_devices(t, None, &page(10, 0, None, Some("type"), SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        names(&by_type),
        strs(&["delta", "charlie", "alpha", "bravo", "echo"])
    );
    assert!(by_type.data.iter().all(|d| d.profile_name
        == if d.profile_id == q.id {
            "alpha"
        } else {
            "default"
        }));
    let by_label = store
        .page_devices(t, None, &page(10, 0, None, Some("label"), SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        names(&by_label),
        strs(&["bravo", "charlie", "delta", "alpha", "echo"]),
        "NULL labels last"
    );
    let by_label = store
        .page_devices(t, None, &page(10, 0, None, Some("label"), SortOrder::Desc))
        .await
        .unwrap();
    assert_eq!(
        names(&by_label),
        strs(&["echo", "alpha", "delta", "charlie", "bravo"]),
        "NULL labels first"
    );

    let search = store
        .page_devices(t, None, &page(10, 0, Some("ELL"), None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        (search.total_elements, names(&search)),
        (1, strs(&["charlie"])),
        "label match, case-insensitive"
    );
    let search = store
        .page_devices(
            t,
            None,
            &page(10, 0, Some("ha"), Some("name"), SortOrder::Asc),
        )
        .await
        .unwrap();
    assert_eq!(names(&search), strs(&["alpha", "charlie"]));
    let typed = store
        .page_devices(
            t,
            Some("alpha"),
            &page(10, 0, None, Some("name"), SortOrder::Asc),
        )
        .await
        .unwrap();
    assert_eq!(
        (typed.total_elements, names(&typed)),
        (2, strs(&["charlie", "delta"]))
    );
    let typed = store
        .page_devices(
            t,
            Some("alpha"),
            &page(10, 0, Some("roof"), None, SortOrder::Asc),
        )
        .await
        .unwrap();
    assert_eq!(names(&typed), strs(&["delta"]));
    let none = store
        .page_devices(t, Some("missing"), &page(10, 0, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!((none.total_elements, none.data.len()), (0, 0));
    assert_eq!(by_name.data[0], devices[1], "full device with profile name");
}
