-- ferroboard schema, PostgreSQL. Timestamps are milliseconds since the epoch (BIGINT).

CREATE TABLE tenants (
    id           UUID PRIMARY KEY,
    title        TEXT NOT NULL,
    created_time BIGINT NOT NULL
);

CREATE TABLE customers (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    created_time BIGINT NOT NULL
);

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    created_time  BIGINT NOT NULL,
    tenant_id     UUID REFERENCES tenants(id) ON DELETE CASCADE,
    customer_id   UUID,
    email         TEXT NOT NULL,
    authority     TEXT NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    password_hash TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email_unq ON users (lower(email));

CREATE TABLE device_profiles (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_time BIGINT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    is_default   BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT device_profiles_name_unq UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX device_profiles_default_unq ON device_profiles (tenant_id) WHERE is_default;
CREATE INDEX device_profiles_created_idx ON device_profiles (tenant_id, created_time, id);

CREATE TABLE devices (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    customer_id     UUID,
    created_time    BIGINT NOT NULL,
    name            TEXT NOT NULL,
    label           TEXT,
    profile_id      UUID NOT NULL REFERENCES device_profiles(id),
    additional_info JSONB NOT NULL DEFAULT '{}'::jsonb,
    version         BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT devices_name_unq UNIQUE (tenant_id, name)
);
CREATE INDEX devices_created_idx ON devices (tenant_id, created_time, id);
CREATE INDEX devices_profile_idx ON devices (profile_id);

CREATE TABLE device_credentials (
    id                UUID PRIMARY KEY,
    device_id         UUID NOT NULL UNIQUE REFERENCES devices(id) ON DELETE CASCADE,
    created_time      BIGINT NOT NULL,
    credentials_type  TEXT NOT NULL,
    credentials_id    TEXT NOT NULL,
    credentials_value TEXT,
    version           BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT device_credentials_id_unq UNIQUE (credentials_id)
);

-- Attributes of any entity; scope is AttributeScope::code().
CREATE TABLE attributes (
    entity_id      UUID NOT NULL,
    scope          SMALLINT NOT NULL,
    attribute_key  TEXT NOT NULL,
    bool_v         BOOLEAN,
    long_v         BIGINT,
    dbl_v          DOUBLE PRECISION,
    str_v          TEXT,
    json_v         JSONB,
    last_update_ts BIGINT NOT NULL,
    PRIMARY KEY (entity_id, scope, attribute_key)
);

-- Time-series key names, stored once; points refer to them by number.
CREATE TABLE ts_kv_dictionary (
    key    TEXT NOT NULL UNIQUE,
    key_id SERIAL PRIMARY KEY
);

CREATE TABLE ts_kv (
    entity_id UUID NOT NULL,
    key_id    INTEGER NOT NULL,
    ts        BIGINT NOT NULL,
    bool_v    BOOLEAN,
    long_v    BIGINT,
    dbl_v     DOUBLE PRECISION,
    str_v     TEXT,
    json_v    JSONB,
    PRIMARY KEY (entity_id, key_id, ts)
);

CREATE TABLE ts_kv_latest (
    entity_id UUID NOT NULL,
    key_id    INTEGER NOT NULL,
    ts        BIGINT NOT NULL,
    bool_v    BOOLEAN,
    long_v    BIGINT,
    dbl_v     DOUBLE PRECISION,
    str_v     TEXT,
    json_v    JSONB,
    PRIMARY KEY (entity_id, key_id)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
