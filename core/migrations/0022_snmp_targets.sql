-- The snmp discovery driver: a switch's forwarding table attaches learned MACs to the nodes its ports name.
-- Its settings (SNMP version, v3 protocols, the port -> node mapping rule; core/switch_ports.py) live with the target.
ALTER TABLE discovery.targets ADD COLUMN snmp jsonb;

-- Every driver this schema knows, ipmi included (its own migration widens the same list).
ALTER TABLE discovery.targets DROP CONSTRAINT IF EXISTS targets_driver_check;
ALTER TABLE discovery.targets ADD CONSTRAINT targets_driver_check
    CHECK (driver IN ('redfish', 'csv', 'json', 'ipmi', 'snmp'));

-- Only the node-list drivers carry a document; only snmp carries SNMP settings.
ALTER TABLE discovery.targets DROP CONSTRAINT IF EXISTS targets_check;
ALTER TABLE discovery.targets ADD CONSTRAINT targets_check CHECK ((driver IN ('csv', 'json')) = (document IS NOT NULL));
ALTER TABLE discovery.targets ADD CONSTRAINT targets_snmp_check CHECK ((driver = 'snmp') = (snmp IS NOT NULL));
