-- A NID scope for boot parameters (OpenCHAMI BSS names entries by `nids`): the entry
-- belongs to the number, not to whichever component holds it when written, so a
-- renumbered node takes the parameters of its new NID and a NID nobody holds yet may
-- be given parameters that apply once a component gets it.  Precedence on the boot
-- path: MAC, component, NID, group, role, site.
ALTER TABLE bss.boot_params ADD COLUMN nid bigint CHECK (nid >= 0);

-- The "at most one scope" check (named by PostgreSQL in 0002) now counts the NID too.
DO $$
DECLARE
    found text;
BEGIN
    SELECT conname INTO STRICT found FROM pg_constraint
    WHERE conrelid = 'bss.boot_params'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%num_nonnulls%';
    EXECUTE format('ALTER TABLE bss.boot_params DROP CONSTRAINT %I', found);
END $$;
ALTER TABLE bss.boot_params ADD CONSTRAINT boot_params_one_scope
    CHECK (num_nonnulls(mac, component_id, nid, group_name, role) <= 1);

-- A generated expression cannot be altered before PostgreSQL 17: the column (and its
-- UNIQUE) is dropped and added back with the NID after the component.
ALTER TABLE bss.boot_params DROP COLUMN scope;
ALTER TABLE bss.boot_params ADD COLUMN scope text GENERATED ALWAYS AS (
    coalesce('mac:' || mac, 'component:' || component_id, 'nid:' || nid, 'group:' || group_name,
             'role:' || role, 'site')) STORED UNIQUE;
CREATE INDEX boot_params_nid_idx ON bss.boot_params (nid);

-- The change feed also names the NIDs of boot_params rows (`nids`), so the boot path
-- re-renders the nodes holding them.  The rest as in 0005.
CREATE OR REPLACE FUNCTION bss.notify_boot_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tbl  text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    rows jsonb := '[]';
    scoped boolean := TG_TABLE_NAME IN ('boot_params', 'payloads');
    keys jsonb;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT rows || coalesce(jsonb_agg(to_jsonb(o)), '[]') INTO rows FROM old_rows o;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        SELECT rows || coalesce(jsonb_agg(to_jsonb(n)), '[]') INTO rows FROM new_rows n;
    END IF;
    IF jsonb_array_length(rows) = 0 THEN
        RETURN NULL;
    END IF;

    SELECT jsonb_strip_nulls(jsonb_build_object(
        'componentIds', (SELECT jsonb_agg(DISTINCT v) FROM (
                            SELECT CASE WHEN TG_TABLE_NAME = 'components' THEN e ->> 'id'
                                        ELSE e ->> 'component_id' END AS v
                            FROM jsonb_array_elements(rows) e) x WHERE v IS NOT NULL),
        'macs',   (SELECT jsonb_agg(DISTINCT e ->> 'mac') FROM jsonb_array_elements(rows) e
                   WHERE e ->> 'mac' IS NOT NULL),
        'nids',   (SELECT jsonb_agg(DISTINCT (e ->> 'nid')::bigint) FROM jsonb_array_elements(rows) e
                   WHERE TG_TABLE_NAME = 'boot_params' AND e ->> 'nid' IS NOT NULL),
        'groups', (SELECT jsonb_agg(DISTINCT e ->> 'group_name') FROM jsonb_array_elements(rows) e
                   WHERE scoped AND e ->> 'group_name' IS NOT NULL),
        'roles',  (SELECT jsonb_agg(DISTINCT e ->> 'role') FROM jsonb_array_elements(rows) e
                   WHERE scoped AND e ->> 'role' IS NOT NULL),
        'site',   (SELECT true FROM jsonb_array_elements(rows) e
                   WHERE scoped AND e ->> 'scope' = 'site' LIMIT 1)
    )) INTO keys;

    PERFORM bss.send_boot_change(tbl, TG_OP, keys);
    RETURN NULL;
END $$;
