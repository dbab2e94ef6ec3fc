-- Customers, their users and devices, and the activation links of new users.

-- ThingsBoard keeps customer titles unique within a tenant.
CREATE UNIQUE INDEX customers_title_unq ON customers (tenant_id, title);
CREATE INDEX customers_created_idx ON customers (tenant_id, created_time, id);
CREATE INDEX tenants_created_idx ON tenants (created_time, id);
CREATE INDEX users_tenant_idx ON users (tenant_id, customer_id, created_time);
CREATE INDEX devices_customer_idx ON devices (tenant_id, customer_id, created_time, id);

-- A user created without a password waits here until it follows its activation link.
CREATE TABLE user_activations (
    user_id    UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    token      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX user_activations_token_unq ON user_activations (token);
