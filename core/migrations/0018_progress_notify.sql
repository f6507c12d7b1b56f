-- The web console's live power and discovery pages: one notification per statement that moves a
-- transition, a task, a scan or a host along.  On channels of their own: the engines listen on
-- chamicore_power and chamicore_discovery, and their own progress must not wake them.
CREATE FUNCTION power.notify_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_power_progress', '');
    RETURN NULL;
END $$;
CREATE TRIGGER transitions_progress_notify AFTER INSERT OR UPDATE ON power.transitions
    FOR EACH STATEMENT EXECUTE FUNCTION power.notify_progress();
CREATE TRIGGER tasks_progress_notify AFTER INSERT OR UPDATE ON power.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION power.notify_progress();

CREATE FUNCTION discovery.notify_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_discovery_progress', '');
    RETURN NULL;
END $$;
CREATE TRIGGER scans_progress_notify AFTER INSERT OR UPDATE ON discovery.scans
    FOR EACH STATEMENT EXECUTE FUNCTION discovery.notify_progress();
CREATE TRIGGER scan_hosts_progress_notify AFTER INSERT OR UPDATE ON discovery.scan_hosts
    FOR EACH STATEMENT EXECUTE FUNCTION discovery.notify_progress();
