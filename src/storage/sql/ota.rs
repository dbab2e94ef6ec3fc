//! Firmware and software packages and their files (stored as chunks), once for both backends.

pub(crate) const OTA_SELECT: &str = "SELECT o.id, o.tenant_id, o.device_profile_id, o.created_time, \
     o.type, o.title, o.version, o.tag, o.url, o.file_name, o.content_type, o.checksum_algorithm, \
     o.checksum, o.data_size, o.blob_id, CAST(o.additional_info AS TEXT) AS additional_info \
     FROM ota_packages o";
pub(crate) const INSERT_OTA: &str = "INSERT INTO ota_packages (id, tenant_id, device_profile_id, \
     created_time, type, title, version, tag, url, additional_info) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
/// Sets the file of a package that has none and is no URL package.
pub(crate) const ATTACH_DATA: &str = "UPDATE ota_packages SET blob_id = $3, file_name = $4, \
     content_type = $5, checksum_algorithm = $6, checksum = $7, data_size = $8 \
     WHERE tenant_id = $1 AND id = $2 AND blob_id IS NULL AND url IS NULL";

/// Devices of a tenant (`$1`) and profile (`$2`) after an id (`$3`), with no package in `column`.
pub(crate) fn following_profile(column: &str) -> String {
    format!(
        "{} WHERE d.tenant_id = $1 AND d.profile_id = $2 AND d.{column} IS NULL \
         AND ($3 IS NULL OR d.id > $3) ORDER BY d.id LIMIT $4",
        crate::storage::sql::devices::DEVICE_SELECT
    )
}

/// Packages of a tenant (`$1`); with a profile (`$2`) only that profile's packages of type `$3`
/// that can be downloaded; optionally matching a text (`$4`) in the title.
pub(crate) fn ota_filter(find: &str) -> String {
    format!(
        " WHERE o.tenant_id = $1 AND ($2 IS NULL OR (o.device_profile_id = $2 AND o.type = $3 \
         AND (o.blob_id IS NOT NULL OR o.url IS NOT NULL))) \
         AND ($4 IS NULL OR {find}(lower(o.title), lower($4)) > 0)"
    )
}

/// Implements `OtaStore` for `$store` (see `stores!`).
macro_rules! ota_store {
    ($store:ident) => {
        mod ota {
            use async_trait::async_trait;
            use sqlx::types::Json;
            use uuid::Uuid;

            use super::rows::*;
            use crate::domain::ota::{OtaPackageData, OtaPackageType};
            use crate::domain::{
                Device, DeviceId, DeviceProfileId, OtaPackage, OtaPackageId, Page, PageQuery,
                TenantId,
            };
            use crate::storage::common::{
                OTA_FIRMWARE_OF_PROFILE, OTA_PACKAGE_IN_USE, OTA_PACKAGE_TAKEN,
                OTA_SOFTWARE_OF_PROFILE, conflict, ota_order,
            };
            use crate::storage::sql::ota::*;
            use crate::storage::{OtaStore, Result};

            #[async_trait]
            impl OtaStore for super::$store {
                async fn create_package(&self, p: &OtaPackage) -> Result<()> {
                    sqlx::query(INSERT_OTA)
                        .bind(p.id.0)
                        .bind(p.tenant_id.0)
                        .bind(p.profile_id.0)
                        .bind(p.created_time)
                        .bind(p.package_type.as_str())
                        .bind(&p.title)
                        .bind(&p.version)
                        .bind(p.tag.as_deref())
                        .bind(p.url.as_deref())
                        .bind(Json(&p.additional_info))
                        .execute(self.writer())
                        .await
                        .map_err(|e| conflict(e, |_| OTA_PACKAGE_TAKEN.to_owned()))?;
                    Ok(())
                }

                async fn get_package(
                    &self,
                    tenant: TenantId,
                    id: OtaPackageId,
                ) -> Result<Option<OtaPackage>> {
                    let sql = format!("{OTA_SELECT} WHERE o.tenant_id = $1 AND o.id = $2");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(tenant.0)
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(ota_package_of).transpose()
                }

                async fn package_owner(&self, id: OtaPackageId) -> Result<Option<TenantId>> {
                    let owner: Option<Uuid> =
                        sqlx::query_scalar("SELECT tenant_id FROM ota_packages WHERE id = $1")
                            .bind(id.0)
                            .fetch_optional(self.reader())
                            .await?;
                    Ok(owner.map(TenantId))
                }

                async fn page_packages(
                    &self,
                    tenant: TenantId,
                    filter: Option<(DeviceProfileId, OtaPackageType)>,
                    query: &PageQuery,
                ) -> Result<Page<OtaPackage>> {
                    let search = query.text_search.as_deref().filter(|s| !s.is_empty());
                    let profile = filter.map(|(p, _)| p.0);
                    let kind = filter.map(|(_, t)| t.as_str());
                    let cond = ota_filter(Self::SQL.find);
                    let order = ota_order(query.sort_property.as_deref(), query.sort_order);
                    self.page(
                        format!("SELECT count(*) FROM ota_packages o{cond}"),
                        format!("{OTA_SELECT}{cond}{order} LIMIT $5 OFFSET $6"),
                        query,
                        |q| {
                            q.bind(tenant.0)
                                .bind(profile)
                                .bind(kind)
                                .bind(search.map(str::to_owned))
                        },
                        ota_package_of,
                    )
                    .await
                }

                async fn delete_package(&self, tenant: TenantId, id: OtaPackageId) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let users: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM devices WHERE firmware_id = $1 OR software_id = $1",
                    )
                    .bind(id.0)
                    .fetch_one(&mut *tx)
                    .await?;
                    if users > 0 {
                        return Err(crate::storage::StorageError::Conflict(
                            OTA_PACKAGE_IN_USE.to_owned(),
                        ));
                    }
                    let (firmware, software): (i64, i64) = sqlx::query_as(
                        "SELECT count(CASE WHEN firmware_id = $1 THEN 1 END), \
                         count(CASE WHEN software_id = $1 THEN 1 END) FROM device_profiles \
                         WHERE firmware_id = $1 OR software_id = $1",
                    )
                    .bind(id.0)
                    .fetch_one(&mut *tx)
                    .await?;
                    if firmware > 0 || software > 0 {
                        let text = if firmware > 0 {
                            OTA_FIRMWARE_OF_PROFILE
                        } else {
                            OTA_SOFTWARE_OF_PROFILE
                        };
                        return Err(crate::storage::StorageError::Conflict(text.to_owned()));
                    }
                    let deleted: Option<Option<Uuid>> = sqlx::query_scalar(
                        "DELETE FROM ota_packages WHERE tenant_id = $1 AND id = $2 RETURNING blob_id",
                    )
                    .bind(tenant.0)
                    .bind(id.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(Some(blob)) = deleted {
                        sqlx::query("DELETE FROM ota_chunks WHERE blob_id = $1")
                            .bind(blob)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(deleted.is_some())
                }

                async fn put_chunk(&self, blob: Uuid, idx: i32, data: &[u8]) -> Result<()> {
                    sqlx::query("INSERT INTO ota_chunks (blob_id, idx, data) VALUES ($1, $2, $3)")
                        .bind(blob)
                        .bind(idx)
                        .bind(data)
                        .execute(self.writer())
                        .await?;
                    Ok(())
                }

                async fn attach_data(
                    &self,
                    tenant: TenantId,
                    id: OtaPackageId,
                    data: &OtaPackageData,
                ) -> Result<bool> {
                    let done = sqlx::query(ATTACH_DATA)
                        .bind(tenant.0)
                        .bind(id.0)
                        .bind(data.blob_id)
                        .bind(&data.file_name)
                        .bind(&data.content_type)
                        .bind(data.checksum_algorithm.as_str())
                        .bind(&data.checksum)
                        .bind(data.size)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(done > 0)
                }

                async fn discard_blob(&self, blob: Uuid) -> Result<()> {
                    sqlx::query("DELETE FROM ota_chunks WHERE blob_id = $1")
                        .bind(blob)
                        .execute(self.writer())
                        .await?;
                    Ok(())
                }

                async fn read_chunks(
                    &self,
                    blob: Uuid,
                    first: i32,
                    last: i32,
                ) -> Result<Vec<Vec<u8>>> {
                    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
                        "SELECT data FROM ota_chunks WHERE blob_id = $1 AND idx >= $2 AND idx <= $3 \
                         ORDER BY idx",
                    )
                    .bind(blob)
                    .bind(first)
                    .bind(last)
                    .fetch_all(self.reader())
                    .await?;
                    Ok(rows)
                }

                async fn devices_following_profile(
                    &self,
                    tenant: TenantId,
                    profile: DeviceProfileId,
                    kind: OtaPackageType,
                    after: Option<DeviceId>,
                    limit: u32,
                ) -> Result<Vec<Device>> {
                    let column = match kind {
                        OtaPackageType::Firmware => "firmware_id",
                        OtaPackageType::Software => "software_id",
                    };
                    let rows = sqlx::query(sqlx::AssertSqlSafe(following_profile(column)))
                        .bind(tenant.0)
                        .bind(profile.0)
                        .bind(after.map(|d| d.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await?;
                    rows.iter().map(device_of).collect()
                }
            }
        }
    };
}
pub(crate) use ota_store;
