-- cloud-init payloads by scope: component, group, role, or the site default.
CREATE SCHEMA cloudinit;

CREATE TABLE cloudinit.payloads (
    id           varchar(255) PRIMARY KEY
                 CHECK (id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    component_id varchar(255) REFERENCES smd.components (id) ON DELETE CASCADE,
    group_name   varchar(255) REFERENCES smd.groups (name) ON DELETE CASCADE ON UPDATE CASCADE,
    role         varchar(32) CHECK (role IN ('Compute', 'Service', 'Management', 'Application', 'Storage', 'System')),
    user_data    text,
    meta_data    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(meta_data) = 'object'),
    vendor_data  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(component_id, group_name, role) <= 1),
    scope        text GENERATED ALWAYS AS (
                     coalesce('component:' || component_id, 'group:' || group_name, 'role:' || role, 'site'))
                 STORED UNIQUE
);
CREATE INDEX payloads_component_idx ON cloudinit.payloads (component_id);
CREATE INDEX payloads_group_idx ON cloudinit.payloads (group_name);
CREATE TRIGGER payloads_touch BEFORE UPDATE ON cloudinit.payloads
    FOR EACH ROW EXECUTE FUNCTION smd.touch_updated_at();
