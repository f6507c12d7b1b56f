-- Transactional outbox: CloudEvents written with the change, relayed to NATS later.
CREATE SCHEMA events;

CREATE TABLE events.outbox (
    seq             bigserial PRIMARY KEY,
    id              uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    source          text NOT NULL,
    type            text NOT NULL,
    subject         text,
    time            timestamptz NOT NULL DEFAULT now(),
    datacontenttype text NOT NULL DEFAULT 'application/json',
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX outbox_unsent_idx ON events.outbox (seq) WHERE sent_at IS NULL;
