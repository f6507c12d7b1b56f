-- Boot profiles chosen by selectors (core/profiles.py), and free-form labels on components.

-- Labels: {key: value}, checked by core.profiles.check_labels when written (at most 32, short keys and values).
ALTER TABLE smd.components ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(labels) = 'object' AND octet_length(labels::text) <= 8192);
CREATE INDEX components_labels_idx ON smd.components USING gin (labels jsonb_path_ops);

-- A profile: what a node boots and the cloud-init documents it gets, for the nodes its selector matches
-- (the most specific profile wins; ties are refused when written).  `kernel`, `initrd` and `cmdline` serve
-- any architecture; `arches` ({arch: {kernel, initrd, ipxe}}) gives per-architecture answers instead.
-- The cmdline and the cloud-init documents are templates (core/templates.py), rendered per node by
-- the boot path when it builds its answers.
CREATE TABLE bss.profiles (
    id           varchar(255) PRIMARY KEY
                 CHECK (id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 1024),
    selector     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(selector) = 'object'),
    specificity  integer NOT NULL DEFAULT 0,
    kernel       text NOT NULL DEFAULT '',
    initrd       text NOT NULL DEFAULT '',
    cmdline      text NOT NULL DEFAULT '',
    arches       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(arches) = 'object'),
    user_data    text,
    meta_data    jsonb CHECK (meta_data IS NULL OR jsonb_typeof(meta_data) = 'object'),
    vendor_data  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER profiles_touch BEFORE UPDATE ON bss.profiles
    FOR EACH ROW EXECUTE FUNCTION smd.touch_updated_at();

-- The change feed hears the old and the new selectors of the profiles a statement changed
-- (`selectors`): the boot path re-renders every node either matches (hotpath/loader.py).
-- Too many for one notification: bss.send_boot_change sends a resync instead.
CREATE FUNCTION bss.notify_profile_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    selectors jsonb := '[]';
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT selectors || coalesce(jsonb_agg(DISTINCT o.selector), '[]') INTO selectors FROM old_rows o;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        SELECT selectors || coalesce(jsonb_agg(DISTINCT n.selector), '[]') INTO selectors FROM new_rows n;
    END IF;
    IF jsonb_array_length(selectors) > 0 THEN
        PERFORM bss.send_boot_change(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
                                     jsonb_build_object('selectors', selectors));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER boot_notify_ins AFTER INSERT ON bss.profiles REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_profile_change();
CREATE TRIGGER boot_notify_upd AFTER UPDATE ON bss.profiles REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_profile_change();
CREATE TRIGGER boot_notify_del AFTER DELETE ON bss.profiles REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_profile_change();
CREATE TRIGGER boot_notify_truncate AFTER TRUNCATE ON bss.profiles
    FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_boot_resync();
