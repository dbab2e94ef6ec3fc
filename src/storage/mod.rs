//! Storage: one trait per aggregate, implemented once (`sql`) for PostgreSQL and SQLite, and the
//! group-commit writer.
//! All SQL of the platform lives below this module.

pub mod batch;
mod checks;
mod common;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::ota::{OtaPackageData, OtaPackageType};
use crate::domain::{
    AttributeScope, CustomerId, DeviceId, DeviceProfileId, OtaPackageId, TenantId, TsKv, UserId,
};
// The entities the stores read and write are domain types; re-exported for the stores' callers.
pub use crate::domain::{
    Activation, Aggregation, AttributeKv, AuthSession, Authority, ClaimData, Customer, Device,
    DeviceCredentials, DeviceProfile, HistoryQuery, OtaPackage, Page, PageQuery, Rpc, RpcStatus,
    SortOrder, StorageError, Tenant, User,
};

pub use batch::{BatchConfig, Writer};
pub(crate) use common::DEFAULT_PROFILE_TAKEN;

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StorageError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Database(e.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A write that goes through the group-commit writer.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// Time-series points of one entity; the latest values are updated when newer.
    Timeseries {
        entity: uuid::Uuid,
        points: Vec<TsKv>,
        /// The points expire this long after their own timestamp (ms); None keeps them.
        ttl_ms: Option<i64>,
    },
    /// Attributes of one entity and scope, all stamped `ts`.
    Attributes {
        entity: uuid::Uuid,
        scope: AttributeScope,
        kvs: Vec<crate::domain::Kv>,
        ts: i64,
    },
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()>;
    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>>;
    /// Changes the title; false when absent.
    async fn update_tenant(&self, tenant: &Tenant) -> Result<bool>;
    /// All tenants; `text_search` matches the title. Sort properties: `createdTime`, `title`.
    async fn page_tenants(&self, query: &PageQuery) -> Result<Page<Tenant>>;
    /// Deletes the tenant and everything it owns (customers, users and their sessions, profiles,
    /// devices with their credentials, attributes, time series and RPCs), in one transaction.
    /// Returns the ids of the deleted devices, or None when the tenant is absent.
    async fn delete_tenant(&self, id: TenantId) -> Result<Option<Vec<DeviceId>>>;
}

#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// `Conflict("Customer with such title already exists!")` for a title taken in the tenant.
    async fn create_customer(&self, customer: &Customer) -> Result<()>;
    /// Changes the title (same conflict); false when absent or another tenant's.
    async fn update_customer(&self, customer: &Customer) -> Result<bool>;
    /// Any tenant's customer: the caller decides whether it may see it.
    async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>>;
    async fn find_customer_by_title(
        &self,
        tenant: TenantId,
        title: &str,
    ) -> Result<Option<Customer>>;
    /// Customers of a tenant; `text_search` matches the title. Sort: `createdTime`, `title`.
    async fn page_customers(&self, tenant: TenantId, query: &PageQuery) -> Result<Page<Customer>>;
    /// Deletes the customer and its users; its devices stay with the tenant, unassigned. False
    /// when absent or another tenant's.
    async fn delete_customer(&self, tenant: TenantId, id: CustomerId) -> Result<bool>;
}

/// Which users a page lists: those of a tenant, optionally of one customer and one authority.
#[derive(Clone, Copy, Debug)]
pub struct UserFilter {
    pub tenant: TenantId,
    pub customer: Option<CustomerId>,
    pub authority: Option<Authority>,
}

/// Activation links of users created without a password.
#[async_trait]
pub trait ActivationStore: Send + Sync {
    /// Creates the user (disabled, without password) and its activation in one transaction;
    /// `Conflict` when the e-mail is taken.
    async fn create_user_with_activation(&self, user: &User, activation: &Activation)
    -> Result<()>;
    /// The user's pending activation.
    async fn get_activation(&self, user: UserId) -> Result<Option<Activation>>;
    /// Replaces the user's activation token (a renewed link).
    async fn put_activation(&self, activation: &Activation) -> Result<()>;
    async fn find_activation(&self, token: &str) -> Result<Option<Activation>>;
    /// Uses the activation `token` of `user`: sets the password hash, enables the user and
    /// replaces its sessions by `session`, in one transaction. False when the token is no longer
    /// the user's (used meanwhile).
    async fn activate_user(
        &self,
        user: UserId,
        token: &str,
        hash: &str,
        session: &AuthSession,
    ) -> Result<bool>;
}

/// Claim windows of devices (see `ClaimData`).
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Opens or replaces the device's claim window.
    async fn put_claim(&self, device: DeviceId, claim: &ClaimData) -> Result<()>;
    async fn get_claim(&self, device: DeviceId) -> Result<Option<ClaimData>>;
    /// Assigns the device to `customer` when it has no customer, and closes its claim window, in
    /// one transaction. False (nothing changed) when the device already has a customer or is gone.
    async fn claim_device(&self, device: DeviceId, customer: CustomerId) -> Result<bool>;
    /// Closes the claim window; false when none was open.
    async fn delete_claim(&self, device: DeviceId) -> Result<bool>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn count_users(&self) -> Result<i64>;
    /// Fails with `Conflict` when the email is taken.
    async fn create_user(&self, user: &User) -> Result<()>;
    /// Case-insensitive on the email.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>>;
    async fn get_user(&self, id: UserId) -> Result<Option<User>>;
    /// Enables or disables the user: disabling also ends its sessions, enabling also lifts a
    /// lockout and forgets failed logins (as ThingsBoard). False when absent.
    async fn set_user_enabled(&self, id: UserId, enabled: bool) -> Result<bool>;
    /// The tenant administrators of `tenant`.
    async fn count_tenant_admins(&self, tenant: TenantId) -> Result<i64>;
    /// Deletes the user with its sessions; false when absent.
    async fn delete_user(&self, id: UserId) -> Result<bool>;
    /// Changes e-mail, first and last name (`Conflict` when the e-mail is taken); false when absent.
    async fn update_user_profile(&self, user: &User) -> Result<bool>;
    /// `text_search` matches the e-mail, first or last name. Sort: `createdTime`, `email`,
    /// `firstName`, `lastName`.
    async fn page_users(&self, filter: &UserFilter, query: &PageQuery) -> Result<Page<User>>;
    /// Counts a failed login. Past `max` consecutive failures the count starts again and the
    /// user is locked until `lock_until`. Returns the user's `locked_until` afterwards (None when
    /// the user is absent).
    async fn record_login_failure(
        &self,
        id: UserId,
        max: i32,
        lock_until: i64,
    ) -> Result<Option<i64>>;
    /// Forgets the consecutive failed logins (a login succeeded).
    async fn clear_login_failures(&self, id: UserId) -> Result<()>;
}

/// Login sessions (see `AuthSession`).
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session. Drops every session expired at `now`, and the user's oldest ones so
    /// that at most `max_per_user` remain.
    async fn create_session(
        &self,
        session: &AuthSession,
        max_per_user: u32,
        now: i64,
    ) -> Result<()>;
    /// The session, while it exists, has not expired at `now` and its user exists and is enabled.
    async fn get_session(&self, id: uuid::Uuid, now: i64) -> Result<Option<AuthSession>>;
    /// Replaces the session's refresh token `old` by `new`, expiring at `expires_at`. False when
    /// the session is gone or `old` is not its current refresh token (a used one).
    async fn rotate_session(
        &self,
        id: uuid::Uuid,
        old: uuid::Uuid,
        new: uuid::Uuid,
        expires_at: i64,
    ) -> Result<bool>;
    /// False when absent.
    async fn delete_session(&self, id: uuid::Uuid) -> Result<bool>;
    /// Sets the user's password hash and replaces all its sessions by `session`, in one
    /// transaction. False (nothing changed) when the user is absent.
    async fn change_password(
        &self,
        user: UserId,
        hash: &str,
        session: &AuthSession,
    ) -> Result<bool>;
}

#[async_trait]
pub trait DeviceProfileStore: Send + Sync {
    /// `Conflict` texts: "Device profile with such name already exists!", "Device profile with
    /// such provision device key already exists!", "Another default device profile is present in
    /// scope of current tenant!".
    async fn create_profile(&self, profile: &DeviceProfile) -> Result<()>;
    /// Updates name, description, profile data and provisioning key (not the default flag);
    /// `NotFound` when absent; `Conflict` as `create_profile`.
    async fn update_profile(&self, profile: &DeviceProfile) -> Result<()>;
    /// False when absent; `Conflict("The device profile referenced by the devices cannot be
    /// deleted!")` while devices use it.
    async fn delete_profile(&self, tenant: TenantId, id: DeviceProfileId) -> Result<bool>;
    /// Makes the profile the tenant's default (and no other); false, nothing changed, when absent.
    async fn set_default_profile(&self, tenant: TenantId, id: DeviceProfileId) -> Result<bool>;
    /// The tenant of the profile with this id, whichever it is (to tell "not yours" from "absent").
    async fn profile_owner(&self, id: DeviceProfileId) -> Result<Option<TenantId>>;
    /// The profile of any tenant holding this provisioning key.
    async fn find_profile_by_provision_key(&self, key: &str) -> Result<Option<DeviceProfile>>;
    async fn get_profile(
        &self,
        tenant: TenantId,
        id: DeviceProfileId,
    ) -> Result<Option<DeviceProfile>>;
    async fn default_profile(&self, tenant: TenantId) -> Result<Option<DeviceProfile>>;
    async fn find_profile_by_name(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<DeviceProfile>>;
    async fn page_profiles(
        &self,
        tenant: TenantId,
        query: &PageQuery,
    ) -> Result<Page<DeviceProfile>>;
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Creates the device and its credentials in one transaction. `Conflict` texts:
    /// "Device with such name already exists!", "Specified credentials are already registered!".
    async fn create_device(&self, device: &Device, credentials: &DeviceCredentials) -> Result<()>;
    /// Updates name, label, profile, customer and additional info; bumps `version`. `NotFound` if absent.
    async fn update_device(&self, device: &Device) -> Result<Device>;
    async fn get_device(&self, tenant: TenantId, id: DeviceId) -> Result<Option<Device>>;
    /// Any tenant's device: the caller decides whether it may see it (403 versus 404).
    async fn find_device(&self, id: DeviceId) -> Result<Option<Device>>;
    async fn find_device_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Device>>;
    /// Deletes the device with its credentials, attributes and time series; false when absent.
    async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool>;
    /// Devices of a tenant, optionally of one profile name (`type`).
    async fn page_devices(
        &self,
        tenant: TenantId,
        profile_name: Option<&str>,
        query: &PageQuery,
    ) -> Result<Page<Device>>;
    /// Devices of a tenant assigned to `customer`, optionally of one profile name.
    async fn page_customer_devices(
        &self,
        tenant: TenantId,
        customer: CustomerId,
        profile_name: Option<&str>,
        query: &PageQuery,
    ) -> Result<Page<Device>>;
}

#[async_trait]
pub trait CredentialsStore: Send + Sync {
    async fn get_credentials(&self, device: DeviceId) -> Result<Option<DeviceCredentials>>;
    /// The device holding these credentials (the MQTT CONNECT lookup).
    async fn find_by_credentials_id(
        &self,
        credentials_id: &str,
    ) -> Result<Option<(Device, DeviceCredentials)>>;
    /// Replaces the device's credentials; `Conflict("Specified credentials are already registered!")`.
    async fn update_credentials(
        &self,
        credentials: &DeviceCredentials,
    ) -> Result<DeviceCredentials>;
}

#[async_trait]
pub trait AttributeStore: Send + Sync {
    /// Attributes of one scope; all keys when `keys` is None. Missing keys are absent.
    async fn find_attributes(
        &self,
        entity: uuid::Uuid,
        scope: AttributeScope,
        keys: Option<&[String]>,
    ) -> Result<Vec<AttributeKv>>;
    /// Keys of one scope, or of all scopes when None (deduplicated, sorted).
    async fn attribute_keys(
        &self,
        entity: uuid::Uuid,
        scope: Option<AttributeScope>,
    ) -> Result<Vec<String>>;
    /// Returns the keys that existed and were deleted.
    async fn delete_attributes(
        &self,
        entity: uuid::Uuid,
        scope: AttributeScope,
        keys: &[String],
    ) -> Result<Vec<String>>;
}

#[async_trait]
pub trait TimeseriesStore: Send + Sync {
    /// Latest values; all keys when `keys` is None. Keys without data are absent.
    async fn latest(&self, entity: uuid::Uuid, keys: Option<&[String]>) -> Result<Vec<TsKv>>;
    /// Points of one key in `[start, end)`; for aggregations one point per non-empty bucket,
    /// stamped at the bucket midpoint, ascending.
    async fn history(&self, entity: uuid::Uuid, query: &HistoryQuery) -> Result<Vec<TsKv>>;
    /// Keys that have any stored point or latest value, sorted.
    async fn timeseries_keys(&self, entity: uuid::Uuid) -> Result<Vec<String>>;
    /// Time-series keys with a latest value on any device of the tenant (its key quota's count).
    async fn tenant_timeseries_keys(&self, tenant: uuid::Uuid) -> Result<Vec<String>>;
    /// Deletes points in `[start, end)` (all when None); with `delete_latest` also the latest
    /// values in the range, and with `rewrite_latest` a deleted latest value is replaced by the
    /// newest point left (ThingsBoard's `rewriteLatestIfDeleted`).
    async fn delete_timeseries(
        &self,
        entity: uuid::Uuid,
        keys: &[String],
        range: Option<(i64, i64)>,
        delete_latest: bool,
        rewrite_latest: bool,
    ) -> Result<()>;
    /// Deletes at most `limit` points whose expiry time is at or before `now`; returns how many.
    /// Latest values stay (as in ThingsBoard).
    async fn delete_expired(&self, now: i64, limit: u32) -> Result<u64>;
}

/// A conditional status change: applied only while the RPC is in one of `from`.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcTransition<'a> {
    pub from: &'a [RpcStatus],
    pub to: RpcStatus,
    /// Replaces the stored response when Some.
    pub response: Option<&'a Value>,
    /// Replaces the attempt counter when Some.
    pub retries: Option<i32>,
}

impl RpcTransition<'_> {
    /// `from` as `,QUEUED,SENT,` for the SQL membership test.
    pub fn from_list(&self) -> String {
        let mut out = String::from(",");
        for s in self.from {
            out.push_str(s.as_str());
            out.push(',');
        }
        out
    }
}

#[async_trait]
pub trait RpcStore: Send + Sync {
    /// The device must exist; its RPCs go when it is deleted.
    async fn create_rpc(&self, rpc: &Rpc) -> Result<()>;
    /// Any tenant's RPC when `tenant` is None (service hooks); the tenant's only otherwise.
    async fn get_rpc(&self, tenant: Option<TenantId>, id: uuid::Uuid) -> Result<Option<Rpc>>;
    /// True when the RPC was in one of `change.from` and now has `change.to`.
    async fn transition_rpc(&self, id: uuid::Uuid, change: &RpcTransition<'_>) -> Result<bool>;
    /// False when absent or another tenant's.
    async fn delete_rpc(&self, tenant: TenantId, id: uuid::Uuid) -> Result<bool>;
    /// RPCs of one device, optionally of one status. Sort properties: `createdTime`,
    /// `expirationTime`, `request`, `response`, `status`.
    async fn page_rpcs(
        &self,
        tenant: TenantId,
        device: DeviceId,
        status: Option<RpcStatus>,
        query: &PageQuery,
    ) -> Result<Page<Rpc>>;
    /// QUEUED, SENT and TIMEOUT RPCs of the device, oldest first (expired ones included; the caller
    /// decides).
    async fn pending_rpcs(&self, device: DeviceId) -> Result<Vec<Rpc>>;
    /// Marks QUEUED, SENT and TIMEOUT RPCs, and DELIVERED two-way ones, whose expiration time is at
    /// or before `now` as EXPIRED; returns how many.
    async fn expire_rpcs(&self, now: i64) -> Result<u64>;
}

/// Size of one stored chunk of a package file (the last one may be shorter).
pub const OTA_CHUNK_BYTES: usize = 64 * 1024;

/// Firmware and software packages. A package's file is a blob: chunks of `OTA_CHUNK_BYTES`
/// numbered from 0, written one statement at a time before the package points at them
/// (`attach_data`), so an upload never holds a transaction and never sits in memory whole.
#[async_trait]
pub trait OtaStore: Send + Sync {
    /// `Conflict("OtaPackage with such title and version already exists!")`.
    async fn create_package(&self, package: &OtaPackage) -> Result<()>;
    async fn get_package(&self, tenant: TenantId, id: OtaPackageId) -> Result<Option<OtaPackage>>;
    /// The tenant of a package, whoever asks (403 rather than 404 for another tenant's).
    async fn package_owner(&self, id: OtaPackageId) -> Result<Option<TenantId>>;
    /// The tenant's packages; with a filter only those of one profile and type that have data
    /// or a URL. Sort properties: `createdTime`, `title`, `version`, `type`, `tag`, `url`,
    /// `fileName`, `dataSize`.
    async fn page_packages(
        &self,
        tenant: TenantId,
        filter: Option<(DeviceProfileId, OtaPackageType)>,
        query: &PageQuery,
    ) -> Result<Page<OtaPackage>>;
    /// Deletes the package with its file; false when absent;
    /// `Conflict("The otaPackage referenced by the devices cannot be deleted!")` while assigned.
    async fn delete_package(&self, tenant: TenantId, id: OtaPackageId) -> Result<bool>;
    /// Stores chunk `idx` of a blob.
    async fn put_chunk(&self, blob: uuid::Uuid, idx: i32, data: &[u8]) -> Result<()>;
    /// Points the package at its uploaded blob; false when the package is absent, already has a
    /// file or is a URL package.
    async fn attach_data(
        &self,
        tenant: TenantId,
        id: OtaPackageId,
        data: &OtaPackageData,
    ) -> Result<bool>;
    /// Deletes a blob's chunks (a failed or abandoned upload).
    async fn discard_blob(&self, blob: uuid::Uuid) -> Result<()>;
    /// Chunks `first..=last` of a blob, in order.
    async fn read_chunks(&self, blob: uuid::Uuid, first: i32, last: i32) -> Result<Vec<Vec<u8>>>;
    /// Devices of the tenant's `profile` without a package of `kind` of their own (those the
    /// profile's package applies to), by ascending id after `after`, at most `limit`.
    async fn devices_following_profile(
        &self,
        tenant: TenantId,
        profile: DeviceProfileId,
        kind: OtaPackageType,
        after: Option<crate::domain::DeviceId>,
        limit: u32,
    ) -> Result<Vec<crate::domain::Device>>;
}

#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless the key exists; returns the stored value (first writer wins across nodes).
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String>;
}

/// Everything one backend provides.
#[async_trait]
pub trait Store:
    TenantStore
    + CustomerStore
    + UserStore
    + ActivationStore
    + ClaimStore
    + SessionStore
    + DeviceProfileStore
    + DeviceStore
    + CredentialsStore
    + AttributeStore
    + TimeseriesStore
    + SettingsStore
    + RpcStore
    + OtaStore
{
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// `(version, name)` of the migrations `migrate` would apply, without applying them.
    async fn pending_migrations(&self) -> Result<Vec<(i64, String)>>;
    /// Writes a consistent copy of the whole database to the new file `path` while the database
    /// stays in use (SQLite's `VACUUM INTO`); PostgreSQL answers `Unsupported` naming `pg_dump`.
    async fn backup(&self, path: &std::path::Path) -> Result<()>;
    /// A cheap round trip for the health probe.
    async fn ping(&self) -> Result<()>;
    /// Commits all ops in one transaction (called by the group-commit writer).
    async fn commit(&self, ops: &[WriteOp]) -> Result<()>;
    /// Closes the pool after the writer drained.
    async fn close(&self);
}

pub type DynStore = Arc<dyn Store>;

/// As `open`, but a PostgreSQL server that does not answer yet (a container still starting) is
/// tried again with a growing pause (0.25 s doubling up to 5 s), one log line per failed attempt,
/// until `options.connect_wait_ms` have passed; then the last error is returned. SQLite is
/// opened once: its errors (a path, a permission) do not pass by waiting.
pub async fn open_retrying(url: &str, options: &crate::config::StorageConfig) -> Result<DynStore> {
    use std::time::{Duration, Instant};
    let is_pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let wait = Duration::from_millis(options.connect_wait_ms);
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        match open(url, options).await {
            Ok(store) => return Ok(store),
            Err(e) => {
                let waited = started.elapsed();
                if !is_pg || waited + pause > wait {
                    return Err(e);
                }
                tracing::warn!(
                    attempt,
                    retry_in_ms = pause.as_millis() as u64,
                    waited_ms = waited.as_millis() as u64,
                    wait_ms = options.connect_wait_ms,
                    error = %crate::observability::redact_secrets(&e.to_string()),
                    "database not reachable yet; retrying (storage.connect_wait_ms)"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// Opens the backend named by the URL (`sqlite://PATH` or `postgres://...`) without migrating.
pub async fn open(url: &str, options: &crate::config::StorageConfig) -> Result<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PgStore::connect(url, options).await?));
    }
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(sqlite::SqliteStore::connect(url, options).await?));
    }
    Err(StorageError::Database(format!(
        "unsupported database URL '{}': expected sqlite://PATH or postgres://...",
        crate::observability::redact_secrets(url)
    )))
}
