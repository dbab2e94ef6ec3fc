//! OTA packages over REST: create, upload (checksum given or computed, fields before or after the
//! file), download, lists, deletion, and the refusals.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, spawn_app_with};
use crate::support::Api;
use crate::{Part, create_package, default_profile, image, multipart, upload};
use ferroboard::domain::ota::{ChecksumAlgorithm, Checksummer, OtaPackageType};
use ferroboard::domain::{DeviceProfile, OtaPackage, OtaPackageId, Tenant, TenantId};

fn id_of(v: &serde_json::Value) -> String {
    v["id"]["id"].as_str().expect("id").to_owned()
}

async fn download(api: &Api, id: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = api
        .http
        .get(format!("{}/api/otaPackage/{id}/download", api.base))
        .header(
            "X-Authorization",
            format!("Bearer {}", api.token.as_deref().unwrap_or_default()),
        )
        .send()
        .await
        .expect("download");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

async fn packages_upload_download_and_list(app: &TestApp) {
    let api = Api::tenant(app).await;
    let profile = default_profile(&api).await;
    let fw = create_package(&api, &profile, "FIRMWARE", "thermo-fw", "1.0").await;
    assert_eq!(fw["id"]["entityType"], "OTA_PACKAGE");
    assert_eq!(fw["hasData"], false);
    assert_eq!(fw["tag"], "thermo-fw 1.0");
    assert_eq!(fw["name"], "thermo-fw");
    assert_eq!(fw["deviceProfileId"]["id"], profile.as_str());
    let id = id_of(&fw);

    // 300 KB: several stored chunks; the checksum comes as form fields before the file.
    let data = image(300 * 1024 + 17);
    let sha = Checksummer::of(ChecksumAlgorithm::Sha256, &data);
    let saved = upload(
        &api,
        &id,
        "",
        &[
            ("checksumAlgorithm", "SHA256"),
            ("checksum", &sha.to_uppercase()),
        ],
        &data,
    )
    .await
    .ok();
    assert_eq!(saved["hasData"], true, "{saved}");
    assert_eq!(saved["dataSize"], data.len());
    assert_eq!(saved["checksum"], sha.as_str());
    assert_eq!(saved["checksumAlgorithm"], "SHA256");
    assert_eq!(saved["fileName"], "fw.bin");
    assert_eq!(saved["contentType"], "application/x-firmware");
    assert_eq!(
        api.get(&format!("/api/otaPackage/info/{id}")).await.ok(),
        saved
    );

    let (status, headers, body) = download(&api, &id).await;
    assert_eq!(status, 200);
    assert_eq!(body, data, "the downloaded file is the uploaded one");
    assert_eq!(headers["content-type"], "application/x-firmware");
    assert_eq!(headers["content-disposition"], "attachment;filename=fw.bin");
    assert_eq!(headers["x-filename"], "fw.bin");

    let again = upload(&api, &id, "?checksumAlgorithm=SHA256", &[], b"other").await;
    assert_eq!(
        again.error(400, 31),
        "Updating otaPackage data is prohibited!"
    );

    // Computed when not given: CRC32 as ThingsBoard renders it (little-endian hex).
    let crc = create_package(&api, &profile, "FIRMWARE", "thermo-fw", "1.1").await;
    let saved = upload(
        &api,
        &id_of(&crc),
        "?checksumAlgorithm=CRC32",
        &[],
        b"123456789",
    )
    .await
    .ok();
    assert_eq!(saved["checksum"], "2639f4cb");
    // The algorithm named after the file (every checksum computed while streaming).
    let sw = create_package(&api, &profile, "SOFTWARE", "thermo-sw", "1.0").await;
    let (content_type, body) = multipart(&[
        Part {
            name: "file",
            file_name: Some("sw.tar"),
            content: &data,
        },
        Part {
            name: "checksumAlgorithm",
            file_name: None,
            content: b"MURMUR3_128",
        },
    ]);
    let saved = api
        .raw(
            Method::POST,
            &format!("/api/otaPackage/{}", id_of(&sw)),
            &content_type,
            body,
        )
        .await
        .ok();
    assert_eq!(
        saved["checksum"],
        Checksummer::of(ChecksumAlgorithm::Murmur3_128, &data).as_str()
    );
    let empty = create_package(&api, &profile, "FIRMWARE", "no-data", "1.0").await;

    let all = api
        .get("/api/otaPackages?pageSize=10&page=0&sortProperty=title&sortOrder=ASC")
        .await
        .ok();
    assert_eq!(all["totalElements"], 4);
    assert_eq!(all["data"][0]["title"], "no-data");
    let fws = api
        .get(&format!(
            "/api/otaPackages/{profile}/FIRMWARE?pageSize=10&page=0"
        ))
        .await
        .ok();
    let titles: Vec<String> = fws["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["title"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        titles,
        ["thermo-fw 1.0", "thermo-fw 1.1"],
        "only packages with data"
    );
    let sws = api
        .get(&format!(
            "/api/otaPackages/{profile}/SOFTWARE?pageSize=10&page=0"
        ))
        .await
        .ok();
    assert_eq!(sws["totalElements"], 1);

    api.delete(&format!("/api/otaPackage/{id}")).await.ok();
    api.get(&format!("/api/otaPackage/info/{id}"))
        .await
        .error(404, 32);
    let (status, _, _) = download(&api, &id).await;
    assert_eq!(status, 404);
    api.delete(&format!("/api/otaPackage/{id}"))
        .await
        .error(404, 32);
    let (status, _, _) = download(&api, &id_of(&empty)).await;
    assert_eq!(status, 400, "nothing uploaded yet");
}

async fn package_refusals(app: &TestApp) {
    let api = Api::tenant(app).await;
    let profile = default_profile(&api).await;
    let pkg = create_package(&api, &profile, "FIRMWARE", "fw", "1.0").await;
    let id = id_of(&pkg);
    let data = image(5000);

    let wrong = upload(
        &api,
        &id,
        "?checksumAlgorithm=MD5&checksum=00ff",
        &[],
        &data,
    )
    .await;
    assert_eq!(wrong.error(400, 31), "Wrong otaPackage file!");
    let info = api.get(&format!("/api/otaPackage/info/{id}")).await.ok();
    assert_eq!(info["hasData"], false, "a refused upload keeps nothing");
    let empty = upload(&api, &id, "?checksumAlgorithm=MD5", &[], b"").await;
    assert_eq!(empty.error(400, 31), "OtaPackage data should be specified!");
    let no_alg = upload(&api, &id, "", &[], &data).await;
    assert_eq!(
        no_alg.error(400, 31),
        "Required request parameter 'checksumAlgorithm' is not present"
    );
    let bad_alg = upload(&api, &id, "?checksumAlgorithm=SHA1", &[], &data).await;
    assert!(bad_alg.error(400, 31).contains("SHA1"));
    let not_multipart = api
        .raw(
            Method::POST,
            &format!("/api/otaPackage/{id}?checksumAlgorithm=MD5"),
            "application/octet-stream",
            data.clone(),
        )
        .await;
    not_multipart.error(400, 31);
    // After all that, the right file is taken.
    let md5 = Checksummer::of(ChecksumAlgorithm::Md5, &data);
    upload(
        &api,
        &id,
        &format!("?checksumAlgorithm=MD5&checksum={md5}"),
        &[],
        &data,
    )
    .await
    .ok();

    let dup = api
        .post(
            "/api/otaPackage",
            json!({"title": "fw", "version": "1.0", "type": "SOFTWARE",
                   "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile}}),
        )
        .await;
    assert_eq!(
        dup.error(400, 31),
        "OtaPackage with such title and version already exists!"
    );
    for (body, message) in [
        (
            json!({"version": "1", "type": "FIRMWARE", "deviceProfileId": {"id": profile}}),
            "OtaPackage title should be specified!",
        ),
        (
            json!({"title": "t", "type": "FIRMWARE", "deviceProfileId": {"id": profile}}),
            "OtaPackage version should be specified!",
        ),
        (
            json!({"title": "t", "version": "1", "deviceProfileId": {"id": profile}}),
            "Type should be specified!",
        ),
        (
            json!({"title": "t", "version": "1", "type": "FIRMWARE"}),
            "OtaPackage should be assigned to device profile!",
        ),
        (
            json!({"title": "t", "version": "1", "type": "FIRMWARE", "usesUrl": true, "deviceProfileId": {"id": profile}}),
            "OtaPackage URL should be specified!",
        ),
    ] {
        assert_eq!(
            api.post("/api/otaPackage", body).await.error(400, 31),
            message
        );
    }
    let unknown_profile = api
        .post(
            "/api/otaPackage",
            json!({"title": "t", "version": "1", "type": "FIRMWARE",
                   "deviceProfileId": {"id": uuid::Uuid::new_v4()}}),
        )
        .await;
    unknown_profile.error(400, 31);

    // A URL package has no file to upload or download.
    let remote = api
        .post(
            "/api/otaPackage",
            json!({"title": "remote", "version": "1", "type": "FIRMWARE", "usesUrl": true,
                   "url": "https://example.com/fw.bin", "deviceProfileId": {"id": profile}}),
        )
        .await
        .ok();
    assert_eq!(remote["url"], "https://example.com/fw.bin");
    upload(&api, &id_of(&remote), "?checksumAlgorithm=MD5", &[], &data)
        .await
        .error(400, 31);

    // Unknown ids and another tenant's package are not found.
    let missing = uuid::Uuid::new_v4();
    api.get(&format!("/api/otaPackage/info/{missing}"))
        .await
        .error(404, 32);
    upload(
        &api,
        &missing.to_string(),
        "?checksumAlgorithm=MD5",
        &[],
        &data,
    )
    .await
    .error(404, 32);
    api.get("/api/otaPackage/info/not-a-uuid")
        .await
        .error(400, 31);
    let store = &app.app.as_ref().unwrap().state.services.store;
    let other = Tenant {
        id: TenantId::new(),
        title: "Other".into(),
        created_time: 1,
    };
    store.create_tenant(&other).await.unwrap();
    let other_profile = DeviceProfile::new(other.id, "default", true, 1);
    store.create_profile(&other_profile).await.unwrap();
    let foreign = OtaPackage {
        id: OtaPackageId::new(),
        tenant_id: other.id,
        created_time: 1,
        profile_id: other_profile.id,
        package_type: OtaPackageType::Firmware,
        title: "foreign".into(),
        version: "1".into(),
        tag: None,
        url: None,
        data: None,
        additional_info: serde_json::Value::Null,
    };
    store.create_package(&foreign).await.unwrap();
    api.get(&format!("/api/otaPackage/info/{}", foreign.id))
        .await
        .error(403, 20);
    upload(
        &api,
        &foreign.id.to_string(),
        "?checksumAlgorithm=MD5",
        &[],
        &data,
    )
    .await
    .error(403, 20);
    api.delete(&format!("/api/otaPackage/{}", foreign.id))
        .await
        .error(403, 20);
    let foreign_profile = other_profile.id.0;
    api.post(
        "/api/otaPackage",
        json!({"title": "x", "version": "1", "type": "FIRMWARE", "deviceProfileId": {"id": foreign_profile}}),
    )
    .await
    .error(400, 31);
}

crate::both_backends!(packages_upload_download_and_list, package_refusals);

/// Uploads past `ota.max_package_bytes` are 413 and keep nothing.
async fn too_large_upload(backend: crate::common::Backend) {
    let app = spawn_app_with(backend, |c| c.ota.max_package_bytes = 100_000).await;
    let api = Api::tenant(&app).await;
    let profile = default_profile(&api).await;
    let pkg = create_package(&api, &profile, "FIRMWARE", "big", "1.0").await;
    let id = id_of(&pkg);
    let big = upload(&api, &id, "?checksumAlgorithm=SHA256", &[], &image(300_000)).await;
    big.error(413, 31);
    let info = api.get(&format!("/api/otaPackage/info/{id}")).await.ok();
    assert_eq!(info["hasData"], false);
    // Exactly the limit is taken; and the route is not bound by http.max_body_bytes (1 MiB here).
    let fits = upload(&api, &id, "?checksumAlgorithm=SHA256", &[], &image(100_000))
        .await
        .ok();
    assert_eq!(fits["dataSize"], 100_000);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_upload_sqlite() {
    too_large_upload(crate::common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_upload_postgres() {
    too_large_upload(crate::common::Backend::Postgres).await;
}
