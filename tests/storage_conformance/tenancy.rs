//! Cases: tenant paging and deletion with everything it owns, customers with their users and
//! devices, activations, and claim windows.

use super::fixtures::*;
use ferroboard::domain::{AttributeScope, CustomerId, DeviceId, KvValue, TenantId, UserId};
use ferroboard::storage::{
    Activation, AuthSession, Authority, ClaimData, Customer, SortOrder, Store, Tenant, User,
    UserFilter,
};
use uuid::Uuid;

fn user(tenant: Option<TenantId>, customer: Option<CustomerId>, email: &str) -> User {
    User {
        id: UserId::new(),
        created_time: 1,
        tenant_id: tenant,
        customer_id: customer,
        email: email.into(),
        authority: match (tenant, customer) {
            (None, _) => Authority::SysAdmin,
            (Some(_), None) => Authority::TenantAdmin,
            (Some(_), Some(_)) => Authority::CustomerUser,
        },
        first_name: None,
        last_name: None,
        password_hash: "hash".into(),
        enabled: true,
        failed_logins: 0,
        locked_until: 0,
    }
}

async fn customer(store: &dyn Store, tenant: TenantId, title: &str, t: i64) -> Customer {
    let c = Customer {
        id: CustomerId::new(),
        tenant_id: tenant,
        title: title.into(),
        created_time: t,
    };
    store.create_customer(&c).await.expect("create customer");
    c
}

pub async fn tenants_page_update_and_delete_everything(store: &dyn Store) {
    let mut ids = Vec::new();
    for (i, title) in ["Acme", "Beta", "Acme Two"].into_iter().enumerate() {
        let t = Tenant {
            id: TenantId::new(),
            title: title.into(),
            created_time: 10 + i as i64,
        };
        store.create_tenant(&t).await.unwrap();
        ids.push(t.id);
    }
    let all = store
        .page_tenants(&page(10, 0, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(all.total_elements, 3);
    let acme = store
        .page_tenants(&page(10, 0, Some("acme"), Some("title"), SortOrder::Desc))
        .await
        .unwrap();
    let titles: Vec<_> = acme.data.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["Acme Two", "Acme"]);
    let mut renamed = store.get_tenant(ids[1]).await.unwrap().unwrap();
    renamed.title = "Gamma".into();
    assert!(store.update_tenant(&renamed).await.unwrap());
    assert_eq!(store.get_tenant(ids[1]).await.unwrap(), Some(renamed));

    // The doomed tenant owns a profile, a device with data, a customer, users and sessions.
    let (doomed, kept) = (ids[0], ids[2]);
    let mut devices = Vec::new();
    for t in [doomed, kept] {
        let p = default_profile(store, t).await;
        let d = new_device(store, t, &p, &format!("pump-{t}"), 1).await;
        store
            .commit(&[
                ts_op(d.id.0, vec![pt(5, "temp", KvValue::Long(1))]),
                attr_op(
                    d.id.0,
                    AttributeScope::Server,
                    5,
                    &[("a", KvValue::Long(1))],
                ),
            ])
            .await
            .unwrap();
        let c = customer(store, t, "Customer", 1).await;
        let admin = user(Some(t), None, &format!("admin-{t}@example.org"));
        store.create_user(&admin).await.unwrap();
        let cu = user(Some(t), Some(c.id), &format!("cu-{t}@example.org"));
        store.create_user(&cu).await.unwrap();
        let s = AuthSession {
            id: Uuid::new_v4(),
            user_id: cu.id,
            refresh_id: Uuid::new_v4(),
            created_time: 1,
            expires_at: i64::MAX / 2,
        };
        store.create_session(&s, 10, 1).await.unwrap();
        devices.push((d, c, admin, cu, s));
    }
    let gone = store.delete_tenant(doomed).await.unwrap();
    assert_eq!(gone, Some(vec![devices[0].0.id]));
    assert_eq!(store.delete_tenant(doomed).await.unwrap(), None);
    assert_eq!(store.get_tenant(doomed).await.unwrap(), None);
    let (d, c, admin, cu, s) = &devices[0];
    assert_eq!(store.find_device(d.id).await.unwrap(), None);
    assert!(store.latest(d.id.0, None).await.unwrap().is_empty());
    assert!(
        store
            .find_attributes(d.id.0, AttributeScope::Server, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get_customer(c.id).await.unwrap(), None);
    assert_eq!(store.get_user(admin.id).await.unwrap(), None);
    assert_eq!(store.get_user(cu.id).await.unwrap(), None);
    assert_eq!(store.get_session(s.id, 2).await.unwrap(), None);
    assert_eq!(store.default_profile(doomed).await.unwrap(), None);
    // The other tenant keeps everything.
    let (d, c, admin, _, s) = &devices[1];
    assert!(store.find_device(d.id).await.unwrap().is_some());
    assert_eq!(store.latest(d.id.0, None).await.unwrap().len(), 1);
    assert!(store.get_customer(c.id).await.unwrap().is_some());
    assert!(store.get_user(admin.id).await.unwrap().is_some());
    assert!(store.get_session(s.id, 2).await.unwrap().is_some());
}

pub async fn customers_titles_users_and_devices(store: &dyn Store) {
    let (t, other) = (tenant(store).await, tenant(store).await);
    let a = customer(store, t, "Alpha", 1).await;
    let b = customer(store, t, "Bravo", 2).await;
    // Titles are unique per tenant only.
    let dup = Customer {
        id: CustomerId::new(),
        ..a.clone()
    };
    assert_eq!(
        conflict_text(store.create_customer(&dup).await.unwrap_err()),
        "Customer with such title already exists!"
    );
    customer(store, other, "Alpha", 1).await;
    let mut renamed = b.clone();
    renamed.title = "Alpha".into();
    assert_eq!(
        conflict_text(store.update_customer(&renamed).await.unwrap_err()),
        "Customer with such title already exists!"
    );
    let foreign = Customer {
        tenant_id: other,
        ..b.clone()
    };
    assert!(!store.update_customer(&foreign).await.unwrap());
    assert_eq!(
        store.find_customer_by_title(t, "Bravo").await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        store.find_customer_by_title(other, "Bravo").await.unwrap(),
        None
    );
    let listed = store
        .page_customers(t, &page(10, 0, Some("ALP"), None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        (listed.total_elements, listed.data.clone()),
        (1, vec![a.clone()])
    );

    // Devices of a customer.
    let p = default_profile(store, t).await;
    assert_eq!(store.profile_owner(p.id).await.unwrap(), Some(t));
    assert_eq!(store.get_profile(other, p.id).await.unwrap(), None);
    let mut d1 = new_device(store, t, &p, "d1", 1).await;
    let d2 = new_device(store, t, &p, "d2", 2).await;
    d1.customer_id = Some(a.id);
    store.update_device(&d1).await.unwrap();
    let of_a = store
        .page_customer_devices(t, a.id, None, &page(10, 0, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(of_a.data.iter().map(|d| d.id).collect::<Vec<_>>(), [d1.id]);
    let all = store
        .page_devices(t, None, &page(10, 0, None, None, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(all.total_elements, 2);
    assert_eq!(
        store
            .page_customer_devices(other, a.id, None, &page(10, 0, None, None, SortOrder::Asc))
            .await
            .unwrap()
            .total_elements,
        0
    );

    // Users by tenant, customer and authority.
    let admin = user(Some(t), None, "admin@t.org");
    let ua = user(Some(t), Some(a.id), "user@alpha.org");
    let ub = user(Some(t), Some(b.id), "user@bravo.org");
    for u in [&admin, &ua, &ub] {
        store.create_user(u).await.unwrap();
    }
    let filter = |customer, authority| UserFilter {
        tenant: t,
        customer,
        authority,
    };
    let q = page(10, 0, None, Some("email"), SortOrder::Asc);
    let emails = |p: ferroboard::storage::Page<User>| {
        p.data.into_iter().map(|u| u.email).collect::<Vec<_>>()
    };
    assert_eq!(
        emails(store.page_users(&filter(None, None), &q).await.unwrap()),
        ["admin@t.org", "user@alpha.org", "user@bravo.org"]
    );
    assert_eq!(
        emails(
            store
                .page_users(&filter(None, Some(Authority::TenantAdmin)), &q)
                .await
                .unwrap()
        ),
        ["admin@t.org"]
    );
    assert_eq!(
        emails(
            store
                .page_users(&filter(Some(a.id), None), &q)
                .await
                .unwrap()
        ),
        ["user@alpha.org"]
    );
    let searched = page(10, 0, Some("BRAVO"), None, SortOrder::Asc);
    assert_eq!(
        emails(
            store
                .page_users(&filter(None, None), &searched)
                .await
                .unwrap()
        ),
        ["user@bravo.org"]
    );
    // Profile changes; a taken e-mail is a conflict.
    let mut changed = ua.clone();
    changed.first_name = Some("Ann".into());
    assert!(store.update_user_profile(&changed).await.unwrap());
    assert_eq!(store.get_user(ua.id).await.unwrap(), Some(changed.clone()));
    changed.email = "ADMIN@t.org".into();
    assert!(
        conflict_text(store.update_user_profile(&changed).await.unwrap_err())
            .contains("ADMIN@t.org")
    );

    // Deleting a customer removes its users and unassigns its devices; another tenant cannot.
    assert!(!store.delete_customer(other, a.id).await.unwrap());
    assert!(store.delete_customer(t, a.id).await.unwrap());
    assert!(!store.delete_customer(t, a.id).await.unwrap());
    assert_eq!(store.get_customer(a.id).await.unwrap(), None);
    assert_eq!(store.get_user(ua.id).await.unwrap(), None);
    assert!(store.get_user(ub.id).await.unwrap().is_some());
    let d1 = store.find_device(d1.id).await.unwrap().unwrap();
    assert_eq!(d1.customer_id, None);
    assert!(store.find_device(d2.id).await.unwrap().is_some());
}

pub async fn activations_are_used_once(store: &dyn Store) {
    let t = tenant(store).await;
    let mut u = user(Some(t), None, "new@example.org");
    u.enabled = false;
    u.password_hash = String::new();
    let a = Activation {
        user_id: u.id,
        token: "tok-1".into(),
        expires_at: 1000,
    };
    store.create_user_with_activation(&u, &a).await.unwrap();
    // A taken e-mail creates neither the user nor the activation.
    let twin = User {
        id: UserId::new(),
        email: "NEW@example.org".into(),
        ..u.clone()
    };
    let twin_activation = Activation {
        user_id: twin.id,
        token: "tok-twin".into(),
        expires_at: 1000,
    };
    assert!(
        conflict_text(
            store
                .create_user_with_activation(&twin, &twin_activation)
                .await
                .unwrap_err()
        )
        .contains("already present")
    );
    assert_eq!(store.find_activation("tok-twin").await.unwrap(), None);
    assert_eq!(store.get_activation(u.id).await.unwrap(), Some(a.clone()));
    let renewed = Activation {
        token: "tok-2".into(),
        expires_at: 2000,
        ..a.clone()
    };
    store.put_activation(&renewed).await.unwrap();
    assert_eq!(store.find_activation("tok-1").await.unwrap(), None);
    assert_eq!(store.find_activation("tok-2").await.unwrap(), Some(renewed));
    let session = AuthSession {
        id: Uuid::new_v4(),
        user_id: u.id,
        refresh_id: Uuid::new_v4(),
        created_time: 1,
        expires_at: i64::MAX / 2,
    };
    assert!(
        !store
            .activate_user(u.id, "tok-1", "h", &session)
            .await
            .unwrap()
    );
    assert!(
        store
            .activate_user(u.id, "tok-2", "new-hash", &session)
            .await
            .unwrap()
    );
    assert!(
        !store
            .activate_user(u.id, "tok-2", "other", &session)
            .await
            .unwrap()
    );
    let active = store.get_user(u.id).await.unwrap().unwrap();
    assert!(active.enabled);
    assert_eq!(active.password_hash, "new-hash");
    assert_eq!(store.get_activation(u.id).await.unwrap(), None);
    assert!(store.get_session(session.id, 2).await.unwrap().is_some());
}

pub async fn claims_assign_once(store: &dyn Store) {
    let t = tenant(store).await;
    let p = default_profile(store, t).await;
    let d = new_device(store, t, &p, "claimable", 1).await;
    let c1 = customer(store, t, "One", 1).await;
    let c2 = customer(store, t, "Two", 2).await;
    assert_eq!(store.get_claim(d.id).await.unwrap(), None);
    let claim = ClaimData {
        secret_key: "s3cr3t".into(),
        expiration_time: 99,
    };
    store.put_claim(d.id, &claim).await.unwrap();
    assert_eq!(store.get_claim(d.id).await.unwrap(), Some(claim));
    let replaced = ClaimData {
        secret_key: String::new(),
        expiration_time: 500,
    };
    store.put_claim(d.id, &replaced).await.unwrap();
    assert_eq!(store.get_claim(d.id).await.unwrap(), Some(replaced.clone()));
    assert!(store.claim_device(d.id, c1.id).await.unwrap());
    assert_eq!(store.get_claim(d.id).await.unwrap(), None);
    assert_eq!(
        store.find_device(d.id).await.unwrap().unwrap().customer_id,
        Some(c1.id)
    );
    // Already claimed: the second customer gets nothing and the window stays as it is.
    store.put_claim(d.id, &replaced).await.unwrap();
    assert!(!store.claim_device(d.id, c2.id).await.unwrap());
    assert_eq!(store.get_claim(d.id).await.unwrap(), Some(replaced));
    assert!(store.delete_claim(d.id).await.unwrap());
    assert!(!store.delete_claim(d.id).await.unwrap());
    assert!(!store.claim_device(DeviceId::new(), c2.id).await.unwrap());
    // The window goes with the device.
    store
        .put_claim(
            d.id,
            &ClaimData {
                secret_key: "k".into(),
                expiration_time: 1,
            },
        )
        .await
        .unwrap();
    assert!(store.delete_device(t, d.id).await.unwrap());
    assert_eq!(store.get_claim(d.id).await.unwrap(), None);
}
