//! Devices and their credentials, once for both backends.

macro_rules! device_columns {
    () => {
        "d.id, d.tenant_id, d.customer_id, d.created_time, d.name, d.label, d.profile_id, \
         p.name AS profile_name, CAST(d.additional_info AS TEXT) AS additional_info, d.firmware_id, \
         d.software_id, d.version"
    };
}
/// The credentials columns, aliased apart from the device's.
macro_rules! credentials_columns {
    () => {
        "c.id AS cred_id, c.device_id AS cred_device_id, c.created_time AS cred_created_time, \
         c.credentials_type, c.credentials_id, c.credentials_value, c.version AS cred_version"
    };
}
pub(crate) const DEVICE_SELECT: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices d JOIN device_profiles p ON p.id = d.profile_id"
);
pub(crate) const BY_CREDENTIALS_ID: &str = concat!(
    "SELECT ",
    device_columns!(),
    ", ",
    credentials_columns!(),
    " FROM device_credentials c JOIN devices d ON d.id = c.device_id \
     JOIN device_profiles p ON p.id = d.profile_id WHERE c.credentials_id = $1"
);
pub(crate) const CREDENTIALS_BY_DEVICE: &str = concat!(
    "SELECT ",
    credentials_columns!(),
    " FROM device_credentials c WHERE c.device_id = $1"
);
pub(crate) const UPDATE_CREDENTIALS: &str = "UPDATE device_credentials SET credentials_type = $2, \
     credentials_id = $3, credentials_value = $4, version = version + 1 WHERE device_id = $1 \
     RETURNING id AS cred_id, device_id AS cred_device_id, created_time AS cred_created_time, \
     credentials_type, credentials_id, credentials_value, version AS cred_version";
pub(crate) const INSERT_CREDENTIALS: &str = "INSERT INTO device_credentials (id, device_id, created_time, \
     credentials_type, credentials_id, credentials_value, version) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const INSERT_DEVICE: &str = "INSERT INTO devices (id, tenant_id, customer_id, created_time, name, \
     label, profile_id, additional_info, version, firmware_id, software_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(crate) const UPDATE_DEVICE: &str = "UPDATE devices SET name = $3, label = $4, profile_id = $5, \
     customer_id = $6, additional_info = $7, firmware_id = $8, software_id = $9, version = version + 1 \
     WHERE tenant_id = $1 AND id = $2";
/// What goes with a device, deleted in this order after it (`$1` the device id).
pub(crate) const DELETE_DEVICE_DATA: [&str; 4] = [
    "DELETE FROM device_credentials WHERE device_id = $1",
    "DELETE FROM attributes WHERE entity_id = $1",
    "DELETE FROM ts_kv WHERE entity_id = $1",
    "DELETE FROM ts_kv_latest WHERE entity_id = $1",
];

/// Devices of a tenant (`$1`), optionally of one profile name (`$2`), optionally matching a text
/// (`$3`), optionally of one customer (`$4`).
pub(crate) fn device_filter(find: &str) -> String {
    format!(
        " WHERE d.tenant_id = $1 AND ($2 IS NULL OR p.name = $2) AND ($3 IS NULL \
         OR {find}(lower(d.name), lower($3)) > 0 OR {find}(lower(coalesce(d.label, '')), lower($3)) > 0) \
         AND ($4 IS NULL OR d.customer_id = $4)"
    )
}

/// Implements `DeviceStore` and `CredentialsStore` for `$store` on `$db`.
macro_rules! device_stores {
    ($store:ident, $db:ty) => {
        mod devices {
            use async_trait::async_trait;

            use super::rows::*;
            use crate::domain::{
                CustomerId, Device, DeviceCredentials, DeviceId, Page, PageQuery, TenantId,
            };
            use crate::storage::common::{
                CREDENTIALS_TAKEN, DEVICE_NAME_TAKEN, conflict, device_order,
            };
            use crate::storage::sql::devices::*;
            use crate::storage::{
                CredentialsStore, DeviceStore, Result, StorageError,
            };

            impl super::$store {
                async fn device_by_id(
                    conn: &mut <$db as sqlx::Database>::Connection,
                    tenant: TenantId,
                    id: DeviceId,
                ) -> Result<Option<Device>> {
                    let sql = format!("{DEVICE_SELECT} WHERE d.tenant_id = $1 AND d.id = $2");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(tenant.0)
                        .bind(id.0)
                        .fetch_optional(&mut *conn)
                        .await?;
                    row.as_ref().map(device_of).transpose()
                }
                async fn device_page(
                    &self,
                    tenant: TenantId,
                    customer: Option<CustomerId>,
                    profile_name: Option<&str>,
                    query: &PageQuery,
                ) -> Result<Page<Device>> {
                    let search = query.text_search.as_deref().filter(|s| !s.is_empty());
                    let filter = device_filter(Self::SQL.find);
                    let order = device_order(query.sort_property.as_deref(), query.sort_order);
                    let customer = customer.map(|c| c.0);
                    self.page(
                        format!("SELECT count(*) FROM devices d JOIN device_profiles p ON p.id = d.profile_id{filter}"),
                        format!("{DEVICE_SELECT}{filter}{order} LIMIT $5 OFFSET $6"),
                        query,
                        |q| q.bind(tenant.0).bind(profile_name).bind(search).bind(customer),
                        device_of,
                    )
                    .await
                }

            }

            #[async_trait]
            impl DeviceStore for super::$store {
                async fn create_device(
                    &self,
                    device: &Device,
                    credentials: &DeviceCredentials,
                ) -> Result<()> {
                    let mut tx = self.writer().begin().await?;
                    sqlx::query(INSERT_DEVICE)
                        .bind(device.id.0)
                        .bind(device.tenant_id.0)
                        .bind(device.customer_id.map(|c| c.0))
                        .bind(device.created_time)
                        .bind(device.name.as_str())
                        .bind(device.label.as_deref())
                        .bind(device.profile_id.0)
                        .bind(sqlx::types::Json(&device.additional_info))
                        .bind(device.version)
                        .bind(device.firmware_id.map(|p| p.0))
                        .bind(device.software_id.map(|p| p.0))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict(e, |_| DEVICE_NAME_TAKEN.to_owned()))?;
                    let c = credentials;
                    sqlx::query(INSERT_CREDENTIALS)
                        .bind(c.id)
                        .bind(c.device_id.0)
                        .bind(c.created_time)
                        .bind(c.credentials_type.as_str())
                        .bind(c.credentials_id.as_str())
                        .bind(c.credentials_value.as_deref())
                        .bind(c.version)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict(e, |_| CREDENTIALS_TAKEN.to_owned()))?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn update_device(&self, device: &Device) -> Result<Device> {
                    let mut tx = self.writer().begin().await?;
                    let updated = sqlx::query(UPDATE_DEVICE)
                        .bind(device.tenant_id.0)
                        .bind(device.id.0)
                        .bind(device.name.as_str())
                        .bind(device.label.as_deref())
                        .bind(device.profile_id.0)
                        .bind(device.customer_id.map(|c| c.0))
                        .bind(sqlx::types::Json(&device.additional_info))
                        .bind(device.firmware_id.map(|p| p.0))
                        .bind(device.software_id.map(|p| p.0))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict(e, |_| DEVICE_NAME_TAKEN.to_owned()))?;
                    if updated.rows_affected() == 0 {
                        return Err(StorageError::NotFound);
                    }
                    let stored = Self::device_by_id(&mut tx, device.tenant_id, device.id)
                        .await?
                        .ok_or(StorageError::NotFound)?;
                    tx.commit().await?;
                    Ok(stored)
                }

                async fn get_device(
                    &self,
                    tenant: TenantId,
                    id: DeviceId,
                ) -> Result<Option<Device>> {
                    let mut conn = self.reader().acquire().await?;
                    Self::device_by_id(&mut conn, tenant, id).await
                }

                async fn find_device_by_name(
                    &self,
                    tenant: TenantId,
                    name: &str,
                ) -> Result<Option<Device>> {
                    let sql = format!("{DEVICE_SELECT} WHERE d.tenant_id = $1 AND d.name = $2");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(tenant.0)
                        .bind(name)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(device_of).transpose()
                }

                async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let deleted =
                        sqlx::query("DELETE FROM devices WHERE tenant_id = $1 AND id = $2")
                            .bind(tenant.0)
                            .bind(id.0)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    if deleted == 0 {
                        return Ok(false);
                    }
                    for sql in DELETE_DEVICE_DATA {
                        sqlx::query(sql).bind(id.0).execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn page_devices(
                    &self,
                    tenant: TenantId,
                    profile_name: Option<&str>,
                    query: &PageQuery,
                ) -> Result<Page<Device>> {
                    self.device_page(tenant, None, profile_name, query).await
                }

                async fn page_customer_devices(
                    &self,
                    tenant: TenantId,
                    customer: CustomerId,
                    profile_name: Option<&str>,
                    query: &PageQuery,
                ) -> Result<Page<Device>> {
                    self.device_page(tenant, Some(customer), profile_name, query).await
                }

                async fn find_device(&self, id: DeviceId) -> Result<Option<Device>> {
                    let sql = format!("{DEVICE_SELECT} WHERE d.id = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(device_of).transpose()
                }
            }

            #[async_trait]
            impl CredentialsStore for super::$store {
                async fn get_credentials(
                    &self,
                    device: DeviceId,
                ) -> Result<Option<DeviceCredentials>> {
                    let row = sqlx::query(CREDENTIALS_BY_DEVICE)
                        .bind(device.0)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(credentials_of).transpose()
                }

                async fn find_by_credentials_id(
                    &self,
                    credentials_id: &str,
                ) -> Result<Option<(Device, DeviceCredentials)>> {
                    let row = sqlx::query(BY_CREDENTIALS_ID)
                        .bind(credentials_id)
                        .fetch_optional(self.reader())
                        .await?;
                    match row {
                        Some(row) => {
                            Ok(Some((device_of(&row)?, credentials_of(&row)?)))
                        }
                        None => Ok(None),
                    }
                }

                async fn update_credentials(
                    &self,
                    credentials: &DeviceCredentials,
                ) -> Result<DeviceCredentials> {
                    let row = sqlx::query(UPDATE_CREDENTIALS)
                        .bind(credentials.device_id.0)
                        .bind(credentials.credentials_type.as_str())
                        .bind(credentials.credentials_id.as_str())
                        .bind(credentials.credentials_value.as_deref())
                        .fetch_optional(self.writer())
                        .await
                        .map_err(|e| conflict(e, |_| CREDENTIALS_TAKEN.to_owned()))?;
                    row.as_ref()
                        .map(credentials_of)
                        .transpose()?
                        .ok_or(StorageError::NotFound)
                }
            }
        }
    };
}
pub(crate) use device_stores;
