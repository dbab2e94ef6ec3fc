//! `POST /api/user/{id}/userCredentialsEnabled` and `DELETE /api/user/{id}`: who may call them,
//! ThingsBoard's refusals, and that a disabled or deleted user's tokens stop working.

use serde_json::json;

use crate::common::{SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TENANT_EMAIL, TENANT_PASSWORD, TestApp};
use crate::support::*;
use crate::tokens::{bearer, login, me, refresh};
use ferroboard::domain::{Authority, TenantId, User, UserId};

fn store(app: &TestApp) -> &ferroboard::storage::DynStore {
    &app.app.as_ref().expect("running").state.services.store
}

fn id_claim(token: &str, claim: &str) -> uuid::Uuid {
    let text = claims(token)[claim].as_str().expect("id claim").to_owned();
    uuid::Uuid::parse_str(&text).expect("uuid")
}

/// A user with `password`, created directly in the store (there is no user-creation route yet).
async fn add_user(
    app: &TestApp,
    email: &str,
    authority: Authority,
    tenant: Option<TenantId>,
    password: &str,
) -> UserId {
    let user = User {
        id: UserId::new(),
        created_time: now_ms(),
        tenant_id: tenant,
        customer_id: None,
        email: email.into(),
        authority,
        first_name: None,
        last_name: None,
        password_hash: ferroboard::services::accounts::hash_password(password.into())
            .await
            .expect("hash"),
        enabled: true,
        failed_logins: 0,
        locked_until: 0,
    };
    store(app).create_user(&user).await.expect("create user");
    user.id
}

async fn log_in(app: &TestApp, email: &str, password: &str) -> Resp {
    Api::anonymous(app)
        .post(
            "/api/auth/login",
            json!({"username": email, "password": password}),
        )
        .await
}

fn enable_path(id: impl std::fmt::Display, enabled: bool) -> String {
    format!("/api/user/{id}/userCredentialsEnabled?userCredentialsEnabled={enabled}")
}

async fn disabling_ends_sessions_and_enabling_lifts_a_lockout(app: &TestApp) {
    let admin = Api::login(app, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await;
    let tenant = login(app, TENANT_PASSWORD).await;
    let tenant_id = id_claim(&tenant.access, "userId");
    admin
        .post(&enable_path(tenant_id, false), json!({}))
        .await
        .ok();
    assert_eq!(
        me(app, &tenant.access).await.error(401, 11),
        "Token has expired"
    );
    refresh(app, &tenant.refresh).await.error(401, 10);
    assert_eq!(
        log_in(app, TENANT_EMAIL, TENANT_PASSWORD)
            .await
            .error(401, 10),
        "User account is not active"
    );
    admin
        .post(&enable_path(tenant_id, true), json!({}))
        .await
        .ok();
    log_in(app, TENANT_EMAIL, TENANT_PASSWORD).await.ok();

    // Five failures are allowed (the default); the sixth locks; enabling lifts the lock.
    for _ in 0..5 {
        log_in(app, TENANT_EMAIL, "wrong").await.error(401, 10);
    }
    assert_eq!(
        log_in(app, TENANT_EMAIL, "wrong").await.error(401, 10),
        "User account is locked due to security policy"
    );
    admin
        .post(
            &format!("/api/user/{tenant_id}/userCredentialsEnabled"),
            json!({}),
        )
        .await
        .ok();
    log_in(app, TENANT_EMAIL, TENANT_PASSWORD).await.ok();
}

async fn deleting_a_user_ends_its_sessions(app: &TestApp) {
    let tenant = login(app, TENANT_PASSWORD).await;
    let tenant_id = TenantId(id_claim(&tenant.access, "tenantId"));
    let second = add_user(
        app,
        "second@example.com",
        Authority::TenantAdmin,
        Some(tenant_id),
        "pw-second",
    )
    .await;
    let doomed = login_as(app, "second@example.com", "pw-second").await;
    bearer(app, &tenant.access)
        .delete(&format!("/api/user/{}", second.0))
        .await
        .ok();
    assert_eq!(me(app, &doomed.0).await.error(401, 11), "Token has expired");
    refresh(app, &doomed.1).await.error(401, 10);
    assert_eq!(
        log_in(app, "second@example.com", "pw-second")
            .await
            .error(401, 10),
        "Invalid username or password"
    );
    bearer(app, &tenant.access)
        .delete(&format!("/api/user/{}", second.0))
        .await
        .error(404, 32);
}

async fn login_as(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let pair = log_in(app, email, password).await.ok();
    (
        pair["token"].as_str().expect("token").to_owned(),
        pair["refreshToken"].as_str().expect("refresh").to_owned(),
    )
}

async fn refusals(app: &TestApp) {
    let admin = Api::login(app, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await;
    let tenant = login(app, TENANT_PASSWORD).await;
    let tenant_user = id_claim(&tenant.access, "userId");
    let admin_user = id_claim(admin.token.as_deref().expect("token"), "userId");
    // The last tenant administrator stays; a system administrator cannot delete itself.
    let last = bearer(app, &tenant.access)
        .delete(&format!("/api/user/{tenant_user}"))
        .await;
    assert_eq!(
        last.error(400, 31),
        "At least one tenant administrator must remain!"
    );
    admin
        .delete(&format!("/api/user/{tenant_user}"))
        .await
        .error(400, 31);
    admin
        .delete(&format!("/api/user/{admin_user}"))
        .await
        .error(403, 20);
    // Another tenant's user, a customer user calling, unknown and malformed ids.
    let other = TenantId::new();
    store(app)
        .create_tenant(&ferroboard::domain::Tenant {
            id: other,
            title: "Other".into(),
            created_time: 1,
        })
        .await
        .expect("tenant");
    let stranger = add_user(
        app,
        "stranger@example.com",
        Authority::TenantAdmin,
        Some(other),
        "pw-stranger",
    )
    .await;
    bearer(app, &tenant.access)
        .post(&enable_path(stranger.0, false), json!({}))
        .await
        .error(403, 20);
    let own_tenant = TenantId(id_claim(&tenant.access, "tenantId"));
    add_user(
        app,
        "customer@example.com",
        Authority::CustomerUser,
        Some(own_tenant),
        "pw-customer",
    )
    .await;
    let customer = login_as(app, "customer@example.com", "pw-customer").await;
    bearer(app, &customer.0)
        .post(&enable_path(tenant_user, false), json!({}))
        .await
        .error(403, 20);
    bearer(app, &tenant.access)
        .post(&enable_path(uuid::Uuid::new_v4(), false), json!({}))
        .await
        .error(404, 32);
    bearer(app, &tenant.access)
        .delete("/api/user/not-a-uuid")
        .await
        .error(400, 31);
    let bad_flag = bearer(app, &tenant.access)
        .post(
            &format!(
                "/api/user/{stranger}/userCredentialsEnabled?userCredentialsEnabled=maybe",
                stranger = stranger.0
            ),
            json!({}),
        )
        .await;
    bad_flag.error(400, 31);
    // Nothing was changed by the refusals.
    me(app, &tenant.access).await.ok();
    log_in(app, "stranger@example.com", "pw-stranger")
        .await
        .ok();
}

crate::both_backends!(
    disabling_ends_sessions_and_enabling_lifts_a_lockout,
    deleting_a_user_ends_its_sessions,
    refusals,
);
