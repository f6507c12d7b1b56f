-- The web console's live dashboard: one notification per telemetry flush (a
-- statement, whatever its rows), so a boot storm shows as it happens without
-- the boot path doing anything more than the write it already does.
CREATE FUNCTION bss.notify_telemetry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_telemetry', '');
    RETURN NULL;
END $$;
CREATE TRIGGER boot_telemetry_notify AFTER INSERT OR UPDATE ON bss.boot_telemetry
    FOR EACH STATEMENT EXECUTE FUNCTION bss.notify_telemetry();
