-- Persistent server-side RPCs. `request` is {"method","params","oneway","retries"};
-- `retries` counts failed delivery attempts.

CREATE TABLE rpc (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_id       UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_time    BIGINT NOT NULL,
    expiration_time BIGINT NOT NULL,
    request         JSONB NOT NULL,
    response        JSONB,
    status          TEXT NOT NULL,
    retries         INTEGER NOT NULL DEFAULT 0,
    additional_info JSONB
);
CREATE INDEX rpc_device_idx ON rpc (device_id, created_time, id);
CREATE INDEX rpc_open_idx ON rpc (expiration_time) WHERE status IN ('QUEUED', 'SENT', 'DELIVERED');
