//! Tenants, users and settings, once for both backends.

/// ThingsBoard's text for a taken email.
pub(crate) fn email_taken(email: &str) -> String {
    format!("User with email '{email}'  already present in database!")
}

pub(crate) const USER_SELECT: &str = "SELECT id, created_time, tenant_id, customer_id, email, authority, \
     first_name, last_name, password_hash, enabled, failed_logins, locked_until FROM users";

/// Implements `TenantStore`, `UserStore` and `SettingsStore` for `$store` (see `stores!`).
macro_rules! account_stores {
    ($store:ident) => {
        mod accounts {
            use async_trait::async_trait;

            use super::rows::*;
            use crate::domain::{Tenant, TenantId, User, UserId};
            use crate::storage::common::conflict;
            use crate::storage::sql::accounts::{USER_SELECT, email_taken};
            use crate::storage::{Result, SettingsStore, StorageError, TenantStore, UserStore};

            #[async_trait]
            impl TenantStore for super::$store {
                async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO tenants (id, title, created_time) VALUES ($1, $2, $3)",
                    )
                    .bind(tenant.id.0)
                    .bind(tenant.title.as_str())
                    .bind(tenant.created_time)
                    .execute(self.writer())
                    .await
                    .map_err(|e| conflict(e, |_| "Tenant already exists!".to_owned()))?;
                    Ok(())
                }

                async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>> {
                    let row =
                        sqlx::query("SELECT id, title, created_time FROM tenants WHERE id = $1")
                            .bind(id.0)
                            .fetch_optional(self.reader())
                            .await?;
                    row.as_ref().map(tenant_of).transpose()
                }
            }

            #[async_trait]
            impl UserStore for super::$store {
                async fn count_users(&self) -> Result<i64> {
                    Ok(sqlx::query_scalar("SELECT count(*) FROM users")
                        .fetch_one(self.reader())
                        .await?)
                }

                async fn create_user(&self, user: &User) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO users (id, created_time, tenant_id, customer_id, email, authority, \
                         first_name, last_name, password_hash, enabled, failed_logins, locked_until) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(user.id.0)
                    .bind(user.created_time)
                    .bind(user.tenant_id.map(|t| t.0))
                    .bind(user.customer_id.map(|c| c.0))
                    .bind(user.email.as_str())
                    .bind(user.authority.as_str())
                    .bind(user.first_name.as_deref())
                    .bind(user.last_name.as_deref())
                    .bind(user.password_hash.as_str())
                    .bind(user.enabled)
                    .bind(user.failed_logins)
                    .bind(user.locked_until)
                    .execute(self.writer())
                    .await
                    .map_err(|e| {
                        conflict(e, |_| {
                            email_taken(&user.email)
                        })
                    })?;
                    Ok(())
                }

                async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
                    let sql = format!("{USER_SELECT} WHERE lower(email) = lower($1)");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(email)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(user_of).transpose()
                }

                async fn get_user(&self, id: UserId) -> Result<Option<User>> {
                    let sql = format!("{USER_SELECT} WHERE id = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(user_of).transpose()
                }

                async fn set_user_enabled(&self, id: UserId, enabled: bool) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let changed = sqlx::query(
                        "UPDATE users SET enabled = $2, \
                         failed_logins = CASE WHEN $2 THEN 0 ELSE failed_logins END, \
                         locked_until = CASE WHEN $2 THEN 0 ELSE locked_until END WHERE id = $1",
                    )
                    .bind(id.0)
                    .bind(enabled)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if !enabled {
                        sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1")
                            .bind(id.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(changed > 0)
                }

                async fn count_tenant_admins(&self, tenant: TenantId) -> Result<i64> {
                    Ok(sqlx::query_scalar(
                        "SELECT count(*) FROM users WHERE tenant_id = $1 AND authority = 'TENANT_ADMIN'",
                    )
                    .bind(tenant.0)
                    .fetch_one(self.reader())
                    .await?)
                }

                async fn delete_user(&self, id: UserId) -> Result<bool> {
                    // The sessions go with the user (ON DELETE CASCADE).
                    let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                        .bind(id.0)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(deleted > 0)
                }

                async fn record_login_failure(
                    &self,
                    id: UserId,
                    max: i32,
                    lock_until: i64,
                ) -> Result<Option<i64>> {
                    // Every expression reads the row as it was, so one statement decides
                    // atomically, also against other nodes.
                    Ok(sqlx::query_scalar(
                        "UPDATE users SET \
                         failed_logins = CASE WHEN failed_logins + 1 > $2 THEN 0 ELSE failed_logins + 1 END, \
                         locked_until = CASE WHEN failed_logins + 1 > $2 THEN $3 ELSE locked_until END \
                         WHERE id = $1 RETURNING locked_until",
                    )
                    .bind(id.0)
                    .bind(max)
                    .bind(lock_until)
                    .fetch_optional(self.writer())
                    .await?)
                }

                async fn clear_login_failures(&self, id: UserId) -> Result<()> {
                    sqlx::query("UPDATE users SET failed_logins = 0 WHERE id = $1 AND failed_logins <> 0")
                        .bind(id.0)
                        .execute(self.writer())
                        .await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl SettingsStore for super::$store {
                async fn get_setting(&self, key: &str) -> Result<Option<String>> {
                    Ok(
                        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                            .bind(key)
                            .fetch_optional(self.reader())
                            .await?,
                    )
                }

                async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
                    sqlx::query(
                        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(value)
                    .execute(self.writer())
                    .await?;
                    // A new statement on the writer: it sees its own insert, or the row that blocked it
                    // (committed by another node).
                    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                        .bind(key)
                        .fetch_optional(self.writer())
                        .await?
                        .ok_or_else(|| {
                            StorageError::Database(format!("setting '{key}' vanished after insert"))
                        })
                }
            }
        }
    };
}
pub(crate) use account_stores;
