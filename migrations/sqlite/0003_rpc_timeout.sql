-- TIMEOUT (no PUBACK in time, retry pending) is an open persistent RPC state too
--: the expiry sweep's index covers it.

DROP INDEX rpc_open_idx;
CREATE INDEX rpc_open_idx ON rpc (expiration_time)
    WHERE status IN ('QUEUED', 'SENT', 'TIMEOUT', 'DELIVERED');
