//! Persistent server-side RPCs, once for both backends (JSON columns are read as text).

pub(crate) const RPC_SELECT: &str = "SELECT r.id, r.tenant_id, r.device_id, r.created_time, r.expiration_time, \
     CAST(r.request AS TEXT) AS request, CAST(r.response AS TEXT) AS response, r.status, r.retries, \
     CAST(r.additional_info AS TEXT) AS additional_info FROM rpc r";
/// RPCs of a tenant (`$1`) and device (`$2`), optionally of one status (`$3`).
pub(crate) const RPC_FILTER: &str =
    " WHERE r.tenant_id = $1 AND r.device_id = $2 AND ($3 IS NULL OR r.status = $3)";
pub(crate) const INSERT_RPC: &str = "INSERT INTO rpc (id, tenant_id, device_id, created_time, \
     expiration_time, request, response, status, retries, additional_info) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const PENDING_RPCS: &str = "WHERE r.device_id = $1 \
     AND r.status IN ('QUEUED', 'SENT', 'TIMEOUT') ORDER BY r.created_time, r.id";

/// The conditional update of `transition_rpc`; `$2` is the `from` list as `,QUEUED,SENT,`.
pub(crate) fn transition_sql(find: &str) -> String {
    format!(
        "UPDATE rpc SET status = $3, response = coalesce($4, response), retries = coalesce($5, retries) \
         WHERE id = $1 AND {find}($2, ',' || status || ',') > 0"
    )
}

/// Implements `RpcStore` for `$store` (see `stores!`).
macro_rules! rpc_store {
    ($store:ident) => {
        mod rpc {
            use async_trait::async_trait;
            use sqlx::types::Json;
            use uuid::Uuid;

            use super::rows::*;
            use crate::domain::{DeviceId, Page, PageQuery, Rpc, RpcStatus, TenantId};
            use crate::storage::common::rpc_order;
            use crate::storage::sql::rpc::*;
            use crate::storage::{Result, RpcStore, RpcTransition};

            #[async_trait]
            impl RpcStore for super::$store {
                async fn create_rpc(&self, rpc: &Rpc) -> Result<()> {
                    sqlx::query(INSERT_RPC)
                        .bind(rpc.id)
                        .bind(rpc.tenant_id.0)
                        .bind(rpc.device_id.0)
                        .bind(rpc.created_time)
                        .bind(rpc.expiration_time)
                        .bind(Json(&rpc.request))
                        .bind(rpc.response.as_ref().map(Json))
                        .bind(rpc.status.as_str())
                        .bind(rpc.retries)
                        .bind(rpc.additional_info.as_ref().map(Json))
                        .execute(self.writer())
                        .await
                        .map_err(|e| {
                            crate::storage::common::conflict(e, |_| {
                                "RPC with such requestUUID already exists!".to_owned()
                            })
                        })?;
                    Ok(())
                }

                async fn get_rpc(&self, tenant: Option<TenantId>, id: Uuid) -> Result<Option<Rpc>> {
                    let sql = format!(
                        "{} WHERE r.id = $1 AND ($2 IS NULL OR r.tenant_id = $2)",
                        RPC_SELECT
                    );
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .bind(tenant.map(|t| t.0))
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(rpc_of).transpose()
                }

                async fn transition_rpc(
                    &self,
                    id: Uuid,
                    change: &RpcTransition<'_>,
                ) -> Result<bool> {
                    let sql = transition_sql(Self::SQL.find);
                    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .bind(change.from_list())
                        .bind(change.to.as_str())
                        .bind(change.response.map(sqlx::types::Json))
                        .bind(change.retries)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(done > 0)
                }

                async fn delete_rpc(&self, tenant: TenantId, id: Uuid) -> Result<bool> {
                    let done = sqlx::query("DELETE FROM rpc WHERE id = $1 AND tenant_id = $2")
                        .bind(id)
                        .bind(tenant.0)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(done > 0)
                }

                async fn page_rpcs(
                    &self,
                    tenant: TenantId,
                    device: DeviceId,
                    status: Option<RpcStatus>,
                    query: &PageQuery,
                ) -> Result<Page<Rpc>> {
                    let status = status.map(RpcStatus::as_str);
                    let order = rpc_order(query.sort_property.as_deref(), query.sort_order);
                    self.page(
                        format!("SELECT count(*) FROM rpc r{RPC_FILTER}"),
                        format!("{RPC_SELECT}{RPC_FILTER}{order} LIMIT $4 OFFSET $5"),
                        query,
                        |q| q.bind(tenant.0).bind(device.0).bind(status),
                        rpc_of,
                    )
                    .await
                }

                async fn pending_rpcs(&self, device: DeviceId) -> Result<Vec<Rpc>> {
                    let sql = format!("{RPC_SELECT} {PENDING_RPCS}");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(device.0)
                        .fetch_all(self.reader())
                        .await?;
                    rows.iter().map(rpc_of).collect()
                }

                async fn expire_rpcs(&self, now: i64) -> Result<u64> {
                    let done = sqlx::query(Self::SQL.expire_rpcs)
                        .bind(now)
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}
pub(crate) use rpc_store;
