-- Firmware and software packages. A package's file is stored in `ota_chunks` under `blob_id`
-- (64 KiB per row, `idx` from 0); the chunks are written before the package points at them, so an
-- upload never holds a transaction open and a failed one leaves nothing behind the package.

CREATE TABLE ota_packages (
    id                 BLOB PRIMARY KEY,
    tenant_id          BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_profile_id  BLOB NOT NULL REFERENCES device_profiles(id),
    created_time       INTEGER NOT NULL,
    type               TEXT NOT NULL,
    title              TEXT NOT NULL,
    version            TEXT NOT NULL,
    tag                TEXT,
    url                TEXT,
    file_name          TEXT,
    content_type       TEXT,
    checksum_algorithm TEXT,
    checksum           TEXT,
    data_size          INTEGER,
    blob_id            BLOB,
    additional_info    TEXT
);
CREATE UNIQUE INDEX ota_packages_title_version_unq ON ota_packages (tenant_id, title, version);
CREATE INDEX ota_packages_profile_idx ON ota_packages (tenant_id, device_profile_id, type);

CREATE TABLE ota_chunks (
    blob_id BLOB NOT NULL,
    idx     INTEGER NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (blob_id, idx)
);
