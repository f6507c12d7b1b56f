-- Inventory (State Manager Data): components, their Ethernet interfaces, groups.
CREATE SCHEMA smd;

-- Keeps updated_at honest for writers that forget it (hand-written SQL included):
-- the boot path's consistency check and the API's ETags rely on it.
CREATE FUNCTION smd.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE smd.components (
    id          varchar(255) PRIMARY KEY
                CHECK (id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    type        varchar(63) NOT NULL CHECK (type IN ('Cabinet', 'BMC', 'Node', 'Processor', 'Memory',
                                                     'Accelerator', 'NIC', 'Drive', 'PDU', 'Switch')),
    state       varchar(32) NOT NULL DEFAULT 'Empty'
                CHECK (state IN ('Empty', 'Populated', 'Off', 'On', 'Standby', 'Halt', 'Ready')),
    role        varchar(32) NOT NULL DEFAULT ''
                CHECK (role IN ('', 'Compute', 'Service', 'Management', 'Application', 'Storage', 'System')),
    sub_role    varchar(32) NOT NULL DEFAULT '',
    nid         bigint UNIQUE CHECK (nid >= 0),
    arch        varchar(32) NOT NULL DEFAULT 'x86_64',
    enabled     boolean NOT NULL DEFAULT true,
    parent_id   varchar(255) REFERENCES smd.components (id) ON DELETE RESTRICT,
    rack        text,
    unit        integer,
    slot        integer NOT NULL DEFAULT 0,
    sub_slot    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX components_type_idx ON smd.components (type);
CREATE INDEX components_state_idx ON smd.components (state);
CREATE INDEX components_role_idx ON smd.components (role);
CREATE INDEX components_location_idx ON smd.components (rack, unit, slot);
CREATE INDEX components_parent_idx ON smd.components (parent_id);
CREATE TRIGGER components_touch BEFORE UPDATE ON smd.components
    FOR EACH ROW EXECUTE FUNCTION smd.touch_updated_at();

CREATE TABLE smd.ethernet_interfaces (
    id           varchar(255) PRIMARY KEY
                 CHECK (id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    component_id varchar(255) NOT NULL REFERENCES smd.components (id) ON DELETE CASCADE,
    -- Always the normalised form: lowercase, colon-separated.
    mac          text NOT NULL UNIQUE CHECK (mac ~ '^([0-9a-f]{2}:){5}[0-9a-f]{2}$'),
    ip_addrs     jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(ip_addrs) = 'array'),
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ethernet_interfaces_component_idx ON smd.ethernet_interfaces (component_id);
CREATE TRIGGER ethernet_interfaces_touch BEFORE UPDATE ON smd.ethernet_interfaces
    FOR EACH ROW EXECUTE FUNCTION smd.touch_updated_at();

-- A partition is an exclusive group: a component belongs to at most one.
CREATE TABLE smd.groups (
    name        varchar(255) PRIMARY KEY
                CHECK (name ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    description text NOT NULL DEFAULT '',
    tags        text[] NOT NULL DEFAULT '{}',
    exclusive   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, exclusive)
);
CREATE TRIGGER groups_touch BEFORE UPDATE ON smd.groups
    FOR EACH ROW EXECUTE FUNCTION smd.touch_updated_at();

CREATE TABLE smd.group_members (
    group_name   varchar(255) NOT NULL,
    exclusive    boolean NOT NULL DEFAULT false,
    component_id varchar(255) NOT NULL REFERENCES smd.components (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, component_id),
    -- The pair keeps `exclusive` in step with the group, so the index below can enforce partitions.
    FOREIGN KEY (group_name, exclusive) REFERENCES smd.groups (name, exclusive)
        ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX group_members_component_idx ON smd.group_members (component_id);
CREATE UNIQUE INDEX group_members_one_partition ON smd.group_members (component_id) WHERE exclusive;
