//! `--create-devices`: registers the load devices directly in a ferroboard database (idempotent).

use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use ferroboard::domain::{DeviceId, now_ms};
use ferroboard::storage::{Device, DeviceCredentials, DynStore, StorageError};

/// Devices created at once; PostgreSQL benefits, SQLite serialises them anyway.
const CONCURRENCY: usize = 16;

/// Creates devices `{prefix}0 .. {prefix}{count-1}` (name and access token alike) for the tenant of
/// `tenant_email`, skipping tokens that already exist.
pub fn create_devices(
    url: &str,
    tenant_email: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = rt.block_on(create(
        url.to_owned(),
        tenant_email.to_owned(),
        prefix.to_owned(),
        count,
    ));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

async fn create(
    url: String,
    tenant_email: String,
    prefix: String,
    count: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = ferroboard::storage::open(&url, &ferroboard::config::StorageConfig::default())
        .await
        .with_context(|| format!("cannot open database {url}"))?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    let user = store.find_user_by_email(&tenant_email).await?.ok_or_else(|| {
        anyhow!(
            "no user {tenant_email} in {url}: start `ferroboard serve` once against this database \
             (the first start creates the tenant), then retry"
        )
    })?;
    let tenant = user
        .tenant_id
        .ok_or_else(|| anyhow!("user {tenant_email} belongs to no tenant"))?;
    let profile = store
        .default_profile(tenant)
        .await?
        .ok_or_else(|| anyhow!("tenant of {tenant_email} has no default device profile"))?;

    let mut created = 0;
    let mut existing = 0;
    let mut next = 0;
    let mut tasks = tokio::task::JoinSet::new();
    while next < count || !tasks.is_empty() {
        while next < count && tasks.len() < CONCURRENCY {
            let token = format!("{prefix}{next}");
            next += 1;
            let store = store.clone();
            let profile = profile.clone();
            tasks.spawn(async move { create_one(&store, tenant, &profile, token).await });
        }
        match tasks.join_next().await {
            Some(Ok(Ok(true))) => created += 1,
            Some(Ok(Ok(false))) => existing += 1,
            Some(Ok(Err(e))) => {
                tasks.abort_all();
                return Err(e);
            }
            Some(Err(e)) => bail!("device creation task failed: {e}"),
            None => {}
        }
        let done = created + existing;
        if done > 0 && done % 1000 == 0 {
            eprintln!("create-devices: {done}/{count} ({created} created)");
        }
    }
    store.close().await;
    eprintln!(
        "create-devices: {count} devices ready ({created} created, {existing} existing) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// True when created, false when the token was already registered.
async fn create_one(
    store: &DynStore,
    tenant: ferroboard::domain::TenantId,
    profile: &ferroboard::storage::DeviceProfile,
    token: String,
) -> anyhow::Result<bool> {
    if store.find_by_credentials_id(&token).await?.is_some() {
        return Ok(false);
    }
    let now = now_ms();
    let device = Device {
        id: DeviceId::new(),
        tenant_id: tenant,
        customer_id: None,
        created_time: now,
        name: token.clone(),
        label: None,
        profile_id: profile.id,
        profile_name: profile.name.clone(),
        additional_info: serde_json::Value::Null,
        firmware_id: None,
        software_id: None,
        version: 1,
    };
    let credentials = DeviceCredentials {
        // A fresh v4 UUID (a new DeviceId wraps one).
        id: DeviceId::new().0,
        device_id: device.id,
        created_time: now,
        credentials_type: "ACCESS_TOKEN".to_owned(),
        credentials_id: token.clone(),
        credentials_value: None,
        version: 1,
    };
    match store.create_device(&device, &credentials).await {
        Ok(()) => Ok(true),
        Err(StorageError::Conflict(msg)) => {
            // Raced with another creator of the same token, or a device of that name has other credentials.
            if store.find_by_credentials_id(&token).await?.is_some() {
                Ok(false)
            } else {
                bail!("cannot create device {token}: {msg}")
            }
        }
        Err(e) => Err(anyhow!(e).context(format!("cannot create device {token}"))),
    }
}
