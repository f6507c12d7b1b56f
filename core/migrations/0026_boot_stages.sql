-- How far each node's current boot went: dhcp -> ipxe -> script -> kernel-booted -> cloud-init -> ready.
-- Written in batches: the boot path flushes the stages its requests showed (hotpath/telemetry.py), the
-- sync daemon the leases Kea handed out (sync/leases.py).  Both go through bss.apply_boot_stages, so
-- the rules below are written once, whoever saw the event and in whatever order the batches arrive.
CREATE TABLE bss.boot_stages (
    component_id  varchar(255) PRIMARY KEY REFERENCES smd.components (id) ON DELETE CASCADE,
    stage         smallint NOT NULL DEFAULT 0 CHECK (stage BETWEEN 0 AND 5),  -- 0 dhcp ... 5 ready
    stage_at      timestamptz,  -- when the node reached its current stage: "stuck for" counts from here
    dhcp_at       timestamptz,
    ipxe_at       timestamptz,
    script_at     timestamptz,
    kernel_at     timestamptz,
    cloud_init_at timestamptz,
    ready_at      timestamptz
);
CREATE INDEX boot_stages_stage_idx ON bss.boot_stages (stage, stage_at);
CREATE INDEX boot_stages_ready_idx ON bss.boot_stages (ready_at) WHERE ready_at IS NOT NULL;

-- One event on one node's stamps (index 1 = dhcp ... 6 = ready).  Stage -1 marks a new boot (the boot
-- path saw one start between two flushes).  Within a boot each stage keeps its first time; going back to
-- ipxe or script after a later stage, or asking meta-data again once ready (a boot from disk), starts a
-- new boot.  A lease moves no node back: Kea's lease file does not tell a reboot's new lease from a
-- renewal, and a renewal must not send a ready node back to dhcp.  The latest lease is kept; it is the
-- boot's dhcp when it came before the boot's first request (a node with nothing else is at dhcp), and a
-- new boot keeps it when it came after the old boot's last step.
CREATE FUNCTION bss.boot_stage_step(st timestamptz[], s integer, t timestamptz) RETURNS timestamptz[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    reached integer := 0;  -- the furthest boot-path stage of the current boot (1 ipxe .. 5 ready), 0: none
    i integer;
BEGIN
    FOR i IN REVERSE 6 .. 2 LOOP
        IF st[i] IS NOT NULL THEN reached := i - 1; EXIT; END IF;
    END LOOP;
    IF s = 0 THEN
        st[1] := greatest(st[1], t);  -- the latest lease; it does not move the stage
        RETURN st;
    END IF;
    IF s = -1 OR (s IN (1, 2) AND reached > s) OR (s = 3 AND reached = 5) THEN
        -- A new boot: a lease newer than the old boot's last step may be this boot's; older ones go.
        IF st[1] < greatest(st[2], st[3], st[4], st[5], st[6]) THEN st[1] := NULL; END IF;
        st := ARRAY[st[1], NULL, NULL, NULL, NULL, NULL]::timestamptz[];
        IF s = -1 THEN RETURN st; END IF;
    END IF;
    IF st[s + 1] IS NULL THEN st[s + 1] := t; END IF;
    RETURN st;
END $$;

-- Events (node, stage, unix time) of one batch, applied node by node in time order.  Rows are locked in
-- id order (two boot workers flushing at once wait for each other, never deadlock); nodes deleted
-- meanwhile are skipped.  Returns the rows written.
CREATE FUNCTION bss.apply_boot_stages(ids text[], stages integer[], ats float8[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    st timestamptz[];
    i integer;
    reached integer;
    written integer := 0;
BEGIN
    FOR r IN
        SELECT u.id, array_agg(u.stage ORDER BY u.at, u.stage) AS ss, array_agg(to_timestamp(u.at) ORDER BY u.at, u.stage) AS ts
        FROM unnest(ids, stages, ats) AS u(id, stage, at)
        WHERE EXISTS (SELECT 1 FROM smd.components c WHERE c.id = u.id)
        GROUP BY u.id ORDER BY u.id
    LOOP
        INSERT INTO bss.boot_stages (component_id) VALUES (r.id) ON CONFLICT DO NOTHING;
        SELECT ARRAY[dhcp_at, ipxe_at, script_at, kernel_at, cloud_init_at, ready_at] INTO st
        FROM bss.boot_stages WHERE component_id = r.id FOR UPDATE;
        FOR i IN 1 .. array_length(r.ss, 1) LOOP
            st := bss.boot_stage_step(st, r.ss[i], r.ts[i]);
        END LOOP;
        reached := 0;
        FOR i IN REVERSE 6 .. 1 LOOP
            IF st[i] IS NOT NULL THEN reached := i - 1; EXIT; END IF;
        END LOOP;
        UPDATE bss.boot_stages SET stage = reached, stage_at = st[reached + 1], dhcp_at = st[1], ipxe_at = st[2],
            script_at = st[3], kernel_at = st[4], cloud_init_at = st[5], ready_at = st[6]
        WHERE component_id = r.id;
        written := written + 1;
    END LOOP;
    RETURN written;
END $$;
