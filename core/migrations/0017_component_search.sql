-- Inventory text search (GET /hsm/v2/State/Components?q=): an id or a MAC by its start,
-- an IP address whole, each found through an index rather than by reading every row.
-- Byte order ("C"), so that a prefix is one index range whatever the database's collation.
CREATE INDEX components_id_search_idx ON smd.components ((lower(id) COLLATE "C"));
CREATE INDEX ethernet_interfaces_mac_search_idx ON smd.ethernet_interfaces ((mac COLLATE "C"));
CREATE INDEX ethernet_interfaces_ip_addrs_idx ON smd.ethernet_interfaces USING gin (ip_addrs jsonb_path_ops);
