//! Device profiles, once for both backends.

use crate::storage::common::{DEFAULT_PROFILE_TAKEN, PROFILE_NAME_TAKEN, PROVISION_KEY_TAKEN};

pub(crate) const PROFILE_SELECT: &str = "SELECT p.id, p.tenant_id, p.created_time, p.name, \
     p.description, p.is_default, CAST(p.profile_data AS TEXT) AS profile_data, \
     p.provision_device_key, p.firmware_id, p.software_id FROM device_profiles p";
pub(crate) const INSERT_PROFILE: &str = "INSERT INTO device_profiles (id, tenant_id, created_time, \
     name, description, is_default, profile_data, provision_device_key, firmware_id, software_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const UPDATE_PROFILE: &str = "UPDATE device_profiles SET name = $3, description = $4, \
     profile_data = $5, provision_device_key = $6, firmware_id = $7, software_id = $8 \
     WHERE tenant_id = $1 AND id = $2";
/// Clears the tenant's (`$1`) default flag on every profile but `$2`.
pub(crate) const CLEAR_DEFAULT: &str = "UPDATE device_profiles SET is_default = FALSE \
     WHERE tenant_id = $1 AND is_default = TRUE AND id <> $2";
pub(crate) const SET_DEFAULT: &str =
    "UPDATE device_profiles SET is_default = TRUE WHERE tenant_id = $1 AND id = $2";
/// Devices of the tenant (`$2`) using the profile (`$1`).
pub(crate) const PROFILE_USED: &str =
    "SELECT count(*) FROM devices WHERE profile_id = $1 AND tenant_id = $2";

/// Profiles of a tenant (`$1`), optionally matching a text (`$2`).
pub(crate) fn profile_filter(find: &str) -> String {
    format!(" WHERE p.tenant_id = $1 AND ($2 IS NULL OR {find}(lower(p.name), lower($2)) > 0)")
}

/// PostgreSQL names the violated constraint (`..._name_unq`), SQLite the columns of the index
/// (`device_profiles.name`); the provisioning key has its own index, the other unique index is
/// the one default profile per tenant.
pub(crate) fn profile_conflict(what: &str) -> String {
    if what.contains("provision") {
        PROVISION_KEY_TAKEN
    } else if what.contains(".name") || what.contains("name_unq") {
        PROFILE_NAME_TAKEN
    } else {
        DEFAULT_PROFILE_TAKEN
    }
    .to_owned()
}

/// The second parameter of a single-profile lookup.
pub(crate) enum ProfileArg<'a> {
    Id(crate::domain::DeviceProfileId),
    Name(&'a str),
}

/// Implements `DeviceProfileStore` for `$store`.
macro_rules! profile_store {
    ($store:ident) => {
        mod profiles {
            use async_trait::async_trait;

            use super::rows::*;
            use crate::domain::{DeviceProfile, DeviceProfileId, Page, PageQuery, TenantId};
            use crate::storage::common::{PROFILE_IN_USE, conflict, profile_order};
            use crate::storage::sql::profiles::*;
            use crate::storage::{DeviceProfileStore, Result, StorageError};

            impl super::$store {
                async fn profile_where(
                    &self,
                    condition: &str,
                    tenant: TenantId,
                    arg: Option<ProfileArg<'_>>,
                ) -> Result<Option<DeviceProfile>> {
                    let sql = format!("{PROFILE_SELECT} WHERE p.tenant_id = $1 AND {condition}");
                    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.0);
                    let query = match arg {
                        None => query,
                        Some(ProfileArg::Id(id)) => query.bind(id.0),
                        Some(ProfileArg::Name(name)) => query.bind(name),
                    };
                    let row = query.fetch_optional(self.reader()).await?;
                    row.as_ref().map(profile_of).transpose()
                }
            }

            #[async_trait]
            impl DeviceProfileStore for super::$store {
                async fn create_profile(&self, profile: &DeviceProfile) -> Result<()> {
                    sqlx::query(INSERT_PROFILE)
                        .bind(profile.id.0)
                        .bind(profile.tenant_id.0)
                        .bind(profile.created_time)
                        .bind(profile.name.as_str())
                        .bind(profile.description.as_deref())
                        .bind(profile.is_default)
                        .bind(sqlx::types::Json(&profile.profile_data))
                        .bind(profile.provision_device_key.as_deref())
                        .bind(profile.firmware_id.map(|p| p.0))
                        .bind(profile.software_id.map(|p| p.0))
                        .execute(self.writer())
                        .await
                        .map_err(|e| conflict(e, profile_conflict))?;
                    Ok(())
                }

                async fn update_profile(&self, profile: &DeviceProfile) -> Result<()> {
                    let updated = sqlx::query(UPDATE_PROFILE)
                        .bind(profile.tenant_id.0)
                        .bind(profile.id.0)
                        .bind(profile.name.as_str())
                        .bind(profile.description.as_deref())
                        .bind(sqlx::types::Json(&profile.profile_data))
                        .bind(profile.provision_device_key.as_deref())
                        .bind(profile.firmware_id.map(|p| p.0))
                        .bind(profile.software_id.map(|p| p.0))
                        .execute(self.writer())
                        .await
                        .map_err(|e| conflict(e, profile_conflict))?;
                    if updated.rows_affected() == 0 {
                        return Err(StorageError::NotFound);
                    }
                    Ok(())
                }

                async fn delete_profile(
                    &self,
                    tenant: TenantId,
                    id: DeviceProfileId,
                ) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let used: i64 = sqlx::query_scalar(PROFILE_USED)
                        .bind(id.0)
                        .bind(tenant.0)
                        .fetch_one(&mut *tx)
                        .await?;
                    if used > 0 {
                        return Err(StorageError::Conflict(PROFILE_IN_USE.to_owned()));
                    }
                    let deleted =
                        sqlx::query("DELETE FROM device_profiles WHERE tenant_id = $1 AND id = $2")
                            .bind(tenant.0)
                            .bind(id.0)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| match &e {
                                // A device created meanwhile on another connection.
                                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                                    StorageError::Conflict(PROFILE_IN_USE.to_owned())
                                }
                                _ => StorageError::from(e),
                            })?
                            .rows_affected();
                    tx.commit().await?;
                    Ok(deleted > 0)
                }

                async fn set_default_profile(
                    &self,
                    tenant: TenantId,
                    id: DeviceProfileId,
                ) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    sqlx::query(CLEAR_DEFAULT)
                        .bind(tenant.0)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await?;
                    let set = sqlx::query(SET_DEFAULT)
                        .bind(tenant.0)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if set == 0 {
                        return Ok(false);
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn get_profile(
                    &self,
                    tenant: TenantId,
                    id: DeviceProfileId,
                ) -> Result<Option<DeviceProfile>> {
                    let arg = ProfileArg::Id(id);
                    self.profile_where("p.id = $2", tenant, Some(arg)).await
                }

                async fn default_profile(&self, tenant: TenantId) -> Result<Option<DeviceProfile>> {
                    self.profile_where("p.is_default = TRUE", tenant, None)
                        .await
                }

                async fn find_profile_by_name(
                    &self,
                    tenant: TenantId,
                    name: &str,
                ) -> Result<Option<DeviceProfile>> {
                    let arg = ProfileArg::Name(name);
                    self.profile_where("p.name = $2", tenant, Some(arg)).await
                }

                async fn profile_owner(&self, id: DeviceProfileId) -> Result<Option<TenantId>> {
                    let owner: Option<uuid::Uuid> =
                        sqlx::query_scalar("SELECT tenant_id FROM device_profiles WHERE id = $1")
                            .bind(id.0)
                            .fetch_optional(self.reader())
                            .await?;
                    Ok(owner.map(TenantId))
                }

                async fn find_profile_by_provision_key(
                    &self,
                    key: &str,
                ) -> Result<Option<DeviceProfile>> {
                    let sql = format!("{PROFILE_SELECT} WHERE p.provision_device_key = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(key)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(profile_of).transpose()
                }

                async fn page_profiles(
                    &self,
                    tenant: TenantId,
                    query: &PageQuery,
                ) -> Result<Page<DeviceProfile>> {
                    let search = query.text_search.as_deref().filter(|s| !s.is_empty());
                    let filter = profile_filter(Self::SQL.find);
                    let order = profile_order(query.sort_property.as_deref(), query.sort_order);
                    self.page(
                        format!("SELECT count(*) FROM device_profiles p{filter}"),
                        format!("{PROFILE_SELECT}{filter}{order} LIMIT $3 OFFSET $4"),
                        query,
                        |q| q.bind(tenant.0).bind(search),
                        profile_of,
                    )
                    .await
                }
            }
        }
    };
}
pub(crate) use profile_store;
