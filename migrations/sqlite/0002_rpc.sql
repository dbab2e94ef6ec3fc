-- Persistent server-side RPCs. `request` is compact JSON text
-- {"method","params","oneway","retries"}; `retries` counts failed delivery attempts.

CREATE TABLE rpc (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_id       BLOB NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_time    INTEGER NOT NULL,
    expiration_time INTEGER NOT NULL,
    request         TEXT NOT NULL,
    response        TEXT,
    status          TEXT NOT NULL,
    retries         INTEGER NOT NULL DEFAULT 0,
    additional_info TEXT
);
CREATE INDEX rpc_device_idx ON rpc (device_id, created_time, id);
CREATE INDEX rpc_open_idx ON rpc (expiration_time) WHERE status IN ('QUEUED', 'SENT', 'DELIVERED');
