//! OTA package cases: create and read (tenant-scoped), the unique title and version, paging by
//! profile and type, attaching a file once, chunked files read back by range, deletion with the file.

use ferroboard::domain::ota::{ChecksumAlgorithm, OtaPackageData, OtaPackageType};
use ferroboard::domain::{OtaPackage, OtaPackageId, TenantId};
use ferroboard::services::ota::read_range;
use ferroboard::storage::{DeviceProfile, OTA_CHUNK_BYTES, SortOrder, Store};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{conflict_text, default_profile, page, profile, tenant};

fn package(
    p: &DeviceProfile,
    kind: OtaPackageType,
    title: &str,
    version: &str,
    created: i64,
) -> OtaPackage {
    OtaPackage {
        id: OtaPackageId::new(),
        tenant_id: p.tenant_id,
        created_time: created,
        profile_id: p.id,
        package_type: kind,
        title: title.into(),
        version: version.into(),
        tag: Some(format!("{title} {version}")),
        url: None,
        data: None,
        additional_info: json!({"description": "d"}),
    }
}

/// Stores `bytes` as a blob in chunks of `OTA_CHUNK_BYTES`, as an upload does.
async fn put_blob(store: &dyn Store, bytes: &[u8]) -> OtaPackageData {
    let blob = Uuid::new_v4();
    for (i, chunk) in bytes.chunks(OTA_CHUNK_BYTES).enumerate() {
        store
            .put_chunk(blob, i32::try_from(i).unwrap(), chunk)
            .await
            .expect("put chunk");
    }
    OtaPackageData {
        blob_id: blob,
        file_name: "fw.bin".into(),
        content_type: "application/octet-stream".into(),
        checksum_algorithm: ChecksumAlgorithm::Sha256,
        checksum: "00".into(),
        size: i64::try_from(bytes.len()).unwrap(),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

pub async fn ota_packages_crud_paging_and_conflicts(store: &dyn Store) {
    let t = tenant(store).await;
    let p = default_profile(store, t).await;
    let other_profile = profile(t, "thermo", false, 2);
    store.create_profile(&other_profile).await.unwrap();

    let fw = package(&p, OtaPackageType::Firmware, "fw", "1.0", 10);
    store.create_package(&fw).await.expect("create");
    assert_eq!(store.get_package(t, fw.id).await.unwrap(), Some(fw.clone()));
    assert_eq!(
        store.get_package(TenantId::new(), fw.id).await.unwrap(),
        None
    );
    let again = package(&p, OtaPackageType::Software, "fw", "1.0", 11);
    assert_eq!(
        conflict_text(store.create_package(&again).await.unwrap_err()),
        "OtaPackage with such title and version already exists!"
    );
    let fw2 = package(&p, OtaPackageType::Firmware, "fw", "2.0", 12);
    let sw = package(&p, OtaPackageType::Software, "sw", "1.0", 13);
    let thermo = package(
        &other_profile,
        OtaPackageType::Firmware,
        "thermo",
        "1.0",
        14,
    );
    let mut by_url = package(&p, OtaPackageType::Firmware, "remote", "1.0", 15);
    by_url.url = Some("https://example.com/fw.bin".into());
    for pkg in [&fw2, &sw, &thermo, &by_url] {
        store.create_package(pkg).await.unwrap();
    }

    let all = store
        .page_packages(t, None, &page(10, 0, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(all.total_elements, 5);
    assert_eq!(all.data[0].id, fw.id, "oldest first");
    let titled = store
        .page_packages(t, None, &page(2, 1, None, Some("title"), SortOrder::Desc))
        .await
        .unwrap();
    let titles: Vec<&str> = titled.data.iter().map(|p| p.title.as_str()).collect();
    assert_eq!(titles, ["remote", "fw"]);
    let searched = store
        .page_packages(t, None, &page(10, 0, Some("THER"), None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(searched.total_elements, 1);

    // By profile and type: only packages with a file or a URL.
    let listed = store
        .page_packages(
            t,
            Some((p.id, OtaPackageType::Firmware)),
            &page(10, 0, None, None, SortOrder::Asc),
        )
        .await
        .unwrap();
    let ids: Vec<OtaPackageId> = listed.data.iter().map(|p| p.id).collect();
    assert_eq!(ids, [by_url.id], "only the URL package is downloadable yet");

    let data = put_blob(store, &pattern(100)).await;
    assert!(store.attach_data(t, fw.id, &data).await.unwrap());
    let second = put_blob(store, &pattern(10)).await;
    assert!(
        !store.attach_data(t, fw.id, &second).await.unwrap(),
        "a file is set once"
    );
    assert!(
        !store.attach_data(t, by_url.id, &second).await.unwrap(),
        "not on a URL package"
    );
    assert!(
        !store
            .attach_data(TenantId::new(), fw2.id, &second)
            .await
            .unwrap()
    );
    store.discard_blob(second.blob_id).await.unwrap();
    assert!(
        store
            .read_chunks(second.blob_id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let got = store.get_package(t, fw.id).await.unwrap().unwrap();
    assert_eq!(got.data, Some(data.clone()));
    let listed = store
        .page_packages(
            t,
            Some((p.id, OtaPackageType::Firmware)),
            &page(10, 0, None, None, SortOrder::Asc),
        )
        .await
        .unwrap();
    let ids: Vec<OtaPackageId> = listed.data.iter().map(|p| p.id).collect();
    assert_eq!(ids, [fw.id, by_url.id]);

    assert!(!store.delete_package(TenantId::new(), fw.id).await.unwrap());
    assert!(store.delete_package(t, fw.id).await.unwrap());
    assert!(!store.delete_package(t, fw.id).await.unwrap());
    assert_eq!(store.get_package(t, fw.id).await.unwrap(), None);
    assert!(
        store
            .read_chunks(data.blob_id, 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "the file goes with the package"
    );
}

pub async fn ota_files_are_read_by_range(store: &dyn Store) {
    let bytes = pattern(OTA_CHUNK_BYTES * 2 + 1234);
    let data = put_blob(store, &bytes).await;
    let chunks = store.read_chunks(data.blob_id, 0, 100).await.unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks.concat(), bytes);
    let ranges: [(u64, u64); 6] = [
        (0, 10),
        (OTA_CHUNK_BYTES as u64 - 5, 10),
        (0, bytes.len() as u64),
        (OTA_CHUNK_BYTES as u64 * 2, 5000),
        (bytes.len() as u64 - 1, 100),
        (OTA_CHUNK_BYTES as u64 / 2, OTA_CHUNK_BYTES as u64 * 2),
    ];
    for (offset, len) in ranges {
        let got = read_range(store, &data, offset, len).await.unwrap();
        let start = offset as usize;
        let end = (start + len as usize).min(bytes.len());
        assert_eq!(got, &bytes[start..end], "{offset}+{len}");
    }
    assert!(
        read_range(store, &data, bytes.len() as u64, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        read_range(store, &data, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
