-- Logins and tokens: whether a user may log in, its consecutive failed logins and the lock they
-- earned (ThingsBoard's lockout), and the login sessions whose tokens are still honoured.

ALTER TABLE users ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
-- Milliseconds since the epoch; 0 when never locked.
ALTER TABLE users ADD COLUMN locked_until INTEGER NOT NULL DEFAULT 0;

-- One row per login: its access and refresh tokens carry the id as `sessionId`. Logging out,
-- changing the password, disabling or deleting the user removes the rows, so the tokens of those
-- sessions are refused on every node. `refresh_id` is the `jti` of the one refresh token of the
-- session that may still be used (refresh tokens rotate).
CREATE TABLE auth_sessions (
    id           BLOB PRIMARY KEY,
    user_id      BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    refresh_id   BLOB NOT NULL,
    created_time INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id, created_time);
CREATE INDEX auth_sessions_expiry_idx ON auth_sessions (expires_at);
