-- Open claim windows: a device announced it may be claimed by whoever knows the secret key
-- until the expiration time (ms since the epoch). Claiming or reclaiming removes the row.
CREATE TABLE device_claims (
    device_id       BLOB PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    secret_key      TEXT NOT NULL,
    expiration_time INTEGER NOT NULL
);
