//! Cases: migrations, tenants, users, settings.

use super::fixtures::*;
use ferroboard::domain::{CustomerId, TenantId, UserId};
use ferroboard::storage::{Authority, Store, Tenant, User};

pub async fn migrate_twice_is_idempotent(store: &dyn Store) {
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");
    assert!(matches!(store.backend(), "sqlite" | "postgres"));
    let t = tenant(store).await;
    store.migrate().await.expect("migrate with data present");
    assert!(store.get_tenant(t).await.unwrap().is_some());
}

pub async fn tenants_and_users(store: &dyn Store) {
    let t = Tenant {
        id: TenantId::new(),
        title: "Acme".into(),
        created_time: 42,
    };
    store.create_tenant(&t).await.unwrap();
    assert_eq!(store.get_tenant(t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(store.get_tenant(TenantId::new()).await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 0);

    let admin = User {
        id: UserId::new(),
        created_time: 5,
        tenant_id: None,
        customer_id: None,
        email: "SysAdmin@Example.org".into(),
        authority: Authority::SysAdmin,
        first_name: None,
        last_name: None,
        password_hash: "$argon2id$v=19$x".into(),
        enabled: true,
        failed_logins: 0,
        locked_until: 0,
    };
    store.create_user(&admin).await.unwrap();
    let user = User {
        id: UserId::new(),
        tenant_id: Some(t.id),
        customer_id: Some(CustomerId::new()),
        email: "tenant@example.org".into(),
        authority: Authority::TenantAdmin,
        first_name: Some("Ten".into()),
        last_name: Some("Ant".into()),
        enabled: false,
        failed_logins: 2,
        locked_until: 77,
        ..admin.clone()
    };
    store.create_user(&user).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 2);
    assert_eq!(
        store
            .find_user_by_email("sysadmin@example.ORG")
            .await
            .unwrap(),
        Some(admin.clone())
    );
    assert_eq!(store.get_user(user.id).await.unwrap(), Some(user.clone()));
    assert_eq!(store.get_user(UserId::new()).await.unwrap(), None);
    assert_eq!(
        store
            .find_user_by_email("nobody@example.org")
            .await
            .unwrap(),
        None
    );

    let dup = User {
        id: UserId::new(),
        email: "TENANT@example.org".into(),
        ..user.clone()
    };
    let text = conflict_text(store.create_user(&dup).await.unwrap_err());
    assert!(text.contains("TENANT@example.org"), "{text}");
    assert_eq!(store.count_users().await.unwrap(), 2);
}

pub async fn settings_first_writer_wins(store: &dyn Store) {
    assert_eq!(store.get_setting("jwt").await.unwrap(), None);
    assert_eq!(
        store.put_setting_if_absent("jwt", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.put_setting_if_absent("jwt", "second").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.get_setting("jwt").await.unwrap(),
        Some("first".into())
    );
    assert_eq!(
        store.put_setting_if_absent("other", "x").await.unwrap(),
        "x"
    );
}
