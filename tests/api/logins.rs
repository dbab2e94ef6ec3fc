//! Failed logins: ThingsBoard's account lockout (one account locked while another still logs in,
//! the lock ending by itself), the per-address throttle, and a short signing key refused at start.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::common::{
    Backend, SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TENANT_EMAIL, TENANT_PASSWORD, TestApp, eventually,
    spawn_app_with,
};
use crate::support::*;

const LOCKED: &str = "User account is locked due to security policy";
const INVALID: &str = "Invalid username or password";

/// `POST /api/auth/login` from the client address `from`.
async fn login_from(app: &TestApp, from: IpAddr, email: &str, password: &str) -> Resp {
    let api = Api {
        http: reqwest::Client::builder()
            .local_address(from)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        ..Api::anonymous(app)
    };
    api.post(
        "/api/auth/login",
        json!({"username": email, "password": password}),
    )
    .await
}

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

async fn lockout_after_n_failures_while_another_account_logs_in(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.auth.max_failed_logins = 3;
        c.auth.lockout_secs = 3600;
    })
    .await;
    for _ in 0..3 {
        let wrong = login_from(&app, HOME, TENANT_EMAIL, "wrong").await;
        assert_eq!(wrong.error(401, 10), INVALID);
    }
    // The fourth consecutive failure locks the account; then even the right password is refused.
    assert_eq!(
        login_from(&app, HOME, TENANT_EMAIL, "wrong")
            .await
            .error(401, 10),
        LOCKED
    );
    let right = login_from(&app, HOME, TENANT_EMAIL, TENANT_PASSWORD).await;
    assert_eq!(right.error(401, 10), LOCKED);
    // Other accounts log in, from the same address too.
    login_from(&app, HOME, SYSADMIN_EMAIL, SYSADMIN_PASSWORD)
        .await
        .ok();
    login_from(&app, ELSEWHERE, SYSADMIN_EMAIL, SYSADMIN_PASSWORD)
        .await
        .ok();
    app.shutdown().await;
}

async fn a_success_restarts_the_count_and_a_lock_ends(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.auth.max_failed_logins = 2;
        c.auth.lockout_secs = 1;
    })
    .await;
    // Two failures, a success, two more failures: never more than two in a row.
    for _ in 0..2 {
        login_from(&app, HOME, TENANT_EMAIL, "wrong")
            .await
            .error(401, 10);
    }
    login_from(&app, HOME, TENANT_EMAIL, TENANT_PASSWORD)
        .await
        .ok();
    for _ in 0..2 {
        let wrong = login_from(&app, HOME, TENANT_EMAIL, "wrong").await;
        assert_eq!(wrong.error(401, 10), INVALID);
    }
    assert_eq!(
        login_from(&app, HOME, TENANT_EMAIL, "wrong")
            .await
            .error(401, 10),
        LOCKED
    );
    // The lock ends by itself after lockout_secs.
    eventually("the lock ends", Duration::from_secs(20), || async {
        let resp = login_from(&app, HOME, TENANT_EMAIL, TENANT_PASSWORD).await;
        (resp.status == 200).then_some(())
    })
    .await;
    app.shutdown().await;
}

async fn failures_are_throttled_per_address(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.auth.address_max_failures = 4;
        c.auth.address_window_secs = 3600;
    })
    .await;
    // Failures for unknown e-mails count against the address, not against any account.
    for i in 0..4 {
        let unknown = login_from(&app, HOME, &format!("nobody{i}@example.com"), "x").await;
        assert_eq!(unknown.error(401, 10), INVALID);
    }
    let throttled = login_from(&app, HOME, TENANT_EMAIL, TENANT_PASSWORD).await;
    throttled.error(429, 33);
    let retry: u64 = throttled
        .retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let metrics = Api::anonymous(&app).get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("ferroboard_logins_refused_total{reason=\"address_throttled\"}"),
        "{}",
        metrics.text
    );
    // Another address is not affected, and the account itself is not locked.
    login_from(&app, ELSEWHERE, TENANT_EMAIL, TENANT_PASSWORD)
        .await
        .ok();
    login_from(&app, HOME, TENANT_EMAIL, TENANT_PASSWORD)
        .await
        .error(429, 33);
    app.shutdown().await;
}

async fn a_concurrent_flood_from_one_address_gets_at_most_the_limit_checked(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.auth.address_max_failures = 4;
        c.auth.address_window_secs = 3600;
    })
    .await;
    let flood = (0..24).map(|i| {
        let app = &app;
        async move { login_from(app, HOME, &format!("flood{i}@example.com"), "x").await }
    });
    let answers = futures::future::join_all(flood).await;
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let refused = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        (checked, refused),
        (4, 20),
        "attempts are counted when they start"
    );
    for r in answers.iter().filter(|r| r.status == 429) {
        r.error(429, 33);
    }
    login_from(&app, ELSEWHERE, TENANT_EMAIL, TENANT_PASSWORD)
        .await
        .ok();
    app.shutdown().await;
}

async fn a_short_signing_key_is_refused_at_start(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = crate::common::fresh_database(backend, dir.path()).await;
    let config = ferroboard::config::Config {
        database_url: database.url.clone(),
        http_addr: "127.0.0.1:0".into(),
        mqtt_addr: "127.0.0.1:0".into(),
        rules_dir: crate::common::rules_copy(dir.path()),
        jwt_secret: Some("too short for HS512".into()),
        ..ferroboard::config::Config::default()
    };
    let err = ferroboard::app::start(config)
        .await
        .err()
        .expect("a short key stops the start")
        .to_string();
    assert!(err.contains("jwt_secret") && err.contains("64"), "{err}");
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    lockout_after_n_failures_while_another_account_logs_in,
    a_success_restarts_the_count_and_a_lock_ends,
    failures_are_throttled_per_address,
    a_concurrent_flood_from_one_address_gets_at_most_the_limit_checked,
    a_short_signing_key_is_refused_at_start,
);
