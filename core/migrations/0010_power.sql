-- Power transitions (one request over many nodes), their per-node tasks, and last known power state.
CREATE SCHEMA power;

CREATE TABLE power.transitions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    operation    text NOT NULL CHECK (operation IN ('On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart',
                                                    'ForceRestart', 'Nmi')),
    state        text NOT NULL DEFAULT 'new'
                 CHECK (state IN ('new', 'in-progress', 'completed', 'abort-signaled', 'aborted')),
    requested_by text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX transitions_open_idx ON power.transitions (created_at) WHERE state IN ('new', 'in-progress',
                                                                                 'abort-signaled');

-- One node's part of a transition.  `step` walks the operation's steps (a restart is off, then on);
-- `sending` is written before a request goes out, so a restarted engine knows it may have been sent.
CREATE TABLE power.tasks (
    transition_id   uuid NOT NULL REFERENCES power.transitions (id) ON DELETE CASCADE,
    node_id         varchar(255) NOT NULL,    -- no foreign key: the record outlives a deleted node
    bmc_id          varchar(255),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'verifying', 'succeeded', 'failed', 'aborted')),
    step            smallint NOT NULL DEFAULT 0,
    attempts        integer NOT NULL DEFAULT 0,
    sends           integer NOT NULL DEFAULT 0,   -- reset requests the BMC accepted
    unconfirmed     boolean NOT NULL DEFAULT false, -- resumed from `sending`: verify before sending again
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    verify_until    timestamptz,
    detail          text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transition_id, node_id)
);
CREATE INDEX tasks_active_idx ON power.tasks (next_attempt_at) WHERE state IN ('pending', 'sending', 'verifying');
CREATE INDEX tasks_node_idx ON power.tasks (node_id);

CREATE TABLE power.status (
    node_id          varchar(255) PRIMARY KEY REFERENCES smd.components (id) ON DELETE CASCADE,
    power_state      text NOT NULL CHECK (power_state IN ('on', 'off', 'undefined')),
    management_state text NOT NULL CHECK (management_state IN ('available', 'unavailable')),
    error            text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION power.notify_transitions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_power', '');
    RETURN NULL;
END $$;
-- Only for what the engine must act on (its own state changes would wake it in a loop).
CREATE TRIGGER transitions_notify AFTER INSERT OR UPDATE OF state ON power.transitions
    FOR EACH ROW WHEN (NEW.state IN ('new', 'abort-signaled')) EXECUTE FUNCTION power.notify_transitions();
