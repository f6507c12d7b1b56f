-- Boot Script Service: boot parameters by scope, and what the boot path saw.
CREATE SCHEMA bss;

CREATE TABLE bss.boot_params (
    id           varchar(255) PRIMARY KEY
                 CHECK (id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    mac          text CHECK (mac ~ '^([0-9a-f]{2}:){5}[0-9a-f]{2}$'),
    component_id varchar(255) REFERENCES smd.components (id) ON DELETE CASCADE,
    group_name   varchar(255) REFERENCES smd.groups (name) ON DELETE CASCADE ON UPDATE CASCADE,
    role         varchar(32) CHECK (role IN ('Compute', 'Service', 'Management', 'Application', 'Storage', 'System')),
    kernel       text NOT NULL,
    initrd       text NOT NULL DEFAULT '',
    cmdline      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- At most one scope; none at all is the site default.
    CHECK (num_nonnulls(mac, component_id, group_name, role) <= 1),
    scope        text GENERATED ALWAYS AS (
                     coalesce('mac:' || mac, 'component:' || component_id, 'group:' || group_name,
                              'role:' || role, 'site')) STORED UNIQUE
);
CREATE INDEX boot_params_component_idx ON bss.boot_params (component_id);
CREATE INDEX boot_params_group_idx ON bss.boot_params (group_name);
CREATE TRIGGER boot_params_touch BEFORE UPDATE ON bss.boot_params
    FOR EACH ROW EXECUTE FUNCTION smd.touch_updated_at();

-- Last boot-path request per node, written in batches by the boot path.
CREATE TABLE bss.boot_telemetry (
    component_id varchar(255) PRIMARY KEY REFERENCES smd.components (id) ON DELETE CASCADE,
    endpoint     text NOT NULL,
    source_ip    inet,
    seen_at      timestamptz NOT NULL,
    requests     bigint NOT NULL DEFAULT 0
);
CREATE INDEX boot_telemetry_seen_idx ON bss.boot_telemetry (seen_at);
