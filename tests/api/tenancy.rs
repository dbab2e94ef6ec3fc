//! Tenants, customers and users: who may create what (ThingsBoard's authority rules), unique
//! titles and e-mails, the activation of users created without a password, user tokens, and
//! assigning devices to customers.

use serde_json::{Value, json};

use crate::common::{SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TestApp};
use crate::support::*;
use crate::tokens::{bearer, me};

const PASSWORD: &str = "secret-pw-1";

pub async fn sysadmin(app: &TestApp) -> Api {
    Api::login(app, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await
}

pub fn id_of(v: &Value) -> String {
    v["id"]["id"].as_str().expect("id").to_owned()
}

/// Creates a user through `creator` without a mail, activates it with `PASSWORD` and returns
/// its id and a client logged in as it.
pub async fn activated_user(app: &TestApp, creator: &Api, body: Value) -> (String, Api) {
    let user = creator
        .post("/api/user?sendActivationMail=false", body)
        .await
        .ok();
    let id = id_of(&user);
    let link = creator.get(&format!("/api/user/{id}/activationLink")).await;
    assert_eq!(link.status, 200, "{}", link.text);
    let token = link
        .text
        .split_once("activateToken=")
        .expect("token in link")
        .1
        .to_owned();
    let pair = Api::anonymous(app)
        .post(
            "/api/noauth/activate?sendActivationMail=false",
            json!({"activateToken": token, "password": PASSWORD}),
        )
        .await
        .ok();
    (id, bearer(app, pair["token"].as_str().expect("token")))
}

/// A new tenant (through the system administrator) and its activated administrator.
pub async fn new_tenant(app: &TestApp, title: &str) -> (String, Api) {
    let sys = sysadmin(app).await;
    let tenant = sys.post("/api/tenant", json!({"title": title})).await.ok();
    let id = id_of(&tenant);
    let email = format!(
        "admin@{}.example.org",
        title.to_lowercase().replace(' ', "-")
    );
    let (_, admin) = activated_user(
        app,
        &sys,
        json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": id}}),
    )
    .await;
    (id, admin)
}

/// A customer of `admin`'s tenant and an activated user of it.
/// Its e-mail is `user@<title>.<n>.example.org`, `n` making it unique across tenants.
pub async fn new_customer(app: &TestApp, admin: &Api, title: &str) -> (String, Api) {
    let customer = admin
        .post("/api/customer", json!({"title": title}))
        .await
        .ok();
    let id = id_of(&customer);
    let email = format!(
        "user@{}.{}.example.org",
        title.to_lowercase().replace(' ', "-"),
        &id[..8]
    );
    let (_, user) = activated_user(
        app,
        admin,
        json!({"email": email, "authority": "CUSTOMER_USER", "customerId": {"entityType": "CUSTOMER", "id": id}}),
    )
    .await;
    (id, user)
}

async fn tenants_are_the_sysadmins(app: &TestApp) {
    let sys = sysadmin(app).await;
    let tenant_admin = Api::tenant(app).await;
    sys.post("/api/tenant", json!({})).await.error(400, 31);
    sys.post("/api/tenant", json!({"title": "  "}))
        .await
        .error(400, 31);
    tenant_admin
        .post("/api/tenant", json!({"title": "Nope"}))
        .await
        .error(403, 20);
    let acme = sys.post("/api/tenant", json!({"title": "Acme"})).await.ok();
    assert_eq!(acme["id"]["entityType"], "TENANT");
    assert_eq!(
        (acme["title"].clone(), acme["name"].clone()),
        (json!("Acme"), json!("Acme"))
    );
    assert_eq!(acme["tenantProfileId"]["entityType"], "TENANT_PROFILE");
    let id = id_of(&acme);
    let renamed = sys
        .post(
            "/api/tenant",
            json!({"id": {"entityType": "TENANT", "id": id}, "title": "Acme Inc"}),
        )
        .await
        .ok();
    assert_eq!(
        (id_of(&renamed), renamed["title"].clone()),
        (id.clone(), json!("Acme Inc"))
    );
    sys.post(
        "/api/tenant",
        json!({"id": {"id": MISSING_ID}, "title": "X"}),
    )
    .await
    .error(404, 32);
    assert_eq!(
        sys.get(&format!("/api/tenant/{id}")).await.ok()["title"],
        "Acme Inc"
    );
    assert_eq!(
        sys.get(&format!("/api/tenant/info/{id}")).await.ok()["tenantProfileName"],
        "Default"
    );
    let page = sys
        .get("/api/tenants?pageSize=10&page=0&textSearch=acme")
        .await
        .ok();
    assert_eq!(page["totalElements"], 1);
    let infos = sys
        .get("/api/tenantInfos?pageSize=10&page=0&sortProperty=title")
        .await
        .ok();
    assert_eq!(infos["totalElements"], 2, "{infos}");
    tenant_admin
        .get("/api/tenants?pageSize=10&page=0")
        .await
        .error(403, 20);
    // A tenant administrator reads its own tenant only.
    tenant_admin
        .get(&format!("/api/tenant/{id}"))
        .await
        .error(403, 20);
    let own = claims(tenant_admin.token.as_deref().unwrap())["tenantId"].clone();
    tenant_admin
        .get(&format!("/api/tenant/{}", own.as_str().unwrap()))
        .await
        .ok();
    sys.get(&format!("/api/tenant/{MISSING_ID}"))
        .await
        .error(404, 32);

    // Its administrator: created by the system administrator, with ThingsBoard's checks.
    let admin_body = |email: &str, tenant: &str| json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant}});
    sys.post(
        "/api/user?sendActivationMail=false",
        json!({"email": "x@acme.org", "authority": "TENANT_ADMIN"}),
    )
    .await
    .error(400, 31);
    sys.post(
        "/api/user?sendActivationMail=false",
        admin_body("x@acme.org", MISSING_ID),
    )
    .await
    .error(400, 31);
    sys.post(
        "/api/user?sendActivationMail=false",
        json!({"email": "x@acme.org"}),
    )
    .await
    .error(400, 31);
    sys.post(
        "/api/user?sendActivationMail=false",
        admin_body("not-an-email", &id),
    )
    .await
    .error(400, 31);
    // Without a mail server the activation mail cannot be sent: nothing is created.
    sys.post("/api/user", admin_body("x@acme.org", &id))
        .await
        .error(400, 31);
    tenant_admin
        .post(
            "/api/user?sendActivationMail=false",
            json!({"email": "root2@acme.org", "authority": "SYS_ADMIN"}),
        )
        .await
        .error(403, 20);
    let (admin_id, admin) = activated_user(app, &sys, admin_body("x@acme.org", &id)).await;
    let taken = sys
        .post(
            "/api/user?sendActivationMail=false",
            admin_body("X@ACME.org", &id),
        )
        .await
        .error(400, 31);
    assert!(taken.contains("already present in database"), "{taken}");
    let admins = sys
        .get(&format!("/api/tenant/{id}/users?pageSize=10&page=0"))
        .await
        .ok();
    assert_eq!(admins["totalElements"], 1);
    assert_eq!(admins["data"][0]["email"], "x@acme.org");
    assert_eq!(admins["data"][0]["authority"], "TENANT_ADMIN");
    tenant_admin
        .get(&format!("/api/tenant/{id}/users?pageSize=10&page=0"))
        .await
        .error(403, 20);
    sys.get(&format!(
        "/api/tenant/{MISSING_ID}/users?pageSize=10&page=0"
    ))
    .await
    .error(404, 32);

    // The new tenant has its default device profile.
    let device = admin
        .post("/api/device", json!({"name": "pump"}))
        .await
        .ok();
    assert_eq!(device["type"], "default");
    assert_eq!(device["tenantId"]["id"], id.as_str());
    let profiles = admin
        .get("/api/deviceProfiles?pageSize=10&page=0")
        .await
        .ok();
    assert_eq!(profiles["totalElements"], 1);

    // Deleting the tenant removes its users (their tokens stop working) and devices.
    tenant_admin
        .delete(&format!("/api/tenant/{id}"))
        .await
        .error(403, 20);
    sys.delete(&format!("/api/tenant/{id}")).await.ok();
    sys.delete(&format!("/api/tenant/{id}"))
        .await
        .error(404, 32);
    sys.get(&format!("/api/tenant/{id}")).await.error(404, 32);
    me(app, admin.token.as_deref().unwrap())
        .await
        .error(401, 11);
    sys.get(&format!("/api/user/{admin_id}"))
        .await
        .error(404, 32);
    let left = sys.get("/api/tenants?pageSize=10&page=0").await.ok();
    assert_eq!(left["totalElements"], 1);
}

async fn customers_and_their_users(app: &TestApp) {
    let admin = Api::tenant(app).await;
    admin.post("/api/customer", json!({})).await.error(400, 31);
    admin
        .post("/api/customer", json!({"title": "Public"}))
        .await
        .error(400, 31);
    let (customer, user) = new_customer(app, &admin, "Shop").await;
    let taken = admin
        .post("/api/customer", json!({"title": "Shop"}))
        .await
        .error(400, 31);
    assert_eq!(taken, "Customer with such title already exists!");
    // The same title in another tenant is fine.
    let (_, other_admin) = new_tenant(app, "Other").await;
    let (foreign, foreign_user) = new_customer(app, &other_admin, "Shop").await;

    let c = admin.get(&format!("/api/customer/{customer}")).await.ok();
    assert_eq!(
        (c["title"].clone(), c["id"]["entityType"].clone()),
        (json!("Shop"), json!("CUSTOMER"))
    );
    user.get(&format!("/api/customer/{customer}")).await.ok();
    user.get(&format!("/api/customer/{foreign}"))
        .await
        .error(403, 20);
    admin
        .get(&format!("/api/customer/{foreign}"))
        .await
        .error(403, 20);
    admin
        .get(&format!("/api/customer/{MISSING_ID}"))
        .await
        .error(404, 32);
    let by_title = admin
        .get("/api/tenant/customers?customerTitle=Shop")
        .await
        .ok();
    assert_eq!(id_of(&by_title), customer);
    admin
        .get("/api/tenant/customers?customerTitle=Nobody")
        .await
        .error(404, 32);
    let list = admin.get("/api/customers?pageSize=10&page=0").await.ok();
    assert_eq!(list["totalElements"], 1);
    user.get("/api/customers?pageSize=10&page=0")
        .await
        .error(403, 20);
    let renamed = admin
        .post(
            "/api/customer",
            json!({"id": {"entityType": "CUSTOMER", "id": customer}, "title": "Shop 2"}),
        )
        .await
        .ok();
    assert_eq!(renamed["title"], "Shop 2");
    other_admin
        .post(
            "/api/customer",
            json!({"id": {"id": customer}, "title": "Stolen"}),
        )
        .await
        .error(403, 20);

    // Customer users: only with a customer of the caller's tenant.
    let cu = |email: &str, customer: &str| json!({"email": email, "authority": "CUSTOMER_USER", "customerId": {"entityType": "CUSTOMER", "id": customer}});
    admin
        .post(
            "/api/user?sendActivationMail=false",
            json!({"email": "c@x.org", "authority": "CUSTOMER_USER"}),
        )
        .await
        .error(400, 31);
    admin
        .post(
            "/api/user?sendActivationMail=false",
            cu("c@x.org", &foreign),
        )
        .await
        .error(400, 31);
    admin
        .post(
            "/api/user?sendActivationMail=false",
            cu("c@x.org", MISSING_ID),
        )
        .await
        .error(400, 31);
    admin
        .post(
            "/api/user?sendActivationMail=false",
            json!({"email": "c@x.org", "authority": "TENANT_ADMIN", "customerId": {"id": customer}}),
        )
        .await
        .error(400, 31);
    user.post(
        "/api/user?sendActivationMail=false",
        cu("c@x.org", &customer),
    )
    .await
    .error(403, 20);
    sysadmin(app)
        .await
        .post(
            "/api/user?sendActivationMail=false",
            cu("c@x.org", &customer),
        )
        .await
        .error(403, 20);
    let second = admin
        .post(
            "/api/user?sendActivationMail=false",
            cu("second@shop.org", &customer),
        )
        .await
        .ok();
    assert_eq!(second["customerId"]["id"], customer.as_str());
    let users = admin
        .get(&format!(
            "/api/customer/{customer}/users?pageSize=10&page=0&sortProperty=email"
        ))
        .await
        .ok();
    let emails: Vec<_> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].clone())
        .collect();
    let own = format!("user@shop.{}.example.org", &customer[..8]);
    assert_eq!(emails, [json!("second@shop.org"), json!(own)]);
    admin
        .get(&format!("/api/customer/{foreign}/users?pageSize=10&page=0"))
        .await
        .error(403, 20);
    // A customer user lists and reads its customer's users, changes only itself.
    let mine = user.get("/api/users?pageSize=10&page=0").await.ok();
    assert_eq!(mine["totalElements"], 2);
    let all = admin.get("/api/users?pageSize=10&page=0").await.ok();
    assert_eq!(all["totalElements"], 3, "{all}");
    let second_id = id_of(&second);
    user.get(&format!("/api/user/{second_id}")).await.ok();
    foreign_user
        .get(&format!("/api/user/{second_id}"))
        .await
        .error(403, 20);
    let mut changed = second.clone();
    changed["firstName"] = json!("Sam");
    user.post("/api/user", changed.clone()).await.error(403, 20);
    assert_eq!(
        admin.post("/api/user", changed.clone()).await.ok()["firstName"],
        "Sam"
    );
    changed["authority"] = json!("TENANT_ADMIN");
    admin.post("/api/user", changed).await.error(400, 31);

    // Deleting the customer removes its users.
    other_admin
        .delete(&format!("/api/customer/{customer}"))
        .await
        .error(403, 20);
    user.delete(&format!("/api/customer/{customer}"))
        .await
        .error(403, 20);
    admin
        .delete(&format!("/api/customer/{customer}"))
        .await
        .ok();
    admin
        .get(&format!("/api/customer/{customer}"))
        .await
        .error(404, 32);
    admin
        .get(&format!("/api/user/{second_id}"))
        .await
        .error(404, 32);
    me(app, user.token.as_deref().unwrap()).await.error(401, 11);
}

async fn devices_are_assigned_to_customers(app: &TestApp) {
    let admin = Api::tenant(app).await;
    let (customer, user) = new_customer(app, &admin, "Farm").await;
    let (_, other_admin) = new_tenant(app, "Elsewhere").await;
    let (foreign, _) = new_customer(app, &other_admin, "Farm").await;
    let (mine, _) = admin.create_device(json!({"name": "tractor"})).await;
    let (other, _) = admin.create_device(json!({"name": "barn"})).await;
    let (foreign_device, _) = other_admin.create_device(json!({"name": "tractor"})).await;

    admin
        .delete(&format!("/api/customer/device/{mine}"))
        .await
        .error(400, 31);
    let assigned = admin
        .post(
            &format!("/api/customer/{customer}/device/{mine}"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(assigned["customerId"]["id"], customer.as_str());
    admin
        .post(
            &format!("/api/customer/{foreign}/device/{other}"),
            json!({}),
        )
        .await
        .error(403, 20);
    admin
        .post(
            &format!("/api/customer/{customer}/device/{foreign_device}"),
            json!({}),
        )
        .await
        .error(403, 20);
    admin
        .post(
            &format!("/api/customer/{MISSING_ID}/device/{other}"),
            json!({}),
        )
        .await
        .error(404, 32);
    user.post(
        &format!("/api/customer/{customer}/device/{other}"),
        json!({}),
    )
    .await
    .error(403, 20);

    for caller in [&admin, &user] {
        let page = caller
            .get(&format!(
                "/api/customer/{customer}/devices?pageSize=10&page=0"
            ))
            .await
            .ok();
        assert_eq!(page["totalElements"], 1);
        assert_eq!(page["data"][0]["name"], "tractor");
        let infos = caller
            .get(&format!(
                "/api/customer/{customer}/deviceInfos?pageSize=10&page=0"
            ))
            .await
            .ok();
        assert_eq!(infos["data"][0]["customerTitle"], "Farm");
    }
    user.get(&format!(
        "/api/customer/{foreign}/devices?pageSize=10&page=0"
    ))
    .await
    .error(403, 20);
    let info = admin.get(&format!("/api/device/info/{mine}")).await.ok();
    assert_eq!(info["customerTitle"], "Farm");

    let unassigned = admin
        .delete(&format!("/api/customer/device/{mine}"))
        .await
        .ok();
    assert_eq!(unassigned["customerId"]["id"], NULL_UUID);
    let page = admin
        .get(&format!(
            "/api/customer/{customer}/devices?pageSize=10&page=0"
        ))
        .await
        .ok();
    assert_eq!(page["totalElements"], 0);

    // Deleting a customer unassigns its devices and keeps them.
    admin
        .post(
            &format!("/api/customer/{customer}/device/{mine}"),
            json!({}),
        )
        .await
        .ok();
    admin
        .delete(&format!("/api/customer/{customer}"))
        .await
        .ok();
    let device = admin.get(&format!("/api/device/{mine}")).await.ok();
    assert_eq!(device["customerId"]["id"], NULL_UUID);
}

async fn activation_and_user_tokens(app: &TestApp) {
    let sys = sysadmin(app).await;
    let admin = Api::tenant(app).await;
    let anon = Api::anonymous(app);
    let (customer, _) = new_customer(app, &admin, "Bakery").await;
    let created = admin
        .post(
            "/api/user?sendActivationMail=false",
            json!({"email": "baker@bakery.org", "authority": "CUSTOMER_USER", "customerId": {"id": customer}, "firstName": "Bo"}),
        )
        .await
        .ok();
    let id = id_of(&created);
    assert_eq!(created["firstName"], "Bo");
    // Not active yet: no login.
    anon.post(
        "/api/auth/login",
        json!({"username": "baker@bakery.org", "password": ""}),
    )
    .await
    .error(401, 10);
    let link = admin.get(&format!("/api/user/{id}/activationLink")).await;
    assert_eq!(link.status, 200);
    assert!(
        link.content_type.starts_with("text/plain"),
        "{}",
        link.content_type
    );
    assert!(
        link.text.starts_with(&app.http),
        "{} vs {}",
        link.text,
        app.http
    );
    let token = link.text.split_once("activateToken=").unwrap().1.to_owned();
    let info = admin
        .get(&format!("/api/user/{id}/activationLinkInfo"))
        .await
        .ok();
    assert_eq!(info["value"], link.text.as_str());
    assert!(info["ttlMs"].as_i64().unwrap() > 23 * 3600 * 1000);
    sys.get(&format!("/api/user/{id}/activationLink"))
        .await
        .error(403, 20);

    // A browser is redirected to the password page; an unknown token is a conflict.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let follow = |token: String| {
        browser
            .get(format!(
                "{}/api/noauth/activate?activateToken={token}",
                app.http
            ))
            .send()
    };
    let followed = follow(token.clone()).await.expect("GET");
    assert_eq!(followed.status().as_u16(), 303);
    assert_eq!(
        followed.headers()["location"],
        format!("/login/createPassword?activateToken={token}").as_str()
    );
    assert_eq!(
        follow("nope".into()).await.expect("GET").status().as_u16(),
        409
    );

    let activate =
        |token: &str, password: &str| json!({"activateToken": token, "password": password});
    anon.post("/api/noauth/activate", activate(&token, "123"))
        .await
        .error(400, 31);
    let unknown = anon
        .post("/api/noauth/activate", activate("nope", PASSWORD))
        .await
        .error(400, 31);
    assert_eq!(
        unknown,
        "Unable to find user credentials by activateToken [nope]"
    );
    let pair = anon
        .post("/api/noauth/activate", activate(&token, PASSWORD))
        .await
        .ok();
    let me_body = me(app, pair["token"].as_str().unwrap()).await.ok();
    assert_eq!(me_body["email"], "baker@bakery.org");
    anon.post("/api/noauth/activate", activate(&token, PASSWORD))
        .await
        .error(400, 31);
    Api::login(app, "baker@bakery.org", PASSWORD).await;
    let again = admin
        .get(&format!("/api/user/{id}/activationLink"))
        .await
        .error(400, 31);
    assert_eq!(again, "User is already activated!");

    // User tokens: the system administrator for tenant administrators, a tenant administrator
    // for its customer users.
    let as_user = admin.get(&format!("/api/user/{id}/token")).await.ok();
    let claims = claims(as_user["token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].clone(), claims["scopes"][0].clone()),
        (json!("baker@bakery.org"), json!("CUSTOMER_USER"))
    );
    me(app, as_user["token"].as_str().unwrap()).await.ok();
    let tenant_admin_id = crate::support::claims(admin.token.as_deref().unwrap())["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .get(&format!("/api/user/{tenant_admin_id}/token"))
        .await
        .error(403, 20);
    sys.get(&format!("/api/user/{id}/token"))
        .await
        .error(403, 20);
    let as_admin = sys
        .get(&format!("/api/user/{tenant_admin_id}/token"))
        .await
        .ok();
    me(app, as_admin["token"].as_str().unwrap()).await.ok();
    let (_, other_admin) = new_tenant(app, "Mill").await;
    other_admin
        .get(&format!("/api/user/{id}/token"))
        .await
        .error(403, 20);
    admin
        .get(&format!("/api/user/{MISSING_ID}/token"))
        .await
        .error(404, 32);
}

crate::both_backends!(
    tenants_are_the_sysadmins,
    customers_and_their_users,
    devices_are_assigned_to_customers,
    activation_and_user_tokens,
);
