-- The change feed: every change that can alter a node's boot answer sends
-- pg_notify('chamicore_boot', {"table", "op", "keys"}) once per statement.
-- Keys only (a NOTIFY payload is capped at 8000 bytes); when the keys of a
-- statement would not fit, one {"table", "op", "resync": true} instead.

CREATE FUNCTION bss.send_boot_change(tbl text, op text, keys jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    payload text := jsonb_build_object('table', tbl, 'op', op, 'keys', keys)::text;
BEGIN
    IF octet_length(payload) > 7900 THEN
        payload := jsonb_build_object('table', tbl, 'op', op, 'resync', true)::text;
    END IF;
    PERFORM pg_notify('chamicore_boot', payload);
END $$;

-- One function for every watched table: it reads the statement's transition
-- tables and keeps the columns that locate the affected nodes.
CREATE FUNCTION bss.notify_boot_change() RETURNS trigger
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

CREATE FUNCTION bss.notify_boot_resync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_boot', jsonb_build_object(
        'table', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'op', TG_OP, 'resync', true)::text);
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['smd.components', 'smd.ethernet_interfaces', 'smd.group_members',
                             'bss.boot_params', 'cloudinit.payloads'] LOOP
        EXECUTE format('CREATE TRIGGER boot_notify_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_boot_change()', t);
        EXECUTE format('CREATE TRIGGER boot_notify_upd AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows '
                       'NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_boot_change()', t);
        EXECUTE format('CREATE TRIGGER boot_notify_del AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_boot_change()', t);
        EXECUTE format('CREATE TRIGGER boot_notify_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_boot_resync()', t);
    END LOOP;
END $$;
