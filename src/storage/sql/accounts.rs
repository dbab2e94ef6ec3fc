//! Tenants, users, activations and settings, once for both backends.

/// ThingsBoard's text for a taken email.
pub(crate) fn email_taken(email: &str) -> String {
    format!("User with email '{email}'  already present in database!")
}

pub(crate) const USER_SELECT: &str = "SELECT id, created_time, tenant_id, customer_id, email, authority, \
     first_name, last_name, password_hash, enabled, failed_logins, locked_until FROM users";

pub(crate) const INSERT_USER: &str = "INSERT INTO users (id, created_time, tenant_id, customer_id, \
     email, authority, first_name, last_name, password_hash, enabled, failed_logins, locked_until) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

pub(crate) const TENANT_SELECT: &str = "SELECT t.id, t.title, t.created_time FROM tenants t";

/// What goes with a tenant (`$1`), deleted in this order before the tenant itself: the data of its
/// devices, then the rows that refer to it.
pub(crate) const DELETE_TENANT_DATA: [&str; 12] = [
    "DELETE FROM attributes WHERE entity_id IN (SELECT id FROM devices WHERE tenant_id = $1)",
    "DELETE FROM ts_kv WHERE entity_id IN (SELECT id FROM devices WHERE tenant_id = $1)",
    "DELETE FROM ts_kv_latest WHERE entity_id IN (SELECT id FROM devices WHERE tenant_id = $1)",
    "DELETE FROM attributes WHERE entity_id = $1",
    "DELETE FROM rpc WHERE tenant_id = $1",
    "DELETE FROM devices WHERE tenant_id = $1",
    "DELETE FROM users WHERE tenant_id = $1",
    "DELETE FROM customers WHERE tenant_id = $1",
    // Profiles and packages refer to each other: the profiles' assignments go first.
    "UPDATE device_profiles SET firmware_id = NULL, software_id = NULL WHERE tenant_id = $1",
    "DELETE FROM ota_chunks WHERE blob_id IN (SELECT blob_id FROM ota_packages WHERE tenant_id = $1)",
    "DELETE FROM ota_packages WHERE tenant_id = $1",
    "DELETE FROM device_profiles WHERE tenant_id = $1",
];

/// Tenants optionally matching a text (`$1`) in the title.
pub(crate) fn tenant_filter(find: &str) -> String {
    format!(" WHERE ($1 IS NULL OR {find}(lower(t.title), lower($1)) > 0)")
}

/// Users of a tenant (`$1`), optionally of a customer (`$2`) and an authority (`$3`), optionally
/// matching a text (`$4`) in the e-mail or a name.
pub(crate) fn user_filter(find: &str) -> String {
    format!(
        " WHERE u.tenant_id = $1 AND ($2 IS NULL OR u.customer_id = $2) \
         AND ($3 IS NULL OR u.authority = $3) AND ($4 IS NULL \
         OR {find}(lower(u.email), lower($4)) > 0 \
         OR {find}(lower(coalesce(u.first_name, '')), lower($4)) > 0 \
         OR {find}(lower(coalesce(u.last_name, '')), lower($4)) > 0)"
    )
}

/// Implements `TenantStore`, `UserStore`, `ActivationStore` and `SettingsStore` for `$store` on
/// `$db` (see `stores!`).
macro_rules! account_stores {
    ($store:ident, $db:ty) => {
        mod accounts {
            use async_trait::async_trait;

            use super::rows::*;
            use crate::domain::{
                Activation, AuthSession, Page, PageQuery, Tenant, TenantId, User, UserId,
            };
            use crate::storage::common::{conflict, tenant_order, user_order};
            use crate::storage::sql::accounts::*;
            use crate::storage::sql::sessions::INSERT_SESSION;
            use crate::storage::{
                ActivationStore, Result, SettingsStore, StorageError, TenantStore, UserFilter,
                UserStore,
            };
            use crate::domain::DeviceId;

            impl super::$store {
                async fn insert_user(
                    conn: &mut <$db as sqlx::Database>::Connection,
                    user: &User,
                ) -> Result<()> {
                    sqlx::query(INSERT_USER)
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
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| conflict(e, |_| email_taken(&user.email)))?;
                    Ok(())
                }
            }

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

                async fn update_tenant(&self, tenant: &Tenant) -> Result<bool> {
                    let updated = sqlx::query("UPDATE tenants SET title = $2 WHERE id = $1")
                        .bind(tenant.id.0)
                        .bind(tenant.title.as_str())
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(updated > 0)
                }

                async fn page_tenants(&self, query: &PageQuery) -> Result<Page<Tenant>> {
                    let search = query.text_search.as_deref().filter(|s| !s.is_empty());
                    let filter = tenant_filter(Self::SQL.find);
                    let order = tenant_order(query.sort_property.as_deref(), query.sort_order);
                    self.page(
                        format!("SELECT count(*) FROM tenants t{filter}"),
                        format!("{TENANT_SELECT}{filter}{order} LIMIT $2 OFFSET $3"),
                        query,
                        |q| q.bind(search),
                        tenant_of,
                    )
                    .await
                }

                async fn delete_tenant(&self, id: TenantId) -> Result<Option<Vec<DeviceId>>> {
                    let mut tx = self.writer().begin().await?;
                    let devices: Vec<uuid::Uuid> =
                        sqlx::query_scalar("SELECT id FROM devices WHERE tenant_id = $1")
                            .bind(id.0)
                            .fetch_all(&mut *tx)
                            .await?;
                    for sql in DELETE_TENANT_DATA {
                        sqlx::query(sql).bind(id.0).execute(&mut *tx).await?;
                    }
                    let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        return Ok(None);
                    }
                    tx.commit().await?;
                    Ok(Some(devices.into_iter().map(DeviceId).collect()))
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
                    let mut conn = self.writer().acquire().await?;
                    Self::insert_user(&mut conn, user).await
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

                async fn update_user_profile(&self, user: &User) -> Result<bool> {
                    let updated = sqlx::query(
                        "UPDATE users SET email = $2, first_name = $3, last_name = $4 WHERE id = $1",
                    )
                    .bind(user.id.0)
                    .bind(user.email.as_str())
                    .bind(user.first_name.as_deref())
                    .bind(user.last_name.as_deref())
                    .execute(self.writer())
                    .await
                    .map_err(|e| conflict(e, |_| email_taken(&user.email)))?
                    .rows_affected();
                    Ok(updated > 0)
                }

                async fn page_users(
                    &self,
                    filter: &UserFilter,
                    query: &PageQuery,
                ) -> Result<Page<User>> {
                    let search = query.text_search.as_deref().filter(|s| !s.is_empty());
                    let condition = user_filter(Self::SQL.find);
                    let order = user_order(query.sort_property.as_deref(), query.sort_order);
                    let (tenant, customer) = (filter.tenant.0, filter.customer.map(|c| c.0));
                    let authority = filter.authority.map(|a| a.as_str());
                    self.page(
                        format!("SELECT count(*) FROM users u{condition}"),
                        format!("{USER_SELECT} u{condition}{order} LIMIT $5 OFFSET $6"),
                        query,
                        |q| q.bind(tenant).bind(customer).bind(authority).bind(search),
                        user_of,
                    )
                    .await
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
            impl ActivationStore for super::$store {
                async fn create_user_with_activation(
                    &self,
                    user: &User,
                    activation: &Activation,
                ) -> Result<()> {
                    let mut tx = self.writer().begin().await?;
                    Self::insert_user(&mut tx, user).await?;
                    sqlx::query(
                        "INSERT INTO user_activations (user_id, token, expires_at) VALUES ($1, $2, $3)",
                    )
                    .bind(activation.user_id.0)
                    .bind(activation.token.as_str())
                    .bind(activation.expires_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_activation(&self, user: UserId) -> Result<Option<Activation>> {
                    let row = sqlx::query(
                        "SELECT user_id, token, expires_at FROM user_activations WHERE user_id = $1",
                    )
                    .bind(user.0)
                    .fetch_optional(self.reader())
                    .await?;
                    row.as_ref().map(activation_of).transpose()
                }

                async fn put_activation(&self, activation: &Activation) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO user_activations (user_id, token, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (user_id) DO UPDATE SET token = $2, expires_at = $3",
                    )
                    .bind(activation.user_id.0)
                    .bind(activation.token.as_str())
                    .bind(activation.expires_at)
                    .execute(self.writer())
                    .await?;
                    Ok(())
                }

                async fn find_activation(&self, token: &str) -> Result<Option<Activation>> {
                    let row = sqlx::query(
                        "SELECT user_id, token, expires_at FROM user_activations WHERE token = $1",
                    )
                    .bind(token)
                    .fetch_optional(self.reader())
                    .await?;
                    row.as_ref().map(activation_of).transpose()
                }

                async fn activate_user(
                    &self,
                    user: UserId,
                    token: &str,
                    hash: &str,
                    session: &AuthSession,
                ) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let used = sqlx::query(
                        "DELETE FROM user_activations WHERE user_id = $1 AND token = $2",
                    )
                    .bind(user.0)
                    .bind(token)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if used == 0 {
                        return Ok(false);
                    }
                    sqlx::query(
                        "UPDATE users SET password_hash = $2, enabled = TRUE, failed_logins = 0, \
                         locked_until = 0 WHERE id = $1",
                    )
                    .bind(user.0)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1")
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(INSERT_SESSION)
                        .bind(session.id)
                        .bind(session.user_id.0)
                        .bind(session.refresh_id)
                        .bind(session.created_time)
                        .bind(session.expires_at)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
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
