-- Telemetry retention: a point's expiry time (ms since the epoch; NULL = kept until deleted),
-- and the index the background cleanup deletes by. Only points with a TTL are in the index.
ALTER TABLE ts_kv ADD COLUMN expires_at INTEGER;
CREATE INDEX ts_kv_expires_idx ON ts_kv (expires_at) WHERE expires_at IS NOT NULL;
