-- What each sync daemon replica is doing, written by the replica itself.
CREATE SCHEMA sync;

CREATE TABLE sync.status (
    job           text NOT NULL,
    instance      text NOT NULL,            -- host:pid of the replica
    state         text NOT NULL CHECK (state IN ('starting', 'standby', 'active', 'stopped')),
    last_success  timestamptz,
    last_error    text,
    last_error_at timestamptz,
    counts        jsonb NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, instance)
);
