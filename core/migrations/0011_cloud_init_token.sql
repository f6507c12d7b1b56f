-- Each node's cloud-init seed token: the secret part of the seed URL that only
-- the node's own boot script carries (ds=nocloud-net;s=<boot URL>/cloud-init/<id>/<token>/),
-- so that reading a node's cloud-init by id needs more than its id (see hotpath/_dispatch.pyx).
-- 128 random bits, hex; rotate one node with
--   UPDATE smd.components SET cloud_init_token = DEFAULT WHERE id = '<id>'
-- (or the admin API: POST /hsm/v2/State/Components/<id>/cloud-init-seed/rotate); the boot
-- path hears the change like any other and renders the new seed URL within milliseconds.
-- gen_random_uuid() draws from the server's strong random source.
ALTER TABLE smd.components
    ADD COLUMN cloud_init_token text NOT NULL
        DEFAULT left(encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')), 'hex'), 32)
        CHECK (cloud_init_token ~ '^[0-9a-zA-Z_-]{16,128}$');
