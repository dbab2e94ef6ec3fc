//! Login sessions, once for both backends.

pub(crate) const INSERT_SESSION: &str = "INSERT INTO auth_sessions \
     (id, user_id, refresh_id, created_time, expires_at) VALUES ($1, $2, $3, $4, $5)";

/// Implements `SessionStore` for `$store` (see `stores!`).
macro_rules! session_store {
    ($store:ident, $db:ty) => {
        mod sessions {
            use async_trait::async_trait;

            use super::rows::*;
            use crate::domain::{AuthSession, UserId};
            use crate::storage::sql::sessions::INSERT_SESSION;
            use crate::storage::{Result, SessionStore};

            #[async_trait]
            impl SessionStore for super::$store {
                async fn create_session(
                    &self,
                    session: &AuthSession,
                    max_per_user: u32,
                    now: i64,
                ) -> Result<()> {
                    let mut tx = self.writer().begin().await?;
                    sqlx::query("DELETE FROM auth_sessions WHERE expires_at <= $1")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    // Room for the new one: the user's newest `max - 1` sessions stay.
                    sqlx::query(
                        "DELETE FROM auth_sessions WHERE user_id = $1 AND id NOT IN \
                         (SELECT id FROM auth_sessions WHERE user_id = $1 \
                          ORDER BY created_time DESC, id DESC LIMIT $2)",
                    )
                    .bind(session.user_id.0)
                    .bind(i64::from(max_per_user.max(1) - 1))
                    .execute(&mut *tx)
                    .await?;
                    insert(&mut *tx, session).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_session(
                    &self,
                    id: uuid::Uuid,
                    now: i64,
                ) -> Result<Option<AuthSession>> {
                    let row = sqlx::query(
                        "SELECT s.id, s.user_id, s.refresh_id, s.created_time, s.expires_at \
                         FROM auth_sessions s JOIN users u ON u.id = s.user_id \
                         WHERE s.id = $1 AND s.expires_at > $2 AND u.enabled",
                    )
                    .bind(id)
                    .bind(now)
                    .fetch_optional(self.reader())
                    .await?;
                    row.as_ref().map(session_of).transpose()
                }

                async fn rotate_session(
                    &self,
                    id: uuid::Uuid,
                    old: uuid::Uuid,
                    new: uuid::Uuid,
                    expires_at: i64,
                ) -> Result<bool> {
                    let changed = sqlx::query(
                        "UPDATE auth_sessions SET refresh_id = $3, expires_at = $4 \
                         WHERE id = $1 AND refresh_id = $2",
                    )
                    .bind(id)
                    .bind(old)
                    .bind(new)
                    .bind(expires_at)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    Ok(changed > 0)
                }

                async fn delete_session(&self, id: uuid::Uuid) -> Result<bool> {
                    let deleted = sqlx::query("DELETE FROM auth_sessions WHERE id = $1")
                        .bind(id)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(deleted > 0)
                }

                async fn change_password(
                    &self,
                    user: UserId,
                    hash: &str,
                    session: &AuthSession,
                ) -> Result<bool> {
                    let mut tx = self.writer().begin().await?;
                    let changed = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                        .bind(user.0)
                        .bind(hash)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if changed == 0 {
                        return Ok(false);
                    }
                    sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1")
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await?;
                    insert(&mut *tx, session).await?;
                    tx.commit().await?;
                    Ok(true)
                }
            }

            async fn insert<'c, C>(conn: C, session: &AuthSession) -> Result<()>
            where
                C: sqlx::Executor<'c, Database = $db>,
            {
                sqlx::query(INSERT_SESSION)
                    .bind(session.id)
                    .bind(session.user_id.0)
                    .bind(session.refresh_id)
                    .bind(session.created_time)
                    .bind(session.expires_at)
                    .execute(conn)
                    .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use session_store;
