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
) WITH (fillfactor = 70);
-- No index but the key, and room left on each page: a flush rewrites every node it carries, and with
-- nothing indexed changing PostgreSQL updates a row in place on its page (HOT), with no index to touch.
-- The admin API's counts and stuck lists read the whole table: ~100 bytes a node, a few ms at 100k.

-- One batch, one row per node (unix times, NULL where absent): where a new boot began in it (the boot path
-- saw one begin between two flushes; what it had of the boot before is not sent), the latest lease (Kea),
-- and the first time of each stage ipxe .. ready in it, applied to each node's current boot in one
-- statement.  The rules:
-- * within a boot, each stage keeps its first time;
-- * a batch begins a new boot when it says so, when its earliest stage is ipxe or script and the node had
--   gone past it, or when it asks meta-data (kernel-booted) of a node that was ready (a boot from disk);
-- * a lease moves no node back: Kea's lease file does not tell a reboot's new lease from a renewal, and a
--   renewal must not send a ready node back to dhcp.  The latest lease is kept; a node with nothing else is
--   at dhcp, and a new boot keeps the lease when it came after the old boot's last step (it is the new one's).
-- Set-based (no loop per node): a flush after a storm carries thousands of nodes.  The rows are locked in
-- id order first, so the latest version of each is merged whoever wrote it meanwhile.  Nodes deleted
-- meanwhile are skipped.  Returns the rows written.
-- enable_seqscan off: the table is empty before the first storm (no statistics yet), and the planner then
-- joins the batch to it by scanning it once per node, minutes for 10k nodes; the key's index is always right.
CREATE FUNCTION bss.apply_boot_stages(ids text[], began float8[], lease float8[], ipxe float8[], script float8[],
                                      kernel float8[], cloud_init float8[], ready float8[]) RETURNS integer
LANGUAGE sql SET enable_seqscan = off AS $$
INSERT INTO bss.boot_stages (component_id)
SELECT u.id FROM unnest(ids) AS u(id)
WHERE EXISTS (SELECT 1 FROM smd.components c WHERE c.id = u.id)
ORDER BY u.id
ON CONFLICT DO NOTHING;

WITH b AS (
    SELECT u.id, to_timestamp(u.began) AS began, to_timestamp(u.lease) AS lease, to_timestamp(u.ipxe) AS ipxe,
           to_timestamp(u.script) AS script, to_timestamp(u.kernel) AS kernel,
           to_timestamp(u.cloud_init) AS cloud_init, to_timestamp(u.ready) AS ready
    FROM unnest(ids, began, lease, ipxe, script, kernel, cloud_init, ready)
         AS u(id, began, lease, ipxe, script, kernel, cloud_init, ready)
), o AS (
    SELECT s.* FROM bss.boot_stages s WHERE s.component_id = ANY(ids) ORDER BY s.component_id FOR UPDATE
), j AS (
    SELECT o.*, b.*, least(b.ipxe, b.script, b.kernel, b.cloud_init, b.ready) AS first_at
    FROM o JOIN b ON b.id = o.component_id
), k AS (
    SELECT j.*, (j.began IS NOT NULL
                 OR (j.ipxe = j.first_at AND coalesce(j.script_at, j.kernel_at, j.cloud_init_at, j.ready_at) IS NOT NULL)
                 OR (j.script = j.first_at AND j.ipxe IS NULL
                     AND coalesce(j.kernel_at, j.cloud_init_at, j.ready_at) IS NOT NULL)
                 OR (j.kernel IS NOT NULL AND j.ready_at IS NOT NULL)) AS new_boot
    FROM j
), n AS (
    SELECT k.component_id AS id,
           greatest(CASE WHEN NOT k.new_boot OR k.dhcp_at >= coalesce(
                             greatest(k.ipxe_at, k.script_at, k.kernel_at, k.cloud_init_at, k.ready_at), '-infinity')
                         THEN k.dhcp_at END, k.lease) AS dhcp_at,
           CASE WHEN k.new_boot THEN k.ipxe ELSE coalesce(k.ipxe_at, k.ipxe) END AS ipxe_at,
           CASE WHEN k.new_boot THEN k.script ELSE coalesce(k.script_at, k.script) END AS script_at,
           CASE WHEN k.new_boot THEN k.kernel ELSE coalesce(k.kernel_at, k.kernel) END AS kernel_at,
           CASE WHEN k.new_boot THEN k.cloud_init ELSE coalesce(k.cloud_init_at, k.cloud_init) END AS cloud_init_at,
           CASE WHEN k.new_boot THEN k.ready ELSE coalesce(k.ready_at, k.ready) END AS ready_at
    FROM k
), written AS (
    UPDATE bss.boot_stages t SET
        stage = CASE WHEN n.ready_at IS NOT NULL THEN 5 WHEN n.cloud_init_at IS NOT NULL THEN 4
                     WHEN n.kernel_at IS NOT NULL THEN 3 WHEN n.script_at IS NOT NULL THEN 2
                     WHEN n.ipxe_at IS NOT NULL THEN 1 ELSE 0 END,
        stage_at = coalesce(n.ready_at, n.cloud_init_at, n.kernel_at, n.script_at, n.ipxe_at, n.dhcp_at),
        dhcp_at = n.dhcp_at, ipxe_at = n.ipxe_at, script_at = n.script_at, kernel_at = n.kernel_at,
        cloud_init_at = n.cloud_init_at, ready_at = n.ready_at
    FROM n WHERE t.component_id = n.id
    RETURNING 1
)
SELECT count(*)::integer FROM written;
$$;
