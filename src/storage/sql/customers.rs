//! Customers and device claims, once for both backends.

pub(crate) const CUSTOMER_SELECT: &str =
    "SELECT c.id, c.tenant_id, c.title, c.created_time FROM customers c";

/// Customers of a tenant (`$1`), optionally matching a text (`$2`) in the title.
pub(crate) fn customer_filter(find: &str) -> String {
    format!(" WHERE c.tenant_id = $1 AND ($2 IS NULL OR {find}(lower(c.title), lower($2)) > 0)")
}

/// Implements `CustomerStore` and `ClaimStore` for `$store` (see `stores!`).
macro_rules! customer_stores {
    ($store:ident) => {
        mod customers {
            use async_trait::async_trait;

            use super::rows::*;
            use crate::domain::{ClaimData, Customer, CustomerId, DeviceId, Page, PageQuery, TenantId};
            use crate::storage::common::{CUSTOMER_TITLE_TAKEN, conflict, customer_order};
            use crate::storage::sql::customers::*;
            use crate::storage::{ClaimStore, CustomerStore, Result};

            #[async_trait]
            impl CustomerStore for super::$store {
                async fn create_customer(&self, customer: &Customer) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO customers (id, tenant_id, title, created_time) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(customer.id.0)
                    .bind(customer.tenant_id.0)
                    .bind(customer.title.as_str())
                    .bind(customer.created_time)
                    .execute(self.writer())
                    .await
                    .map_err(|e| conflict(e, |_| CUSTOMER_TITLE_TAKEN.to_owned()))?;
                    Ok(())
                }

                async fn update_customer(&self, customer: &Customer) -> Result<bool> {
                    let updated =
                        sqlx::query("UPDATE customers SET title = $3 WHERE tenant_id = $1 AND id = $2")
                            .bind(customer.tenant_id.0)
                            .bind(customer.id.0)
                            .bind(customer.title.as_str())
                            .execute(self.writer())
                            .await
                            .map_err(|e| conflict(e, |_| CUSTOMER_TITLE_TAKEN.to_owned()))?
                            .rows_affected();
                    Ok(updated > 0)
                }

                async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>> {
                    let sql = format!("{CUSTOMER_SELECT} WHERE c.id = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(customer_of).transpose()
                }

                async fn find_customer_by_title(
                    &self,
                    tenant: TenantId,
                    title: &str,
                ) -> Result<Option<Customer>> {
                    let sql = format!("{CUSTOMER_SELECT} WHERE c.tenant_id = $1 AND c.title = $2");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(tenant.0)
                        .bind(title)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(customer_of).transpose()
                }

                async fn page_customers(
                    &self,
                    tenant: TenantId,
                    query: &PageQuery,
                ) -> Result<Page<Customer>> {
                    let search = query.text_search.as_deref().filter(|s| !s.is_empty());
                    let filter = customer_filter(Self::SQL.find);
                    let order = customer_order(query.sort_property.as_deref(), query.sort_order);
                    self.page(
                        format!("SELECT count(*) FROM customers c{filter}"),
                        format!("{CUSTOMER_SELECT}{filter}{order} LIMIT $3 OFFSET $4"),
                        query,
                        |q| q.bind(tenant.0).bind(search),
                        customer_of,
                    )
                    .await
                }

                async fn delete_customer(&self, tenant: TenantId, id: CustomerId) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let deleted =
                        sqlx::query("DELETE FROM customers WHERE tenant_id = $1 AND id = $2")
                            .bind(tenant.0)
                            .bind(id.0)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    if deleted == 0 {
                        return Ok(false);
                    }
                    sqlx::query(
                        "UPDATE devices SET customer_id = NULL, version = version + 1 \
                         WHERE tenant_id = $1 AND customer_id = $2",
                    )
                    .bind(tenant.0)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND customer_id = $2")
                        .bind(tenant.0)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }
            }

            #[async_trait]
            impl ClaimStore for super::$store {
                async fn put_claim(&self, device: DeviceId, claim: &ClaimData) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO device_claims (device_id, secret_key, expiration_time) \
                         VALUES ($1, $2, $3) ON CONFLICT (device_id) \
                         DO UPDATE SET secret_key = $2, expiration_time = $3",
                    )
                    .bind(device.0)
                    .bind(claim.secret_key.as_str())
                    .bind(claim.expiration_time)
                    .execute(self.writer())
                    .await?;
                    Ok(())
                }

                async fn get_claim(&self, device: DeviceId) -> Result<Option<ClaimData>> {
                    let row = sqlx::query(
                        "SELECT secret_key, expiration_time FROM device_claims WHERE device_id = $1",
                    )
                    .bind(device.0)
                    .fetch_optional(self.reader())
                    .await?;
                    row.as_ref().map(claim_of).transpose()
                }

                async fn claim_device(&self, device: DeviceId, customer: CustomerId) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let claimed = sqlx::query(
                        "UPDATE devices SET customer_id = $2, version = version + 1 \
                         WHERE id = $1 AND customer_id IS NULL",
                    )
                    .bind(device.0)
                    .bind(customer.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if claimed == 0 {
                        return Ok(false);
                    }
                    sqlx::query("DELETE FROM device_claims WHERE device_id = $1")
                        .bind(device.0)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn delete_claim(&self, device: DeviceId) -> Result<bool> {
                    let deleted = sqlx::query("DELETE FROM device_claims WHERE device_id = $1")
                        .bind(device.0)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(deleted > 0)
                }
            }
        }
    };
}
pub(crate) use customer_stores;
