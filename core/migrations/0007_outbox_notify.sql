-- Wake the outbox relay when events are written (one notification per statement).
CREATE FUNCTION events.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON events.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION events.notify_outbox();
