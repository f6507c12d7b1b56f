-- Each node's hardware inventory as discovery last read it from its BMC (core/hardware.py describes the
-- document), with the columns the inventory is filtered on, and what each re-scan changed.
CREATE TABLE smd.hardware (
    component_id     varchar(255) PRIMARY KEY REFERENCES smd.components (id) ON DELETE CASCADE,
    document         jsonb NOT NULL,
    processor_models text[] NOT NULL DEFAULT '{}',
    gpu_models       text[] NOT NULL DEFAULT '{}',
    cores            integer NOT NULL DEFAULT 0,
    memory_gib       double precision NOT NULL DEFAULT 0,
    drive_bytes      bigint NOT NULL DEFAULT 0,
    scan_id          text,
    scanned_at       timestamptz NOT NULL DEFAULT now(),
    changed_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE smd.hardware_changes (
    id           bigserial PRIMARY KEY,
    component_id varchar(255) NOT NULL REFERENCES smd.components (id) ON DELETE CASCADE,
    scan_id      text,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    changes      jsonb NOT NULL
);
CREATE INDEX hardware_changes_component_idx ON smd.hardware_changes (component_id, id);

-- The numbers of a version in order ('BMC 1.10.2' -> {1,10,2}), as core.hardware.version_key computes them:
-- int8[] compares element by element, so 1.10 is above 1.9.
CREATE FUNCTION smd.version_key(version text) RETURNS int8[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT r.m[1]::int8 FROM regexp_matches(version, '[0-9]{1,18}', 'g') WITH ORDINALITY AS r(m, n) ORDER BY r.n);
