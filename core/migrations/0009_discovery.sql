-- Redfish endpoints (the BMCs Chamicore talks to) and discovery targets and scans.

-- A BMC component's Redfish service: where it answers and with which credential.
CREATE TABLE smd.redfish_endpoints (
    id            varchar(255) PRIMARY KEY REFERENCES smd.components (id) ON DELETE CASCADE,
    address       text NOT NULL UNIQUE CHECK (address ~ '^https?://[^/]+$'),
    credential_id varchar(255) REFERENCES auth.credentials (id) ON DELETE SET NULL,
    insecure      boolean NOT NULL DEFAULT false,   -- skip TLS verification (an explicit admin choice)
    discovered_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER redfish_endpoints_touch BEFORE UPDATE ON smd.redfish_endpoints
    FOR EACH ROW EXECUTE FUNCTION smd.touch_updated_at();

-- Which ComputerSystem of which endpoint a node is: what power control addresses.
CREATE TABLE smd.redfish_systems (
    component_id varchar(255) PRIMARY KEY REFERENCES smd.components (id) ON DELETE CASCADE,
    endpoint_id  varchar(255) NOT NULL REFERENCES smd.redfish_endpoints (id) ON DELETE CASCADE,
    path         text NOT NULL CHECK (path LIKE '/redfish/v1/%'),
    uuid         text,
    serial       text,
    manufacturer text,
    model        text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, path)
);
CREATE INDEX redfish_systems_uuid_idx ON smd.redfish_systems (uuid);

CREATE SCHEMA discovery;

CREATE TABLE discovery.targets (
    id            varchar(255) PRIMARY KEY
                  CHECK (id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    driver        text NOT NULL CHECK (driver IN ('redfish', 'csv', 'json')),
    address       text NOT NULL DEFAULT '',   -- redfish: host, host:port, URL, a-b range or CIDR
    document      text,                       -- csv, json: the node list itself
    credential_id varchar(255) REFERENCES auth.credentials (id) ON DELETE SET NULL,
    insecure      boolean NOT NULL DEFAULT false,
    schedule_s    integer CHECK (schedule_s >= 60),
    enabled       boolean NOT NULL DEFAULT true,
    description   text NOT NULL DEFAULT '',
    last_scan_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((driver = 'redfish') = (document IS NULL))
);

CREATE TABLE discovery.scans (
    id           varchar(255) PRIMARY KEY,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    requested_by text NOT NULL DEFAULT '',
    owner        text,                        -- the scanner replica that runs it
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scans_open_idx ON discovery.scans (created_at) WHERE state IN ('pending', 'running');

-- One row per host a scan visits (a csv/json target is one "host": its document).
CREATE TABLE discovery.scan_hosts (
    scan_id     varchar(255) NOT NULL REFERENCES discovery.scans (id) ON DELETE CASCADE,
    target_id   varchar(255) NOT NULL,
    host        text NOT NULL,
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'ok', 'failed', 'cancelled')),
    detail      text NOT NULL DEFAULT '',
    components  text[] NOT NULL DEFAULT '{}',
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (scan_id, target_id, host)
);

-- Wake the scanner when a scan is requested or cancelled.
CREATE FUNCTION discovery.notify_scans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_discovery', '');
    RETURN NULL;
END $$;
CREATE TRIGGER scans_notify AFTER INSERT OR UPDATE OF state ON discovery.scans
    FOR EACH ROW WHEN (NEW.state IN ('pending', 'cancelled')) EXECUTE FUNCTION discovery.notify_scans();
