-- Device profiles keep ThingsBoard's profileData (transport and provisioning settings) and the
-- provisioning key, unique across tenants.
ALTER TABLE device_profiles ADD COLUMN profile_data JSONB;
ALTER TABLE device_profiles ADD COLUMN provision_device_key TEXT;
ALTER TABLE device_profiles ADD CONSTRAINT device_profiles_provision_key_unq UNIQUE (provision_device_key);
