//! SQLite: persistent server-side RPCs.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::SqliteStore;
use super::rows::rpc_of;
use crate::domain::{DeviceId, TenantId};
use crate::storage::common::{limit_offset, rpc_order};
use crate::storage::{Page, PageQuery, Result, Rpc, RpcStatus, RpcStore, RpcTransition};

const RPC_SELECT: &str = "SELECT r.id, r.tenant_id, r.device_id, r.created_time, r.expiration_time, \
     r.request, r.response, r.status, r.retries, r.additional_info FROM rpc r";
/// RPCs of a tenant (?1) and device (?2), optionally of one status (?3).
const RPC_FILTER: &str =
    " WHERE r.tenant_id = ?1 AND r.device_id = ?2 AND (?3 IS NULL OR r.status = ?3)";

#[async_trait]
impl RpcStore for SqliteStore {
    async fn create_rpc(&self, rpc: &Rpc) -> Result<()> {
        sqlx::query(
            "INSERT INTO rpc (id, tenant_id, device_id, created_time, expiration_time, request, \
             response, status, retries, additional_info) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(rpc.id)
        .bind(rpc.tenant_id.0)
        .bind(rpc.device_id.0)
        .bind(rpc.created_time)
        .bind(rpc.expiration_time)
        .bind(rpc.request.to_string())
        .bind(rpc.response.as_ref().map(ToString::to_string))
        .bind(rpc.status.as_str())
        .bind(rpc.retries)
        .bind(rpc.additional_info.as_ref().map(ToString::to_string))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_rpc(&self, tenant: Option<TenantId>, id: Uuid) -> Result<Option<Rpc>> {
        let sql = format!("{RPC_SELECT} WHERE r.id = ?1 AND (?2 IS NULL OR r.tenant_id = ?2)");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(tenant.map(|t| t.0))
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(rpc_of).transpose()
    }

    async fn transition_rpc(&self, id: Uuid, change: &RpcTransition<'_>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE rpc SET status = ?3, response = coalesce(?4, response), \
             retries = coalesce(?5, retries) \
             WHERE id = ?1 AND instr(?2, ',' || status || ',') > 0",
        )
        .bind(id)
        .bind(change.from_list())
        .bind(change.to.as_str())
        .bind(change.response.map(ToString::to_string))
        .bind(change.retries)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    async fn delete_rpc(&self, tenant: TenantId, id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM rpc WHERE id = ?1 AND tenant_id = ?2")
            .bind(id)
            .bind(tenant.0)
            .execute(&self.writer)
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
        let count_sql = format!("SELECT count(*) FROM rpc r{RPC_FILTER}");
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(count_sql))
            .bind(tenant.0)
            .bind(device.0)
            .bind(status)
            .fetch_one(&self.reader)
            .await?;
        let (limit, offset) = limit_offset(query.page_size, query.page);
        let order = rpc_order(query.sort_property.as_deref(), query.sort_order);
        let sql = format!("{RPC_SELECT}{RPC_FILTER}{order} LIMIT ?4 OFFSET ?5");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(device.0)
            .bind(status)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.reader)
            .await?;
        let data = rows.iter().map(rpc_of).collect::<Result<_>>()?;
        Ok(Page {
            data,
            total_elements: total,
        })
    }

    async fn pending_rpcs(&self, device: DeviceId) -> Result<Vec<Rpc>> {
        let sql = format!(
            "{RPC_SELECT} WHERE r.device_id = ?1 AND r.status IN ('QUEUED', 'SENT', 'TIMEOUT') \
             ORDER BY r.created_time, r.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(device.0)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rpc_of).collect()
    }

    async fn expire_rpcs(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE rpc SET status = 'EXPIRED' WHERE expiration_time <= ?1 \
             AND status IN ('QUEUED', 'SENT', 'TIMEOUT', 'DELIVERED') \
             AND (status <> 'DELIVERED' OR coalesce(json_extract(request, '$.oneway'), 0) = 0)",
        )
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}
