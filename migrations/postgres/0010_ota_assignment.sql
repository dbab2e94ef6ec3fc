-- The firmware and software packages assigned to a device itself; a package assigned to a device
-- cannot be deleted.

ALTER TABLE devices ADD COLUMN firmware_id UUID REFERENCES ota_packages(id);
ALTER TABLE devices ADD COLUMN software_id UUID REFERENCES ota_packages(id);
