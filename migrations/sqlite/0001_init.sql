-- ferroboard schema, SQLite. UUIDs are 16-byte BLOBs, booleans INTEGER 0/1, JSON compact TEXT,
-- timestamps milliseconds since the epoch.

CREATE TABLE tenants (
    id           BLOB PRIMARY KEY,
    title        TEXT NOT NULL,
    created_time INTEGER NOT NULL
);

CREATE TABLE customers (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    created_time INTEGER NOT NULL
);

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    created_time  INTEGER NOT NULL,
    tenant_id     BLOB REFERENCES tenants(id) ON DELETE CASCADE,
    customer_id   BLOB,
    email         TEXT NOT NULL,
    authority     TEXT NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    password_hash TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email_unq ON users (lower(email));

CREATE TABLE device_profiles (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_time INTEGER NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    is_default   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX device_profiles_name_unq ON device_profiles (tenant_id, name);
CREATE UNIQUE INDEX device_profiles_default_unq ON device_profiles (tenant_id) WHERE is_default = 1;
CREATE INDEX device_profiles_created_idx ON device_profiles (tenant_id, created_time, id);

CREATE TABLE devices (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    customer_id     BLOB,
    created_time    INTEGER NOT NULL,
    name            TEXT NOT NULL,
    label           TEXT,
    profile_id      BLOB NOT NULL REFERENCES device_profiles(id),
    additional_info TEXT NOT NULL DEFAULT '{}',
    version         INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX devices_name_unq ON devices (tenant_id, name);
CREATE INDEX devices_created_idx ON devices (tenant_id, created_time, id);
CREATE INDEX devices_profile_idx ON devices (profile_id);

CREATE TABLE device_credentials (
    id                BLOB PRIMARY KEY,
    device_id         BLOB NOT NULL UNIQUE REFERENCES devices(id) ON DELETE CASCADE,
    created_time      INTEGER NOT NULL,
    credentials_type  TEXT NOT NULL,
    credentials_id    TEXT NOT NULL,
    credentials_value TEXT,
    version           INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX device_credentials_id_unq ON device_credentials (credentials_id);

-- Attributes of any entity; scope is AttributeScope::code().
CREATE TABLE attributes (
    entity_id      BLOB NOT NULL,
    scope          INTEGER NOT NULL,
    attribute_key  TEXT NOT NULL,
    bool_v         INTEGER,
    long_v         INTEGER,
    dbl_v          REAL,
    str_v          TEXT,
    json_v         TEXT,
    last_update_ts INTEGER NOT NULL,
    PRIMARY KEY (entity_id, scope, attribute_key)
) WITHOUT ROWID;

-- Time-series key names, stored once; points refer to them by number.
CREATE TABLE ts_kv_dictionary (
    key_id INTEGER PRIMARY KEY,
    key    TEXT NOT NULL UNIQUE
);

CREATE TABLE ts_kv (
    entity_id BLOB NOT NULL,
    key_id    INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    bool_v    INTEGER,
    long_v    INTEGER,
    dbl_v     REAL,
    str_v     TEXT,
    json_v    TEXT,
    PRIMARY KEY (entity_id, key_id, ts)
) WITHOUT ROWID;

CREATE TABLE ts_kv_latest (
    entity_id BLOB NOT NULL,
    key_id    INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    bool_v    INTEGER,
    long_v    INTEGER,
    dbl_v     REAL,
    str_v     TEXT,
    json_v    TEXT,
    PRIMARY KEY (entity_id, key_id)
) WITHOUT ROWID;

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
