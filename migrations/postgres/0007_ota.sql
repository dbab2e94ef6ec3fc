-- Firmware and software packages. A package's file is stored in `ota_chunks` under `blob_id`
-- (64 KiB per row, `idx` from 0); the chunks are written before the package points at them, so an
-- upload never holds a transaction open and a failed one leaves nothing behind the package.

CREATE TABLE ota_packages (
    id                 UUID PRIMARY KEY,
    tenant_id          UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_profile_id  UUID NOT NULL REFERENCES device_profiles(id),
    created_time       BIGINT NOT NULL,
    type               TEXT NOT NULL,
    title              TEXT NOT NULL,
    version            TEXT NOT NULL,
    tag                TEXT,
    url                TEXT,
    file_name          TEXT,
    content_type       TEXT,
    checksum_algorithm TEXT,
    checksum           TEXT,
    data_size          BIGINT,
    blob_id            UUID,
    additional_info    JSONB
);
CREATE UNIQUE INDEX ota_packages_title_version_unq ON ota_packages (tenant_id, title, version);
CREATE INDEX ota_packages_profile_idx ON ota_packages (tenant_id, device_profile_id, type);

CREATE TABLE ota_chunks (
    blob_id UUID NOT NULL,
    idx     INTEGER NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (blob_id, idx)
);
-- Package bytes are written once and read sequentially; keep them out of TOAST compression.
ALTER TABLE ota_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
