//! MQTT over TLS: tokens and basic credentials work unchanged over TLS, a device certificate
//! registered as X509_CERTIFICATE credentials logs the device in, unknown, expired and not yet valid
//! certificates are refused (v3 5 / v5 0x87), a chain profile's CA provisions the devices whose
//! leaves it signed, the server certificate reloads without restart, and
//! unusable certificate files stop the start with an error naming the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{TlsConfiguration, Transport};
use serde_json::json;

use crate::clients::*;
use crate::common::{self, Backend, TestApp};
use crate::support::Api;
use ferroboard::domain::credentials::sha3_hex;
use ferroboard::domain::{DeviceId, KvValue};

/// A certificate authority that signs the server's and the devices' certificates.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

/// A certificate and its private key, PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA cert").pem();
        Self { params, key, pem }
    }

    /// A leaf for `names`, valid from `from_days` to `to_days` relative to now.
    fn issue(&self, names: &[&str], cn: &str, from_days: i64, to_days: i64) -> Issued {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf").pem();
        Issued {
            cert,
            key: key.serialize_pem(),
        }
    }
}

/// The server's certificate files, written where the config points.
struct ServerFiles {
    dir: tempfile::TempDir,
}

impl ServerFiles {
    fn write(ca: &Ca) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Self { dir };
        files.replace(&ca.issue(&["127.0.0.1", "localhost"], "ferroboard", -1, 30));
        files
    }

    fn replace(&self, issued: &Issued) {
        std::fs::write(self.cert(), &issued.cert).expect("write cert");
        std::fs::write(self.key(), &issued.key).expect("write key");
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

async fn tls_app(backend: Backend, files: &ServerFiles) -> TestApp {
    let (cert, key) = (files.cert(), files.key());
    common::spawn_app_with(backend, move |c| {
        c.mqtts_addr = Some("127.0.0.1:0".into());
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await
}

fn mqtts_port(app: &TestApp) -> u16 {
    app.app
        .as_ref()
        .and_then(|a| a.mqtts_addr)
        .expect("MQTT over TLS listens")
        .port()
}

/// An MQTT 3.1.1 client over TLS trusting `ca`, with a client certificate when given.
fn v3_tls(port: u16, ca: &str, username: Option<&str>, client: Option<&Issued>) -> V3 {
    let mut opts = rumqttc::MqttOptions::new(
        format!("c-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(u) = username {
        opts.set_credentials(u, "");
    }
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: ca.as_bytes().to_vec(),
        alpn: None,
        client_auth: client.map(|c| (c.cert.as_bytes().to_vec(), c.key.as_bytes().to_vec())),
    }));
    v3_with(opts)
}

async fn set_x509(api: &Api, device: &str, pem: &str) -> crate::support::Resp {
    let mut body = api
        .get(&format!("/api/device/{device}/credentials"))
        .await
        .ok();
    body["credentialsType"] = json!("X509_CERTIFICATE");
    body["credentialsValue"] = json!(pem);
    api.post("/api/device/credentials", body).await
}

async fn publish_and_check(app: &TestApp, c: &mut V3, device: DeviceId, value: i64) {
    c.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            json!({ "over_tls": value }).to_string(),
        )
        .await
        .expect("queued");
    v3_puback(c).await;
    let latest = state(app)
        .services
        .store
        .latest(device.0, None)
        .await
        .expect("latest");
    assert!(
        latest
            .iter()
            .any(|p| p.key == "over_tls" && p.value == KvValue::Long(value)),
        "{latest:?}"
    );
}

async fn device_certificates_and_tokens_over_tls(backend: Backend) {
    let ca = Ca::new("test CA");
    let files = ServerFiles::write(&ca);
    let app = tls_app(backend, &files).await;
    let port = mqtts_port(&app);
    let api = Api::tenant(&app).await;

    // A token over TLS, no client certificate.
    let (id, _) = api.create_device(json!({"name": "tls-token"})).await;
    let token = api.token_of(&id).await;
    let device = DeviceId(id.parse().expect("uuid"));
    let mut c = v3_tls(port, &ca.pem, Some(&token), None);
    assert_eq!(v3_connack(&mut c).await, Ok(()));
    publish_and_check(&app, &mut c, device, 1).await;

    // X509_CERTIFICATE credentials: stored normalised, id = SHA3 of the base64 body.
    let device_ca = Ca::new("devices");
    let leaf = device_ca.issue(&[], "sensor-1", -1, 30);
    let (id, _) = api.create_device(json!({"name": "tls-x509"})).await;
    let saved = set_x509(&api, &id, &leaf.cert).await.ok();
    let body: String = leaf
        .cert
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(saved["credentialsType"], "X509_CERTIFICATE");
    assert_eq!(saved["credentialsValue"], json!(body));
    assert_eq!(saved["credentialsId"], json!(sha3_hex(&body)));
    let device = DeviceId(id.parse().expect("uuid"));

    // The certificate alone logs the device in (no username).
    let mut c = v3_tls(port, &ca.pem, None, Some(&leaf));
    assert_eq!(v3_connack(&mut c).await, Ok(()));
    publish_and_check(&app, &mut c, device, 2).await;

    // The same certificate on a second device is refused.
    let (other, _) = api.create_device(json!({"name": "tls-x509-dup"})).await;
    set_x509(&api, &other, &leaf.cert).await.error(400, 31);

    // Not a certificate: 400.
    set_x509(
        &api,
        &other,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----",
    )
    .await
    .error(400, 31);

    // Unknown, expired and not yet valid certificates: CONNACK 5 (not authorized).
    let unknown = device_ca.issue(&[], "sensor-2", -1, 30);
    let expired = device_ca.issue(&[], "sensor-3", -30, -1);
    let future = device_ca.issue(&[], "sensor-4", 1, 30);
    for (what, cert) in [
        ("unknown", &unknown),
        ("expired", &expired),
        ("future", &future),
    ] {
        if what != "unknown" {
            let (id, _) = api
                .create_device(json!({ "name": format!("tls-{what}") }))
                .await;
            set_x509(&api, &id, &cert.cert).await.ok();
        }
        let mut c = v3_tls(port, &ca.pem, None, Some(cert));
        let err = v3_connack(&mut c).await.expect_err(what);
        assert!(err.contains("NotAuthorized"), "{what}: {err}");
    }

    // A certificate presented with a valid token: the certificate decides.
    let mut c = v3_tls(port, &ca.pem, Some(&token), Some(&unknown));
    let err = v3_connack(&mut c)
        .await
        .expect_err("unknown certificate with a token");
    assert!(err.contains("NotAuthorized"), "{err}");

    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_certificates_and_tokens_over_tls_sqlite() {
    device_certificates_and_tokens_over_tls(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_certificates_and_tokens_over_tls_postgres() {
    device_certificates_and_tokens_over_tls(Backend::Postgres).await;
}

/// The leaf followed by its CA, as a client sends its chain.
fn with_chain(leaf: &Issued, ca: &Ca) -> Issued {
    Issued {
        cert: format!("{}{}", leaf.cert, ca.pem),
        key: leaf.key.clone(),
    }
}

fn chain_profile(name: &str, ca_pem: &str, allow_create: bool) -> serde_json::Value {
    json!({
        "name": name,
        "type": "DEFAULT",
        "transportType": "DEFAULT",
        "provisionType": "X509_CERTIFICATE_CHAIN",
        "profileData": {"provisionConfiguration": {
            "type": "X509_CERTIFICATE_CHAIN",
            "provisionDeviceSecret": ca_pem,
            "certificateRegExPattern": "^sensor-(.+)$",
            "allowCreateNewDevicesByX509Certificate": allow_create,
        }},
    })
}

async fn refused(port: u16, server_ca: &str, client: &Issued, what: &str) {
    let mut c = v3_tls(port, server_ca, None, Some(client));
    let err = v3_connack(&mut c).await.expect_err(what);
    assert!(err.contains("NotAuthorized"), "{what}: {err}");
}

async fn chain_provisioning(backend: Backend) {
    let ca = Ca::new("test CA");
    let files = ServerFiles::write(&ca);
    let app = tls_app(backend, &files).await;
    let port = mqtts_port(&app);
    let api = Api::tenant(&app).await;

    // A CA that does not parse, or a pattern without a group: 400.
    let bad = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----";
    api.post("/api/deviceProfile", chain_profile("bad", bad, true))
        .await
        .error(400, 31);
    let device_ca = Ca::new("chain CA");
    let mut no_group = chain_profile("bad", &device_ca.pem, true);
    no_group["profileData"]["provisionConfiguration"]["certificateRegExPattern"] = json!("sensor");
    api.post("/api/deviceProfile", no_group)
        .await
        .error(400, 31);

    // The profile is found by its CA's hash.
    let profile = api
        .post(
            "/api/deviceProfile",
            chain_profile("chain", &device_ca.pem, true),
        )
        .await
        .ok();
    let ca_body: String = device_ca
        .pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(profile["provisionDeviceKey"], json!(sha3_hex(&ca_body)));
    assert_eq!(profile["provisionType"], "X509_CERTIFICATE_CHAIN");

    // A leaf the CA signed creates the device the pattern names, with the leaf as credentials.
    let leaf = with_chain(&device_ca.issue(&[], "sensor-7", -1, 30), &device_ca);
    let mut c = v3_tls(port, &ca.pem, None, Some(&leaf));
    assert_eq!(v3_connack(&mut c).await, Ok(()));
    let device = api.get("/api/tenant/devices?deviceName=7").await.ok();
    assert_eq!(device["deviceProfileId"], profile["id"]);
    let id = device["id"]["id"].as_str().expect("id").to_owned();
    let creds = api.get(&format!("/api/device/{id}/credentials")).await.ok();
    assert_eq!(creds["credentialsType"], "X509_CERTIFICATE");
    let leaf_only: String = leaf
        .cert
        .split("-----END CERTIFICATE-----")
        .next()
        .expect("leaf")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(creds["credentialsValue"], json!(leaf_only));
    let device_id = DeviceId(id.parse().expect("uuid"));
    publish_and_check(&app, &mut c, device_id, 7).await;
    drop(c);

    // Refused: an unknown CA, a CA that did not sign the leaf, an expired leaf, a CN the
    // pattern does not match.
    let other_ca = Ca::new("other CA");
    let unknown = with_chain(&other_ca.issue(&[], "sensor-8", -1, 30), &other_ca);
    refused(port, &ca.pem, &unknown, "unknown CA").await;
    let forged = with_chain(&other_ca.issue(&[], "sensor-9", -1, 30), &device_ca);
    refused(port, &ca.pem, &forged, "CA did not sign").await;
    let expired = with_chain(&device_ca.issue(&[], "sensor-10", -30, -1), &device_ca);
    refused(port, &ca.pem, &expired, "expired").await;
    let unmatched = with_chain(&device_ca.issue(&[], "camera-11", -1, 30), &device_ca);
    refused(port, &ca.pem, &unmatched, "CN not matching").await;
    for name in ["8", "9", "10", "11", "camera-11"] {
        api.get(&format!("/api/tenant/devices?deviceName={name}"))
            .await
            .error(404, 32);
    }

    // Without creation, an existing device of the profile takes the new leaf; others are refused.
    let strict_ca = Ca::new("strict CA");
    let strict = api
        .post(
            "/api/deviceProfile",
            chain_profile("strict", &strict_ca.pem, false),
        )
        .await
        .ok();
    let missing = with_chain(&strict_ca.issue(&[], "sensor-12", -1, 30), &strict_ca);
    refused(port, &ca.pem, &missing, "creation not allowed").await;
    let (id, _) = api
        .create_device(json!({"name": "13", "deviceProfileId": strict["id"]}))
        .await;
    let renewed = with_chain(&strict_ca.issue(&[], "sensor-13", -1, 30), &strict_ca);
    let mut c = v3_tls(port, &ca.pem, None, Some(&renewed));
    assert_eq!(v3_connack(&mut c).await, Ok(()));
    publish_and_check(&app, &mut c, DeviceId(id.parse().expect("uuid")), 13).await;
    let creds = api.get(&format!("/api/device/{id}/credentials")).await.ok();
    assert_eq!(creds["credentialsType"], "X509_CERTIFICATE");

    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_provisioning_sqlite() {
    chain_provisioning(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_provisioning_postgres() {
    chain_provisioning(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_reloads_without_restart() {
    let old_ca = Ca::new("old CA");
    let files = ServerFiles::write(&old_ca);
    let app = tls_app(Backend::Sqlite, &files).await;
    let port = mqtts_port(&app);
    let reloadable = app
        .app
        .as_ref()
        .and_then(|a| a.tls_cert.clone())
        .expect("TLS certificate handle");
    let (_, token) = create_device(&app).await;
    let mut c = v3_tls(port, &old_ca.pem, Some(&token), None);
    assert_eq!(v3_connack(&mut c).await, Ok(()));

    // A broken key file: the reload fails naming it, and the old certificate stays in use.
    std::fs::write(files.key(), "not a key").expect("write");
    let err = reloadable.reload().expect_err("broken key refused");
    assert!(
        err.to_string().contains(&files.key().display().to_string()),
        "{err}"
    );
    let mut c = v3_tls(port, &old_ca.pem, Some(&token), None);
    assert_eq!(
        v3_connack(&mut c).await,
        Ok(()),
        "old certificate still served"
    );

    // A new certificate from another CA: new connections get it, and clients of the old CA fail.
    let new_ca = Ca::new("new CA");
    files.replace(&new_ca.issue(&["127.0.0.1"], "ferroboard", -1, 30));
    reloadable.reload().expect("reload");
    let mut c = v3_tls(port, &new_ca.pem, Some(&token), None);
    assert_eq!(v3_connack(&mut c).await, Ok(()), "new certificate served");
    let mut c = v3_tls(port, &old_ca.pem, Some(&token), None);
    assert!(
        v3_connack(&mut c).await.is_err(),
        "old CA no longer matches"
    );
    app.shutdown().await;
}

async fn start_error(cert: &Path, key: &Path) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ferroboard::config::Config {
        http_addr: "127.0.0.1:0".into(),
        mqtt_addr: "127.0.0.1:0".into(),
        mqtts_addr: Some("127.0.0.1:0".into()),
        tls_cert: Some(cert.to_owned()),
        tls_key: Some(key.to_owned()),
        database_url: format!("sqlite://{}", dir.path().join("db.sqlite").display()),
        rules_dir: common::rules_copy(dir.path()),
        sysadmin_password: Some(common::SYSADMIN_PASSWORD.into()),
        admin_password: Some(common::TENANT_PASSWORD.into()),
        ..ferroboard::config::Config::default()
    };
    match ferroboard::app::start(config).await {
        Ok(_) => panic!("the start must fail"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificate_files_stop_the_start_naming_the_file() {
    let ca = Ca::new("CA");
    let files = ServerFiles::write(&ca);
    let missing = files.dir.path().join("missing.pem");
    let err = start_error(&missing, &files.key()).await;
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let garbage = files.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").expect("write");
    let err = start_error(&garbage, &files.key()).await;
    assert!(err.contains(&garbage.display().to_string()), "{err}");

    // A key that does not belong to the certificate.
    let other = ca.issue(&["127.0.0.1"], "other", -1, 30);
    let other_key = files.dir.path().join("other.key");
    std::fs::write(&other_key, &other.key).expect("write");
    let err = start_error(&files.cert(), &other_key).await;
    assert!(err.contains(&other_key.display().to_string()), "{err}");
}
