-- Authentication and authorisation: signing keys, roles, service accounts,
-- policies for outside identities, revocations, device credentials, audit.
CREATE SCHEMA auth;

-- RS256 signing keys.  The private key is stored encrypted (AES-GCM, key from
-- CHAMICORE_SECRET_KEY); a retired key stays published until its tokens expire.
CREATE TABLE auth.signing_keys (
    kid             text PRIMARY KEY,
    private_key_enc bytea NOT NULL,
    public_jwk      jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz,
    publish_until   timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_active ON auth.signing_keys ((true)) WHERE retired_at IS NULL;

CREATE TABLE auth.roles (
    name        varchar(64) PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,63}$'),
    description text NOT NULL DEFAULT '',
    scopes      text[] NOT NULL,
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO auth.roles (name, description, scopes, builtin) VALUES
    ('admin', 'everything, including auth and the audit log',
     ARRAY['read:smd', 'write:smd', 'read:bss', 'write:bss', 'read:cloudinit', 'write:cloudinit',
           'read:credentials', 'write:credentials', 'read:auth', 'write:auth', 'read:audit',
           'read:discovery', 'write:discovery', 'read:power', 'write:power'], true),
    ('operator', 'inventory, boot and cloud-init changes, power and discovery; no secrets, no auth',
     ARRAY['read:smd', 'write:smd', 'read:bss', 'write:bss', 'read:cloudinit', 'write:cloudinit',
           'read:discovery', 'write:discovery', 'read:power', 'write:power', 'write:credentials'], true),
    ('viewer', 'read only, no secrets',
     ARRAY['read:smd', 'read:bss', 'read:cloudinit', 'read:discovery', 'read:power'], true);

CREATE TABLE auth.service_accounts (
    client_id   varchar(255) PRIMARY KEY
                CHECK (client_id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    description text NOT NULL DEFAULT '',
    secret_hash text NOT NULL,          -- scrypt, salted; the secret itself is never stored
    roles       text[] NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Outside identities (token exchange): issuer + subject -> roles.
CREATE TABLE auth.policies (
    id          varchar(255) PRIMARY KEY,
    issuer      text NOT NULL,
    subject     text NOT NULL,
    roles       text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (issuer, subject)
);

-- A row revokes one token (jti) or every token of a subject issued before revoked_at.
CREATE TABLE auth.revocations (
    id          bigserial PRIMARY KEY,
    jti         text UNIQUE,
    subject     text,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,   -- after this no token it could match is valid: prunable
    CHECK (num_nonnulls(jti, subject) = 1)
);

CREATE FUNCTION auth.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chamicore_auth', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER revocations_notify AFTER INSERT ON auth.revocations
    FOR EACH STATEMENT EXECUTE FUNCTION auth.notify_change();
CREATE TRIGGER signing_keys_notify AFTER INSERT OR UPDATE OR DELETE ON auth.signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION auth.notify_change();

-- BMC and device credentials; the secret is AES-GCM encrypted (CHAMICORE_CREDENTIALS_KEY).
CREATE TABLE auth.credentials (
    id          varchar(255) PRIMARY KEY
                CHECK (id ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$'),
    username    text NOT NULL,
    secret_enc  bytea NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth.audit (
    seq        bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    resource   text NOT NULL,
    status     integer NOT NULL,
    outcome    text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    source_ip  inet,
    detail     jsonb
);
CREATE INDEX audit_at_idx ON auth.audit (at);
CREATE INDEX audit_actor_idx ON auth.audit (actor, at);
