//! Isolation: every REST route, called by each kind of caller on entities it does and does not
//! own, answers ThingsBoard's status (403 for another tenant's or customer's entity, 404 for an
//! id that does not exist), and the refused calls change nothing. One table: (caller, method,
//! path, body, expected status).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::support::*;
use crate::tenancy::{id_of, new_customer, new_tenant, sysadmin};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// The system administrator.
    Sys,
    /// Tenant A's administrator.
    Ta,
    /// The user of tenant A's customer A1.
    Ca,
    /// Tenant B's administrator.
    Tb,
    /// No token.
    Anon,
}
use Caller::*;

/// The entities the rows refer to, by placeholder.
struct World {
    names: Vec<(&'static str, String)>,
}

impl World {
    fn fill(&self, text: &str) -> String {
        self.names
            .iter()
            .fold(text.to_owned(), |t, (k, v)| t.replace(k, v))
    }
}

const GET: &str = "GET";
const POST: &str = "POST";
const DELETE: &str = "DELETE";
const PAGE: &str = "pageSize=10&page=0";

/// (caller, method, path, body, status). `{dA1}` is tenant A's device of customer A1, `{dA0}` its
/// unassigned device, `{dB}` tenant B's device; `{cA1}`, `{cA2}`, `{cB}` customers; `{tA}`, `{tB}`
/// tenants; `{uTA}`, `{uB}` the tenant administrators' user ids; `{rB}` a persistent RPC of
/// `{dB}`; `{pB}` tenant B's default profile; `{miss}` an id that exists nowhere.
fn rows() -> Vec<(Caller, &'static str, String, Option<Value>, u16)> {
    let t = TELEMETRY;
    let mut rows: Vec<(Caller, &'static str, String, Option<Value>, u16)> = Vec::new();
    let mut add = |c: Caller, m: &'static str, p: &str, b: Option<Value>, s: u16| {
        rows.push((c, m, p.to_owned(), b, s));
    };
    // Devices.
    for (who, status) in [(Ta, 403), (Ca, 403), (Sys, 403), (Tb, 200), (Anon, 401)] {
        add(who, GET, "/api/device/{dB}", None, status);
    }
    add(Ta, GET, "/api/device/{miss}", None, 404);
    add(Ca, GET, "/api/device/{dA0}", None, 403);
    add(Ca, GET, "/api/device/{dA1}", None, 200);
    add(Ta, GET, "/api/device/info/{dB}", None, 403);
    add(Ca, GET, "/api/device/info/{dA0}", None, 403);
    add(Ca, GET, "/api/device/info/{dA1}", None, 200);
    add(Ta, DELETE, "/api/device/{dB}", None, 403);
    add(Ca, DELETE, "/api/device/{dA1}", None, 403);
    add(Ta, DELETE, "/api/device/{miss}", None, 404);
    add(
        Ta,
        POST,
        "/api/device",
        Some(json!({"id": {"id": "{dB}"}, "name": "stolen"})),
        403,
    );
    add(
        Ta,
        POST,
        "/api/device",
        Some(json!({"id": {"id": "{miss}"}, "name": "ghost"})),
        404,
    );
    add(
        Ca,
        POST,
        "/api/device",
        Some(json!({"name": "by-customer"})),
        403,
    );
    add(
        Ca,
        POST,
        "/api/device",
        Some(json!({"id": {"id": "{dA0}"}, "name": "not-its-own"})),
        403,
    );
    add(
        Ca,
        POST,
        "/api/device",
        Some(json!({"id": {"id": "{dA1}"}, "name": "a-assigned", "label": "by its customer"})),
        200,
    );
    add(
        Sys,
        POST,
        "/api/device",
        Some(json!({"name": "by-sysadmin"})),
        403,
    );
    add(Ta, GET, "/api/devices?deviceIds={dB}", None, 200);
    add(Sys, GET, "/api/devices?deviceIds={dB}", None, 403);
    for path in [
        "/api/tenant/devices?pageSize=10&page=0",
        "/api/tenant/deviceInfos?pageSize=10&page=0",
        "/api/tenant/device?deviceName=b-device",
    ] {
        add(Ca, GET, path, None, 403);
        add(Sys, GET, path, None, 403);
    }
    add(Ta, GET, "/api/tenant/device?deviceName=b-device", None, 404);
    add(
        Ta,
        GET,
        "/api/tenant/devices?deviceName=b-device",
        None,
        404,
    );
    // Credentials.
    add(Ta, GET, "/api/device/{dB}/credentials", None, 403);
    add(Ca, GET, "/api/device/{dA0}/credentials", None, 403);
    add(Ca, GET, "/api/device/{dA1}/credentials", None, 200);
    let creds = json!({"deviceId": {"id": "{dB}"}, "credentialsType": "ACCESS_TOKEN", "credentialsId": "stolen-token"});
    add(
        Ta,
        POST,
        "/api/device/credentials",
        Some(creds.clone()),
        403,
    );
    add(Ca, POST, "/api/device/credentials", Some(creds), 403);
    // Device profiles.
    for (path, customer) in [
        ("/api/deviceProfiles?pageSize=10&page=0", 403),
        ("/api/deviceProfileInfos?pageSize=10&page=0", 200),
        ("/api/deviceProfileInfo/default", 200),
    ] {
        add(Sys, GET, path, None, 403);
        add(Ta, GET, path, None, 200);
        add(Ca, GET, path, None, customer);
    }
    add(Ta, GET, "/api/deviceProfile/{pB}", None, 403);
    add(Ta, GET, "/api/deviceProfileInfo/{pB}", None, 403);
    add(Ca, GET, "/api/deviceProfileInfo/{pB}", None, 403);
    add(Tb, GET, "/api/deviceProfile/{pB}", None, 200);
    add(Ta, DELETE, "/api/deviceProfile/{pB}", None, 403);
    add(Ta, POST, "/api/deviceProfile/{pB}/default", None, 403);
    add(Ca, POST, "/api/deviceProfile/{pB}/default", None, 403);
    add(
        Ta,
        POST,
        "/api/deviceProfile",
        Some(json!({"id": {"id": "{pB}"}, "name": "stolen"})),
        403,
    );
    add(
        Ca,
        POST,
        "/api/deviceProfile",
        Some(json!({"name": "by-customer"})),
        403,
    );
    add(
        Sys,
        POST,
        "/api/deviceProfile",
        Some(json!({"name": "by-sysadmin"})),
        403,
    );
    add(Ta, GET, "/api/deviceProfile/{miss}", None, 404);
    add(Ta, GET, "/api/deviceProfileInfo/{miss}", None, 404);
    // Time series and attributes (the legacy and the entity routes).
    let ts = json!({"stolen": 1});
    for (who, device, status) in [
        (Ta, "{dB}", 403),
        (Ca, "{dA0}", 403),
        (Sys, "{dB}", 403),
        (Ca, "{dA1}", 200),
    ] {
        let d = format!("{t}/{device}");
        add(
            who,
            POST,
            &format!("{d}/timeseries/ANY"),
            Some(ts.clone()),
            status,
        );
        add(
            who,
            POST,
            &format!("{d}/timeseries/ANY/60"),
            Some(ts.clone()),
            status,
        );
        add(
            who,
            GET,
            &format!("{d}/values/timeseries?keys=stolen"),
            None,
            status,
        );
        add(
            who,
            GET,
            &format!("{d}/values/timeseries/history?keys=stolen&startTs=0&endTs=1"),
            None,
            status,
        );
        add(who, GET, &format!("{d}/keys/timeseries"), None, status);
        add(
            who,
            POST,
            &format!("{d}/SERVER_SCOPE"),
            Some(ts.clone()),
            status,
        );
        add(
            who,
            POST,
            &format!("{d}/attributes/SHARED_SCOPE"),
            Some(ts.clone()),
            status,
        );
        add(who, GET, &format!("{d}/values/attributes"), None, status);
        add(
            who,
            GET,
            &format!("{d}/values/attributes/SERVER_SCOPE"),
            None,
            status,
        );
        add(who, GET, &format!("{d}/keys/attributes"), None, status);
        add(
            who,
            GET,
            &format!("{d}/keys/attributes/SERVER_SCOPE"),
            None,
            status,
        );
        let legacy = format!("/api/plugins/telemetry/{device}/SHARED_SCOPE");
        add(who, POST, &legacy, Some(ts.clone()), status);
        if status != 200 {
            add(
                who,
                DELETE,
                &format!("{d}/timeseries/delete?keys=bTemp&deleteAllDataForKeys=true"),
                None,
                status,
            );
            add(
                who,
                DELETE,
                &format!("{d}/SERVER_SCOPE?keys=bAttr"),
                None,
                status,
            );
            add(who, DELETE, &format!("{legacy}?keys=bAttr"), None, status);
        }
    }
    add(
        Ta,
        GET,
        &format!("{t}/{{miss}}/values/timeseries?keys=a"),
        None,
        404,
    );
    // RPC.
    let rpc = json!({"method": "stolen", "params": {}, "persistent": true});
    for (who, device) in [(Ta, "{dB}"), (Ca, "{dA0}")] {
        add(
            who,
            POST,
            &format!("/api/plugins/rpc/oneway/{device}"),
            Some(rpc.clone()),
            403,
        );
        add(
            who,
            POST,
            &format!("/api/rpc/oneway/{device}"),
            Some(rpc.clone()),
            403,
        );
        add(
            who,
            POST,
            &format!("/api/rpc/twoway/{device}"),
            Some(rpc.clone()),
            403,
        );
        add(
            who,
            GET,
            &format!("/api/rpc/persistent/device/{device}?{PAGE}"),
            None,
            403,
        );
    }
    add(Ca, POST, "/api/rpc/oneway/{dA1}", Some(rpc), 200);
    add(
        Ca,
        GET,
        &format!("/api/rpc/persistent/device/{{dA1}}?{PAGE}"),
        None,
        200,
    );
    add(Ta, GET, "/api/rpc/persistent/{rB}", None, 403);
    add(Ta, DELETE, "/api/rpc/persistent/{rB}", None, 403);
    add(Ca, DELETE, "/api/rpc/persistent/{rB}", None, 403);
    add(Ta, GET, "/api/rpc/persistent/{miss}", None, 404);
    add(Tb, GET, "/api/rpc/persistent/{rB}", None, 200);
    // Tenants.
    for who in [Ta, Ca] {
        add(who, GET, "/api/tenant/{tB}", None, 403);
        add(who, GET, "/api/tenant/info/{tB}", None, 403);
        add(who, DELETE, "/api/tenant/{tB}", None, 403);
        add(
            who,
            POST,
            "/api/tenant",
            Some(json!({"id": {"id": "{tB}"}, "title": "Renamed"})),
            403,
        );
        add(who, GET, &format!("/api/tenants?{PAGE}"), None, 403);
        add(who, GET, &format!("/api/tenantInfos?{PAGE}"), None, 403);
        add(
            who,
            GET,
            &format!("/api/tenant/{{tB}}/users?{PAGE}"),
            None,
            403,
        );
    }
    add(Ta, GET, "/api/tenant/{tA}", None, 200);
    add(Sys, GET, "/api/tenant/{tB}", None, 200);
    add(Sys, GET, "/api/tenant/{miss}", None, 404);
    add(Sys, DELETE, "/api/tenant/{miss}", None, 404);
    // Customers and their devices.
    add(Ta, GET, "/api/customer/{cB}", None, 403);
    add(Ca, GET, "/api/customer/{cA2}", None, 403);
    add(Ca, GET, "/api/customer/{cA1}", None, 200);
    add(Sys, GET, "/api/customer/{cA1}", None, 403);
    add(Ta, GET, "/api/customer/{miss}", None, 404);
    add(Ta, DELETE, "/api/customer/{cB}", None, 403);
    add(Ca, DELETE, "/api/customer/{cA1}", None, 403);
    add(
        Ta,
        POST,
        "/api/customer",
        Some(json!({"id": {"id": "{cB}"}, "title": "Renamed"})),
        403,
    );
    add(
        Ca,
        POST,
        "/api/customer",
        Some(json!({"title": "By customer"})),
        403,
    );
    add(Sys, GET, &format!("/api/customers?{PAGE}"), None, 403);
    add(Ca, GET, &format!("/api/customers?{PAGE}"), None, 403);
    add(
        Ta,
        GET,
        "/api/tenant/customers?customerTitle=B-Customer",
        None,
        404,
    );
    for suffix in ["users", "devices", "deviceInfos"] {
        add(
            Ta,
            GET,
            &format!("/api/customer/{{cB}}/{suffix}?{PAGE}"),
            None,
            403,
        );
    }
    add(
        Ca,
        GET,
        &format!("/api/customer/{{cA2}}/devices?{PAGE}"),
        None,
        403,
    );
    add(
        Ca,
        GET,
        &format!("/api/customer/{{cA2}}/deviceInfos?{PAGE}"),
        None,
        403,
    );
    add(
        Ca,
        GET,
        &format!("/api/customer/{{cA1}}/users?{PAGE}"),
        None,
        403,
    );
    add(Ta, POST, "/api/customer/{cB}/device/{dA0}", None, 403);
    add(Ta, POST, "/api/customer/{cA1}/device/{dB}", None, 403);
    add(Ca, POST, "/api/customer/{cA1}/device/{dA0}", None, 403);
    add(Ta, DELETE, "/api/customer/device/{dB}", None, 403);
    add(Ca, DELETE, "/api/customer/device/{dA1}", None, 403);
    // Claiming: by name within the caller's tenant; customer users only.
    let key = json!({"secretKey": ""});
    add(
        Ta,
        POST,
        "/api/customer/device/a-unassigned/claim",
        Some(key.clone()),
        403,
    );
    add(
        Sys,
        POST,
        "/api/customer/device/a-unassigned/claim",
        Some(key.clone()),
        403,
    );
    add(
        Ca,
        POST,
        "/api/customer/device/b-device/claim",
        Some(key.clone()),
        404,
    );
    add(
        Ca,
        DELETE,
        "/api/customer/device/a-unassigned/claim",
        None,
        403,
    );
    add(Ca, DELETE, "/api/customer/device/b-device/claim", None, 404);
    add(Ta, DELETE, "/api/customer/device/b-device/claim", None, 404);
    add(
        Sys,
        DELETE,
        "/api/customer/device/b-device/claim",
        None,
        403,
    );
    add(Anon, POST, "/api/v1/no-such-token/claim", Some(key), 401);
    // The device HTTP API: the access token in the path is the only credential.
    let payload = json!({"stolen": 1});
    for (method, path) in [
        (POST, "/api/v1/no-such-token/telemetry"),
        (POST, "/api/v1/no-such-token/attributes"),
        (GET, "/api/v1/no-such-token/attributes"),
        (GET, "/api/v1/no-such-token/attributes/updates?timeout=1"),
        (GET, "/api/v1/no-such-token/rpc?timeout=1"),
        (POST, "/api/v1/no-such-token/rpc"),
        (POST, "/api/v1/no-such-token/rpc/1"),
        (GET, "/api/v1/no-such-token/firmware?title=b-fw&version=1"),
        (GET, "/api/v1/no-such-token/software?title=b-fw&version=1"),
    ] {
        add(Ta, method, path, Some(payload.clone()), 401);
    }
    // OTA packages: another tenant's is 403 everywhere, and cannot be assigned (it does not exist
    // for the caller); a customer user reads its tenant's infos and lists, and changes nothing.
    for who in [Ta, Ca] {
        add(who, GET, "/api/otaPackage/info/{oB}", None, 403);
        add(who, GET, &format!("/api/otaPackages?{PAGE}"), None, 200);
    }
    add(Ta, GET, "/api/otaPackage/{oB}", None, 403);
    add(Ta, GET, "/api/otaPackage/{oB}/download", None, 403);
    add(Ta, DELETE, "/api/otaPackage/{oB}", None, 403);
    add(
        Ta,
        POST,
        "/api/otaPackage/{oB}?checksumAlgorithm=MD5",
        Some(json!({})),
        403,
    );
    add(Ta, GET, "/api/otaPackage/info/{miss}", None, 404);
    add(Ta, DELETE, "/api/otaPackage/{miss}", None, 404);
    add(Tb, GET, "/api/otaPackage/info/{oB}", None, 200);
    add(Sys, GET, "/api/otaPackage/info/{oB}", None, 403);
    add(Sys, GET, &format!("/api/otaPackages?{PAGE}"), None, 403);
    for (who, device) in [(Ta, "a-ota-assign"), (Tb, "b-ota-assign")] {
        let status = if who == Tb { 200 } else { 400 };
        add(
            who,
            POST,
            "/api/device",
            Some(
                json!({"name": device, "firmwareId": {"entityType": "OTA_PACKAGE", "id": "{oB}"}}),
            ),
            status,
        );
    }
    add(
        Ta,
        POST,
        "/api/deviceProfile",
        Some(json!({"name": "a-ota-profile", "firmwareId": {"id": "{oB}"}})),
        400,
    );
    add(
        Ta,
        POST,
        "/api/otaPackage",
        Some(
            json!({"title": "a-fw", "version": "2", "type": "FIRMWARE", "deviceProfileId": {"id": "{pB}"}}),
        ),
        400,
    );
    add(Ca, GET, "/api/otaPackage/info/{oA}", None, 200);
    add(
        Ca,
        GET,
        &format!("/api/otaPackages/{{pA}}/FIRMWARE?{PAGE}"),
        None,
        200,
    );
    add(Ca, GET, "/api/otaPackage/{oA}", None, 403);
    add(Ca, GET, "/api/otaPackage/{oA}/download", None, 403);
    add(Ca, DELETE, "/api/otaPackage/{oA}", None, 403);
    add(
        Ca,
        POST,
        "/api/otaPackage",
        Some(
            json!({"title": "c-fw", "version": "1", "type": "FIRMWARE", "deviceProfileId": {"id": "{pA}"}}),
        ),
        403,
    );
    add(
        Ca,
        POST,
        "/api/otaPackage/{oA}?checksumAlgorithm=MD5",
        Some(json!({})),
        403,
    );
    // Users.
    for who in [Ta, Ca] {
        add(who, GET, "/api/user/{uB}", None, 403);
        add(who, DELETE, "/api/user/{uB}", None, 403);
        add(
            who,
            POST,
            "/api/user/{uB}/userCredentialsEnabled?userCredentialsEnabled=false",
            None,
            403,
        );
        add(who, GET, "/api/user/{uB}/token", None, 403);
        add(who, GET, "/api/user/{uB}/activationLink", None, 403);
        add(who, GET, "/api/user/{uB}/activationLinkInfo", None, 403);
        add(
            who,
            POST,
            "/api/user",
            Some(
                json!({"id": {"id": "{uB}"}, "email": "b-admin@stolen.org", "authority": "TENANT_ADMIN"}),
            ),
            403,
        );
    }
    add(Ca, GET, "/api/user/{uTA}", None, 403);
    add(Ta, GET, "/api/user/{miss}", None, 404);
    add(Sys, GET, &format!("/api/users?{PAGE}"), None, 403);
    add(Ta, GET, &format!("/api/users?{PAGE}"), None, 200);
    add(Anon, GET, &format!("/api/users?{PAGE}"), None, 401);
    // Authentication and the unauthenticated routes.
    add(Anon, GET, "/api/auth/user", None, 401);
    add(Ca, GET, "/api/auth/user", None, 200);
    add(
        Anon,
        POST,
        "/api/auth/login",
        Some(json!({"username": "ta@nowhere.org", "password": "x"})),
        401,
    );
    add(
        Anon,
        POST,
        "/api/auth/token",
        Some(json!({"refreshToken": "bogus"})),
        401,
    );
    add(Anon, POST, "/api/auth/logout", None, 401);
    add(
        Ca,
        POST,
        "/api/auth/changePassword",
        Some(json!({"currentPassword": "wrong", "newPassword": "whatever-1"})),
        400,
    );
    add(
        Anon,
        POST,
        "/api/noauth/activate",
        Some(json!({"activateToken": "bogus", "password": "whatever-1"})),
        400,
    );
    add(
        Anon,
        GET,
        "/api/noauth/activate?activateToken=bogus",
        None,
        409,
    );
    add(Anon, GET, "/api/health", None, 200);
    add(Anon, GET, "/api/health/live", None, 200);
    add(Anon, GET, "/api/health/ready", None, 200);
    add(Anon, GET, "/metrics", None, 200);
    add(Anon, GET, "/", None, 200);
    rows
}

async fn isolation_table(app: &TestApp) {
    let sys = sysadmin(app).await;
    let ta = Api::tenant(app).await;
    let (c_a1, ca) = new_customer(app, &ta, "A-Customer").await;
    let c_a2 = id_of(
        &ta.post("/api/customer", json!({"title": "A-Other"}))
            .await
            .ok(),
    );
    let (d_a1, _) = ta.create_device(json!({"name": "a-assigned"})).await;
    let (d_a0, _) = ta.create_device(json!({"name": "a-unassigned"})).await;
    ta.post(&format!("/api/customer/{c_a1}/device/{d_a1}"), json!({}))
        .await
        .ok();
    let (t_b, tb) = new_tenant(app, "B-Tenant").await;
    let c_b = id_of(
        &tb.post("/api/customer", json!({"title": "B-Customer"}))
            .await
            .ok(),
    );
    let (d_b, _) = tb.create_device(json!({"name": "b-device"})).await;
    tb.post(
        &format!("{TELEMETRY}/{d_b}/timeseries/ANY"),
        json!({"bTemp": 1}),
    )
    .await
    .ok();
    tb.post(
        &format!("{TELEMETRY}/{d_b}/SERVER_SCOPE"),
        json!({"bAttr": 1}),
    )
    .await
    .ok();
    let r_b = tb
        .post(
            &format!("/api/rpc/oneway/{d_b}"),
            json!({"method": "m", "params": {}, "persistent": true}),
        )
        .await
        .ok()["rpcId"]
        .as_str()
        .expect("rpcId")
        .to_owned();
    let p_b = id_of(&tb.get("/api/deviceProfileInfo/default").await.ok());
    let p_a = id_of(&ta.get("/api/deviceProfileInfo/default").await.ok());
    let url_package = |title: &str, profile: &str| {
        json!({"title": title, "version": "1", "type": "FIRMWARE", "usesUrl": true,
               "url": format!("https://example.com/{title}.bin"),
               "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile}})
    };
    let o_b = id_of(
        &tb.post("/api/otaPackage", url_package("b-fw", &p_b))
            .await
            .ok(),
    );
    let o_a = id_of(
        &ta.post("/api/otaPackage", url_package("a-fw", &p_a))
            .await
            .ok(),
    );
    let id_claim = |api: &Api, claim: &str| {
        claims(api.token.as_deref().unwrap())[claim]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let world = World {
        names: vec![
            ("{dA1}", d_a1.clone()),
            ("{dA0}", d_a0.clone()),
            ("{dB}", d_b.clone()),
            ("{cA1}", c_a1.clone()),
            ("{cA2}", c_a2.clone()),
            ("{cB}", c_b.clone()),
            ("{tA}", id_claim(&ta, "tenantId")),
            ("{tB}", t_b.clone()),
            ("{uTA}", id_claim(&ta, "userId")),
            ("{uB}", id_claim(&tb, "userId")),
            ("{rB}", r_b.clone()),
            ("{pB}", p_b),
            ("{pA}", p_a),
            ("{oB}", o_b.clone()),
            ("{oA}", o_a.clone()),
            ("{miss}", MISSING_ID.to_owned()),
        ],
    };
    let anon = Api::anonymous(app);
    let mut failures = Vec::new();
    let table = rows();
    for (caller, method, path, body, expected) in &table {
        let api = match caller {
            Sys => &sys,
            Ta => &ta,
            Ca => &ca,
            Tb => &tb,
            Anon => &anon,
        };
        let path = world.fill(path);
        let body = body
            .as_ref()
            .map(|b| serde_json::from_str(&world.fill(&b.to_string())).unwrap());
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let resp = api.send(method.clone(), &path, body).await;
        if resp.status != *expected {
            failures.push(format!(
                "{caller:?} {method} {path}: {} (wanted {expected}) {}",
                resp.status, resp.text
            ));
        }
    }
    assert!(table.len() > 150, "{} rows", table.len());
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );

    // The refused calls changed nothing.
    let device = tb.get(&format!("/api/device/{d_b}")).await.ok();
    assert_eq!(
        (device["name"].clone(), device["customerId"]["id"].clone()),
        (json!("b-device"), json!(NULL_UUID))
    );
    let latest = tb
        .get(&format!("{TELEMETRY}/{d_b}/values/timeseries"))
        .await
        .ok();
    assert!(
        latest.get("stolen").is_none() && latest.get("bTemp").is_some(),
        "{latest}"
    );
    let attrs = attr_map(
        &tb.get(&format!("{TELEMETRY}/{d_b}/values/attributes"))
            .await
            .ok(),
    );
    assert!(
        attrs.contains_key("bAttr") && !attrs.contains_key("stolen"),
        "{attrs:?}"
    );
    assert_ne!(tb.token_of(&d_b).await, "stolen-token");
    assert_eq!(
        tb.get(&format!("/api/customer/{c_b}")).await.ok()["title"],
        "B-Customer"
    );
    assert_eq!(
        sys.get(&format!("/api/tenant/{t_b}")).await.ok()["title"],
        "B-Tenant"
    );
    crate::tokens::me(app, tb.token.as_deref().unwrap())
        .await
        .ok();
    tb.get(&format!("/api/rpc/persistent/{r_b}")).await.ok();
    // The packages are where they were, A's unassigned to anything of tenant A.
    tb.get(&format!("/api/otaPackage/info/{o_b}")).await.ok();
    ta.get(&format!("/api/otaPackage/info/{o_a}")).await.ok();
    let b_assigned = tb
        .get("/api/tenant/devices?deviceName=b-ota-assign")
        .await
        .ok();
    assert_eq!(b_assigned["firmwareId"]["id"], json!(o_b.as_str()));
    let unassigned = ta.get(&format!("/api/device/{d_a0}")).await.ok();
    assert_eq!(
        (
            unassigned["name"].clone(),
            unassigned["customerId"]["id"].clone()
        ),
        (json!("a-unassigned"), json!(NULL_UUID))
    );
    // The customer's own update kept the device its customer's.
    let own = ta.get(&format!("/api/device/{d_a1}")).await.ok();
    assert_eq!(
        (own["label"].clone(), own["customerId"]["id"].clone()),
        (json!("by its customer"), json!(c_a1.as_str()))
    );
    ta.get(&format!("/api/customer/{c_a1}")).await.ok();
    // Lists hold only the caller's rows.
    assert_eq!(
        ta.get(&format!("/api/devices?deviceIds={d_b},{d_a0}"))
            .await
            .ok()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        ca.get(&format!("/api/devices?deviceIds={d_a1},{d_a0}"))
            .await
            .ok()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let users = ca.get(&format!("/api/users?{PAGE}")).await.ok();
    assert_eq!(users["totalElements"], 1, "{users}");
    let ta_users = ta.get(&format!("/api/users?{PAGE}")).await.ok();
    assert!(
        ta_users["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["tenantId"]["id"] == world.fill("{tA}").as_str())
    );
}

crate::both_backends!(isolation_table);
