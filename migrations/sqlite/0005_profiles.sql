-- Device profiles keep ThingsBoard's profileData (transport and provisioning settings) and the
-- provisioning key, unique across tenants.
ALTER TABLE device_profiles ADD COLUMN profile_data TEXT;
ALTER TABLE device_profiles ADD COLUMN provision_device_key TEXT;
CREATE UNIQUE INDEX device_profiles_provision_key_unq ON device_profiles (provision_device_key);
