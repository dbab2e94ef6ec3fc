//! Hostile and outdated tokens: forged (alg `none`, wrong key, tampered claims, HS256), expired,
//! the wrong kind, used refresh tokens, and tokens of sessions ended by logout or a password change
//! (also on another node; disabled and deleted users are in `users`). Each is refused with 401 and
//! ThingsBoard's error JSON.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::{TENANT_EMAIL, TENANT_PASSWORD, TestApp};
use crate::support::*;

/// An access and a refresh token of a new tenant-admin login.
pub struct Pair {
    pub access: String,
    pub refresh: String,
}

pub async fn login(app: &TestApp, password: &str) -> Pair {
    let pair = Api::anonymous(app)
        .post(
            "/api/auth/login",
            json!({"username": TENANT_EMAIL, "password": password}),
        )
        .await
        .ok();
    Pair {
        access: pair["token"].as_str().expect("token").to_owned(),
        refresh: pair["refreshToken"]
            .as_str()
            .expect("refreshToken")
            .to_owned(),
    }
}

pub fn bearer(app: &TestApp, token: &str) -> Api {
    Api {
        token: Some(token.to_owned()),
        ..Api::anonymous(app)
    }
}

/// `GET /api/auth/user` with `token`.
pub async fn me(app: &TestApp, token: &str) -> Resp {
    bearer(app, token).get("/api/auth/user").await
}

pub async fn refresh(app: &TestApp, token: &str) -> Resp {
    Api::anonymous(app)
        .post("/api/auth/token", json!({"refreshToken": token}))
        .await
}

fn refreshed(resp: &Resp) -> Pair {
    let pair = resp.ok();
    Pair {
        access: pair["token"].as_str().expect("token").to_owned(),
        refresh: pair["refreshToken"]
            .as_str()
            .expect("refreshToken")
            .to_owned(),
    }
}

fn secret(app: &TestApp) -> String {
    app.app.as_ref().expect("running").state.jwt_secret.clone()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(alg: Algorithm, claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).expect("sign")
}

async fn forged_tokens_are_refused(app: &TestApp) {
    let pair = login(app, TENANT_PASSWORD).await;
    me(app, &pair.access).await.ok();
    let claims = claims(&pair.access);
    let key = secret(app);

    // alg "none": the claims of a real token without a signature.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    me(app, &none).await.error(401, 10);
    // The same claims signed with another key, and with HS256 under the server's key.
    let other = sign(Algorithm::HS512, &claims, &[7u8; 64]);
    me(app, &other).await.error(401, 10);
    let hs256 = sign(Algorithm::HS256, &claims, key.as_bytes());
    me(app, &hs256).await.error(401, 10);
    // Tampered claims under the original signature.
    let mut raised = claims.clone();
    raised["scopes"] = json!(["SYS_ADMIN"]);
    let parts: Vec<&str> = pair.access.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(raised.to_string().as_bytes()),
        parts[2]
    );
    me(app, &tampered).await.error(401, 10);
    // Validly signed, but of a session that never existed: outdated, as ThingsBoard says.
    let mut unknown = claims.clone();
    unknown["sessionId"] = json!(uuid::Uuid::new_v4().to_string());
    let msg = me(app, &sign(Algorithm::HS512, &unknown, key.as_bytes()))
        .await
        .error(401, 11);
    assert_eq!(msg, "Token has expired");
    // Validly signed without a session id at all.
    let mut sessionless = claims.clone();
    sessionless
        .as_object_mut()
        .expect("claims")
        .remove("sessionId");
    me(app, &sign(Algorithm::HS512, &sessionless, key.as_bytes()))
        .await
        .error(401, 10);
    // The real token still works: nothing above changed it.
    me(app, &pair.access).await.ok();
}

async fn expired_tokens_are_refused(app: &TestApp) {
    let pair = login(app, TENANT_PASSWORD).await;
    let key = secret(app);
    let past = now_ms() / 1000 - 20_000;
    for token in [&pair.access, &pair.refresh] {
        let mut c = claims(token);
        c["iat"] = json!(past);
        c["exp"] = json!(past + 9000);
        let expired = sign(Algorithm::HS512, &c, key.as_bytes());
        if token == &pair.access {
            assert_eq!(me(app, &expired).await.error(401, 11), "Token has expired");
        } else {
            refresh(app, &expired).await.error(401, 11);
        }
    }
}

async fn access_and_refresh_tokens_are_not_interchangeable(app: &TestApp) {
    let pair = login(app, TENANT_PASSWORD).await;
    assert_eq!(
        me(app, &pair.refresh).await.error(401, 10),
        "Authentication failed"
    );
    refresh(app, &pair.access).await.error(401, 10);
    bearer(app, &pair.refresh)
        .get("/api/tenant/devices?pageSize=10&page=0")
        .await
        .error(401, 10);
}

async fn refresh_tokens_rotate(app: &TestApp) {
    let first = login(app, TENANT_PASSWORD).await;
    let second = refreshed(&refresh(app, &first.refresh).await);
    assert_eq!(
        claims(&second.access)["sessionId"],
        claims(&first.access)["sessionId"],
        "a refresh keeps the session"
    );
    assert_ne!(
        claims(&second.refresh)["jti"],
        claims(&first.refresh)["jti"]
    );
    // The used refresh token is refused; the one it was exchanged for works, once.
    refresh(app, &first.refresh).await.error(401, 10);
    let third = refreshed(&refresh(app, &second.refresh).await);
    refresh(app, &second.refresh).await.error(401, 10);
    me(app, &third.access).await.ok();
    me(app, &first.access).await.ok();
}

async fn logout_ends_the_session(app: &TestApp) {
    let ended = login(app, TENANT_PASSWORD).await;
    let other = login(app, TENANT_PASSWORD).await;
    bearer(app, &ended.access)
        .post("/api/auth/logout", json!({}))
        .await
        .ok();
    assert_eq!(
        me(app, &ended.access).await.error(401, 11),
        "Token has expired"
    );
    refresh(app, &ended.refresh).await.error(401, 10);
    bearer(app, &ended.access)
        .post("/api/auth/logout", json!({}))
        .await
        .error(401, 11);
    // The user's other session is untouched.
    me(app, &other.access).await.ok();
    refreshed(&refresh(app, &other.refresh).await);
}

const NEW_PASSWORD: &str = "new-Tenant-2";

async fn change(app: &TestApp, token: &str, current: &str, new: &str) -> Resp {
    bearer(app, token)
        .post(
            "/api/auth/changePassword",
            json!({"currentPassword": current, "newPassword": new}),
        )
        .await
}

async fn password_change_outdates_older_tokens(app: &TestApp) {
    let a = login(app, TENANT_PASSWORD).await;
    let b = login(app, TENANT_PASSWORD).await;
    let refused = change(app, &a.access, "wrong", NEW_PASSWORD).await;
    assert_eq!(refused.error(400, 31), "Current password doesn't match!");
    let short = change(app, &a.access, TENANT_PASSWORD, "abc").await;
    assert_eq!(
        short.error(400, 31),
        "Password must be 6 or more characters in length."
    );
    let same = change(app, &a.access, TENANT_PASSWORD, TENANT_PASSWORD).await;
    assert_eq!(
        same.error(400, 31),
        "New password should be different from existing!"
    );
    change(app, &a.refresh, TENANT_PASSWORD, NEW_PASSWORD)
        .await
        .error(401, 10);
    // Nothing was changed by the refusals.
    me(app, &a.access).await.ok();

    let fresh = refreshed(&change(app, &a.access, TENANT_PASSWORD, NEW_PASSWORD).await);
    for old in [&a, &b] {
        assert_eq!(
            me(app, &old.access).await.error(401, 11),
            "Token has expired"
        );
        refresh(app, &old.refresh).await.error(401, 10);
    }
    me(app, &fresh.access).await.ok();
    refreshed(&refresh(app, &fresh.refresh).await);
    let old_login = Api::anonymous(app)
        .post(
            "/api/auth/login",
            json!({"username": TENANT_EMAIL, "password": TENANT_PASSWORD}),
        )
        .await;
    assert_eq!(old_login.error(401, 10), "Invalid username or password");
    login(app, NEW_PASSWORD).await;
}

/// A second node on the first one's database (and so its signing key).
async fn second_node(app: &TestApp) -> ferroboard::app::RunningApp {
    let first = &app.app.as_ref().expect("running").state.config;
    let config = ferroboard::config::Config {
        database_url: first.database_url.clone(),
        rules_dir: first.rules_dir.clone(),
        http_addr: "127.0.0.1:0".into(),
        mqtt_addr: "127.0.0.1:0".into(),
        mqtt: first.mqtt.clone(),
        storage: first.storage.clone(),
        ..ferroboard::config::Config::default()
    };
    ferroboard::app::start(config)
        .await
        .expect("second node starts")
}

async fn sessions_ended_on_one_node_end_on_all(app: &TestApp) {
    let node = second_node(app).await;
    let other = Api {
        base: format!("http://{}", node.http_addr),
        ..Api::anonymous(app)
    };
    let on_other = |token: &str| Api {
        token: Some(token.to_owned()),
        base: other.base.clone(),
        ..Api::anonymous(app)
    };
    let a = login(app, TENANT_PASSWORD).await;
    let b = login(app, TENANT_PASSWORD).await;
    on_other(&a.access).get("/api/auth/user").await.ok();
    on_other(&b.access).get("/api/auth/user").await.ok();
    // A logout on the first node, a password change on the second.
    bearer(app, &a.access)
        .post("/api/auth/logout", json!({}))
        .await
        .ok();
    on_other(&a.access)
        .get("/api/auth/user")
        .await
        .error(401, 11);
    let c = login(app, TENANT_PASSWORD).await;
    let fresh = on_other(&c.access)
        .post(
            "/api/auth/changePassword",
            json!({"currentPassword": TENANT_PASSWORD, "newPassword": NEW_PASSWORD}),
        )
        .await
        .ok();
    me(app, &b.access).await.error(401, 11);
    refresh(app, &b.refresh).await.error(401, 10);
    me(app, fresh["token"].as_str().expect("token")).await.ok();
    node.shutdown().await.expect("second node stops");
}

crate::both_backends!(
    forged_tokens_are_refused,
    expired_tokens_are_refused,
    access_and_refresh_tokens_are_not_interchangeable,
    refresh_tokens_rotate,
    logout_ends_the_session,
    password_change_outdates_older_tokens,
    sessions_ended_on_one_node_end_on_all,
);
