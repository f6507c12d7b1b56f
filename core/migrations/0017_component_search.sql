-- Inventory text search (GET /hsm/v2/State/Components?q=): an IP address finds its
-- interface through this index rather than by reading every interface's addresses.
CREATE INDEX ethernet_interfaces_ip_addrs_idx ON smd.ethernet_interfaces USING gin (ip_addrs jsonb_path_ops);
