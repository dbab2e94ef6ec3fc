//! Login, JWT claims, refresh, the current user, 401/403 answers, health and metrics.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TENANT_EMAIL, TENANT_PASSWORD, TestApp};
use crate::support::*;

async fn login_tokens_are_thingsboard_jwts(app: &TestApp) {
    let anon = Api::anonymous(app);
    let before = now_ms() / 1000;
    let pair = anon
        .post(
            "/api/auth/login",
            json!({"username": TENANT_EMAIL, "password": TENANT_PASSWORD}),
        )
        .await
        .ok();
    let access = claims(pair["token"].as_str().expect("token"));
    let refresh = claims(pair["refreshToken"].as_str().expect("refreshToken"));
    assert_eq!(access["sub"], TENANT_EMAIL);
    assert_eq!(access["scopes"], json!(["TENANT_ADMIN"]));
    assert_eq!(access["iss"], "thingsboard.io");
    let iat = access["iat"].as_i64().expect("iat");
    assert!(
        (before - 5..=before + 60).contains(&iat),
        "iat {iat} is seconds"
    );
    assert_eq!(access["exp"].as_i64(), Some(iat + 9000));
    assert!(access["tenantId"].as_str().is_some_and(|t| t != NULL_UUID));
    assert_eq!(access["customerId"], NULL_UUID);
    assert_eq!(access["enabled"], true);
    assert_eq!(access["isPublic"], false);
    assert_eq!(refresh["scopes"], json!(["REFRESH_TOKEN"]));
    assert_eq!(
        refresh["exp"].as_i64(),
        Some(refresh["iat"].as_i64().expect("iat") + 604_800)
    );
    assert!(refresh["jti"].is_string());
}

async fn refresh_and_current_user(app: &TestApp) {
    let anon = Api::anonymous(app);
    let login = json!({"username": TENANT_EMAIL, "password": TENANT_PASSWORD});
    let pair = anon.post("/api/auth/login", login).await.ok();
    let access = claims(pair["token"].as_str().expect("token"));
    // The refresh token gets a new pair, and is not an access token itself.
    let refreshed = anon
        .post(
            "/api/auth/token",
            json!({"refreshToken": pair["refreshToken"]}),
        )
        .await
        .ok();
    assert_eq!(
        claims(refreshed["token"].as_str().expect("token"))["sub"],
        TENANT_EMAIL
    );
    let as_access = Api {
        token: Some(pair["refreshToken"].as_str().expect("refresh").to_owned()),
        ..Api::anonymous(app)
    };
    as_access.get("/api/auth/user").await.error(401, 10);
    anon.post("/api/auth/token", json!({"refreshToken": pair["token"]}))
        .await
        .error(401, 10);

    let user = Api {
        token: Some(refreshed["token"].as_str().expect("token").to_owned()),
        ..Api::anonymous(app)
    };
    let me = user.get("/api/auth/user").await.ok();
    assert_eq!(me["id"]["entityType"], "USER");
    assert_eq!(me["id"]["id"], access["userId"]);
    assert_eq!(me["email"], TENANT_EMAIL);
    assert_eq!(me["name"], TENANT_EMAIL);
    assert_eq!(me["authority"], "TENANT_ADMIN");
    assert_eq!(
        me["tenantId"],
        json!({"entityType": "TENANT", "id": access["tenantId"]})
    );
    assert_eq!(
        me["customerId"],
        json!({"entityType": "CUSTOMER", "id": NULL_UUID})
    );
    assert_eq!(me["additionalInfo"], json!({}));
    assert!(me["phone"].is_null() && me["createdTime"].is_i64());
    assert_eq!(
        user.send(Method::POST, "/api/auth/logout", None).await.ok(),
        Value::Null
    );
}

async fn login_failures(app: &TestApp) {
    let anon = Api::anonymous(app);
    let wrong = anon
        .post(
            "/api/auth/login",
            json!({"username": TENANT_EMAIL, "password": "nope"}),
        )
        .await;
    assert_eq!(wrong.error(401, 10), "Invalid username or password");
    let unknown = anon
        .post(
            "/api/auth/login",
            json!({"username": "who@example.com", "password": "x"}),
        )
        .await;
    assert_eq!(unknown.error(401, 10), "Invalid username or password");
    let blank = anon
        .post("/api/auth/login", json!({"username": "", "password": ""}))
        .await;
    assert_eq!(blank.error(401, 10), "Authentication failed");
    let garbage = anon
        .raw(
            Method::POST,
            "/api/auth/login",
            "application/json",
            b"{nope".to_vec(),
        )
        .await;
    assert_eq!(garbage.error(401, 10), "Authentication failed");

    assert_eq!(
        anon.get("/api/tenant/devices?pageSize=10&page=0")
            .await
            .error(401, 10),
        "Authentication failed"
    );
    let bad = Api {
        token: Some("not.a.token".to_owned()),
        ..Api::anonymous(app)
    };
    bad.get("/api/auth/user").await.error(401, 10);
    // Authorization: Bearer is read when X-Authorization is absent.
    let tenant = Api::tenant(app).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/auth/user", app.http))
        .header(
            "Authorization",
            format!("Bearer {}", tenant.token.as_deref().unwrap_or_default()),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
}

async fn sysadmin_is_denied_tenant_resources(app: &TestApp) {
    let admin = Api::login(app, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await;
    let me = admin.get("/api/auth/user").await.ok();
    assert_eq!(me["authority"], "SYS_ADMIN");
    assert_eq!(me["tenantId"]["id"], NULL_UUID);
    admin
        .get("/api/tenant/devices?pageSize=10&page=0")
        .await
        .error(403, 20);
    admin
        .post("/api/device", json!({"name": "x"}))
        .await
        .error(403, 20);
    admin
        .get(&format!("{TELEMETRY}/{MISSING_ID}/keys/timeseries"))
        .await
        .error(403, 20);
}

async fn health_and_metrics(app: &TestApp) {
    let anon = Api::anonymous(app);
    let health = anon.get("/api/health").await.ok();
    assert_eq!(
        health,
        json!({"status": "UP", "components": {"database": "UP", "bus": "LOCAL", "mqtt": "UP"}})
    );
    let metrics = anon.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.starts_with("text/plain"),
        "{}",
        metrics.content_type
    );
    assert!(
        metrics.text.contains("ferroboard_http_requests_total"),
        "{}",
        metrics.text
    );
    let index = anon.get("/").await;
    assert_eq!(index.status, 200);
    assert!(index.text.contains("ferroboard"));
}

crate::both_backends!(
    login_tokens_are_thingsboard_jwts,
    refresh_and_current_user,
    login_failures,
    sysadmin_is_denied_tenant_resources,
    health_and_metrics,
);
