-- Trace context, so that a change can be followed from the admin request that made
-- it to the boot path's feed applying it and to the NATS message announcing it.
-- A writer that is being traced sets `chamicore.traceparent` on its connection
-- (core/tracing.py); unset, nothing below changes what is sent.

-- The change feed's notification names the writer's trace (`traceparent`, 55 bytes).
CREATE OR REPLACE FUNCTION bss.send_boot_change(tbl text, op text, keys jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    trace jsonb := jsonb_strip_nulls(jsonb_build_object(
                       'traceparent', nullif(current_setting('chamicore.traceparent', true), '')));
    payload text := (jsonb_build_object('table', tbl, 'op', op, 'keys', keys) || trace)::text;
BEGIN
    IF octet_length(payload) > 7900 THEN
        payload := (jsonb_build_object('table', tbl, 'op', op, 'resync', true) || trace)::text;
    END IF;
    PERFORM pg_notify('chamicore_boot', payload);
END $$;

CREATE OR REPLACE FUNCTION bss.notify_boot_resync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_boot', (jsonb_build_object(
        'table', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'op', TG_OP, 'resync', true)
        || jsonb_strip_nulls(jsonb_build_object('traceparent',
                                                nullif(current_setting('chamicore.traceparent', true), ''))))::text);
    RETURN NULL;
END $$;

-- An event names the trace of the change it announces; the relay sends it in the message's headers.
ALTER TABLE events.outbox ADD COLUMN traceparent text CHECK (length(traceparent) <= 64);
