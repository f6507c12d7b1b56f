-- IPMI: a BMC endpoint may speak IPMI (address ipmi://host:port; the scheme tells power control which protocol),
-- its one system is mapped by the path 'ipmi:chassis' (what chassis control addresses), and discovery has an
-- ipmi driver, which scans addresses like the redfish driver and carries no document.
ALTER TABLE smd.redfish_endpoints DROP CONSTRAINT IF EXISTS redfish_endpoints_address_check;
ALTER TABLE smd.redfish_endpoints ADD CONSTRAINT redfish_endpoints_address_check
    CHECK (address ~ '^https?://[^/]+$' OR address ~ '^ipmi://[^/@?#]+:[0-9]{1,5}$');

ALTER TABLE smd.redfish_systems DROP CONSTRAINT IF EXISTS redfish_systems_path_check;
ALTER TABLE smd.redfish_systems ADD CONSTRAINT redfish_systems_path_check
    CHECK (path LIKE '/redfish/v1/%' OR path = 'ipmi:chassis');

ALTER TABLE discovery.targets DROP CONSTRAINT IF EXISTS targets_driver_check;
ALTER TABLE discovery.targets ADD CONSTRAINT targets_driver_check CHECK (driver IN ('redfish', 'csv', 'json', 'ipmi'));
ALTER TABLE discovery.targets DROP CONSTRAINT IF EXISTS targets_check;
ALTER TABLE discovery.targets ADD CONSTRAINT targets_check CHECK ((driver IN ('csv', 'json')) = (document IS NOT NULL));
