//! Cases: the login state of users (lockout, enabled, deletion) and login sessions.

use ferroboard::domain::{AuthSession, UserId};
use ferroboard::storage::{Authority, Store, User};
use uuid::Uuid;

async fn user(store: &dyn Store, email: &str) -> User {
    let u = User {
        id: UserId::new(),
        created_time: 1,
        tenant_id: None,
        customer_id: None,
        email: email.into(),
        authority: Authority::SysAdmin,
        first_name: None,
        last_name: None,
        password_hash: "old-hash".into(),
        enabled: true,
        failed_logins: 0,
        locked_until: 0,
    };
    store.create_user(&u).await.expect("create user");
    u
}

fn session(user: UserId, created_time: i64, expires_at: i64) -> AuthSession {
    AuthSession {
        id: Uuid::new_v4(),
        user_id: user,
        refresh_id: Uuid::new_v4(),
        created_time,
        expires_at,
    }
}

async fn reread(store: &dyn Store, id: UserId) -> User {
    store.get_user(id).await.unwrap().expect("user")
}

const NOW: i64 = 1_700_000_000_000;
const LATER: i64 = NOW + 604_800_000;

pub async fn login_failures_lock_and_clear(store: &dyn Store) {
    let u = user(store, "lock@example.org").await;
    // Two failures are allowed; the third locks and starts counting again.
    assert_eq!(
        store.record_login_failure(u.id, 2, 500).await.unwrap(),
        Some(0)
    );
    assert_eq!(
        store.record_login_failure(u.id, 2, 500).await.unwrap(),
        Some(0)
    );
    assert_eq!(reread(store, u.id).await.failed_logins, 2);
    assert_eq!(
        store.record_login_failure(u.id, 2, 500).await.unwrap(),
        Some(500)
    );
    let locked = reread(store, u.id).await;
    assert_eq!((locked.failed_logins, locked.locked_until), (0, 500));
    // A failure that does not lock keeps the lock time it had.
    assert_eq!(
        store.record_login_failure(u.id, 2, 900).await.unwrap(),
        Some(500)
    );
    assert_eq!(reread(store, u.id).await.failed_logins, 1);
    store.clear_login_failures(u.id).await.unwrap();
    assert_eq!(reread(store, u.id).await.failed_logins, 0);
    assert_eq!(
        store
            .record_login_failure(UserId::new(), 2, 500)
            .await
            .unwrap(),
        None,
        "an absent user"
    );
}

pub async fn tenant_admins_are_counted(store: &dyn Store) {
    let tenant = super::fixtures::tenant(store).await;
    let other = super::fixtures::tenant(store).await;
    assert_eq!(store.count_tenant_admins(tenant).await.unwrap(), 0);
    for (email, owner, authority) in [
        ("a1@example.org", tenant, Authority::TenantAdmin),
        ("a2@example.org", tenant, Authority::TenantAdmin),
        ("c1@example.org", tenant, Authority::CustomerUser),
        ("b1@example.org", other, Authority::TenantAdmin),
    ] {
        let u = User {
            tenant_id: Some(owner),
            authority,
            ..user(store, email).await
        };
        store.delete_user(u.id).await.unwrap();
        store.create_user(&u).await.unwrap();
    }
    assert_eq!(store.count_tenant_admins(tenant).await.unwrap(), 2);
    assert_eq!(store.count_tenant_admins(other).await.unwrap(), 1);
}

pub async fn users_are_disabled_and_deleted(store: &dyn Store) {
    let u = user(store, "gone@example.org").await;
    let other = user(store, "stays@example.org").await;
    let s = session(u.id, NOW, LATER);
    let kept = session(other.id, NOW, LATER);
    store.create_session(&s, 10, NOW).await.unwrap();
    store.create_session(&kept, 10, NOW).await.unwrap();

    assert!(store.set_user_enabled(u.id, false).await.unwrap());
    assert!(!store.get_user(u.id).await.unwrap().unwrap().enabled);
    assert_eq!(
        store.get_session(s.id, NOW).await.unwrap(),
        None,
        "disabling ends sessions"
    );
    store.record_login_failure(u.id, 0, NOW).await.unwrap();
    store.record_login_failure(u.id, 5, NOW).await.unwrap();
    let locked = reread(store, u.id).await;
    assert_eq!((locked.locked_until, locked.failed_logins), (NOW, 1));
    assert!(store.set_user_enabled(u.id, true).await.unwrap());
    let enabled = reread(store, u.id).await;
    assert!(enabled.enabled);
    assert_eq!(
        (enabled.locked_until, enabled.failed_logins),
        (0, 0),
        "enabling lifts a lock and forgets failures"
    );
    assert_eq!(
        store.get_session(s.id, NOW).await.unwrap(),
        None,
        "enabling again does not bring them back"
    );

    let s2 = session(u.id, NOW, LATER);
    store.create_session(&s2, 10, NOW).await.unwrap();
    assert!(store.delete_user(u.id).await.unwrap());
    assert_eq!(store.get_user(u.id).await.unwrap(), None);
    assert_eq!(
        store.get_session(s2.id, NOW).await.unwrap(),
        None,
        "sessions go with the user"
    );
    assert!(!store.delete_user(u.id).await.unwrap());
    assert!(!store.set_user_enabled(u.id, true).await.unwrap());
    assert_eq!(store.get_session(kept.id, NOW).await.unwrap(), Some(kept));
}

pub async fn sessions_rotate_and_end(store: &dyn Store) {
    let u = user(store, "rotate@example.org").await;
    let s = session(u.id, NOW, LATER);
    store.create_session(&s, 10, NOW).await.unwrap();
    assert_eq!(store.get_session(s.id, NOW).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.get_session(s.id, LATER).await.unwrap(),
        None,
        "expired"
    );

    let next = Uuid::new_v4();
    assert!(
        store
            .rotate_session(s.id, s.refresh_id, next, LATER + 5)
            .await
            .unwrap()
    );
    let rotated = store.get_session(s.id, NOW).await.unwrap().unwrap();
    assert_eq!((rotated.refresh_id, rotated.expires_at), (next, LATER + 5));
    assert!(
        !store
            .rotate_session(s.id, s.refresh_id, Uuid::new_v4(), LATER)
            .await
            .unwrap(),
        "a used refresh token does not rotate again"
    );
    assert_eq!(
        store
            .get_session(s.id, NOW)
            .await
            .unwrap()
            .unwrap()
            .refresh_id,
        next
    );

    assert!(store.delete_session(s.id).await.unwrap());
    assert!(!store.delete_session(s.id).await.unwrap());
    assert_eq!(store.get_session(s.id, NOW).await.unwrap(), None);
    assert!(
        !store
            .rotate_session(s.id, next, Uuid::new_v4(), LATER)
            .await
            .unwrap()
    );
}

pub async fn sessions_are_bounded_per_user_and_expire(store: &dyn Store) {
    let u = user(store, "many@example.org").await;
    let other = user(store, "other@example.org").await;
    let old = session(other.id, NOW - 10, NOW + 1);
    store.create_session(&old, 3, NOW - 10).await.unwrap();
    let sessions: Vec<AuthSession> = (0..5).map(|i| session(u.id, NOW + i, LATER)).collect();
    for s in &sessions {
        store.create_session(s, 3, NOW).await.unwrap();
    }
    let mut alive = Vec::new();
    for s in &sessions {
        alive.push(store.get_session(s.id, NOW).await.unwrap().is_some());
    }
    assert_eq!(
        alive,
        [false, false, true, true, true],
        "the newest 3 remain"
    );
    assert!(store.get_session(old.id, NOW).await.unwrap().is_some());
    // A later login drops every expired session, whoever's.
    store
        .create_session(&session(u.id, NOW + 9, LATER), 3, NOW + 2)
        .await
        .unwrap();
    assert_eq!(store.get_session(old.id, NOW).await.unwrap(), None);
}

pub async fn password_change_replaces_every_session(store: &dyn Store) {
    let u = user(store, "change@example.org").await;
    let other = user(store, "bystander@example.org").await;
    let (a, b) = (session(u.id, NOW, LATER), session(u.id, NOW + 1, LATER));
    let kept = session(other.id, NOW, LATER);
    for s in [&a, &b, &kept] {
        store.create_session(s, 10, NOW).await.unwrap();
    }
    let fresh = session(u.id, NOW + 2, LATER);
    assert!(
        store
            .change_password(u.id, "new-hash", &fresh)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_user(u.id).await.unwrap().unwrap().password_hash,
        "new-hash"
    );
    assert_eq!(store.get_session(a.id, NOW).await.unwrap(), None);
    assert_eq!(store.get_session(b.id, NOW).await.unwrap(), None);
    assert_eq!(store.get_session(fresh.id, NOW).await.unwrap(), Some(fresh));
    assert_eq!(store.get_session(kept.id, NOW).await.unwrap(), Some(kept));

    let nobody = session(UserId::new(), NOW, LATER);
    assert!(
        !store
            .change_password(nobody.user_id, "x", &nobody)
            .await
            .unwrap()
    );
    assert_eq!(store.get_session(nobody.id, NOW).await.unwrap(), None);
    assert_eq!(
        store
            .get_user(other.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "old-hash"
    );
}
