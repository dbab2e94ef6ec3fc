-- The firmware and software packages assigned to a device profile: its devices without a package
-- of their own get it. A package assigned to a profile cannot be deleted.

ALTER TABLE device_profiles ADD COLUMN firmware_id BLOB REFERENCES ota_packages(id);
ALTER TABLE device_profiles ADD COLUMN software_id BLOB REFERENCES ota_packages(id);
