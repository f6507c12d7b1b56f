-- People: local user accounts (username + password) and the web console's
-- server-side sessions.  A user holds roles as a service account does; the
-- password is hashed like a client secret (scrypt, salted), never stored.
CREATE TABLE auth.users (
    username      varchar(64) PRIMARY KEY CHECK (username ~ '^[a-z][a-z0-9._-]{0,63}$'),
    display_name  text NOT NULL DEFAULT '' CHECK (length(display_name) <= 255),
    password_hash text NOT NULL,
    roles         text[] NOT NULL DEFAULT '{}',
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- A session is known by the SHA-256 of its cookie (the cookie itself is never
-- stored); it carries the CSRF token every change must send back.  Deleting a
-- user, disabling it or changing its password or roles ends its sessions.
CREATE TABLE auth.sessions (
    id_hash     bytea PRIMARY KEY,
    username    varchar(64) NOT NULL REFERENCES auth.users ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,   -- the absolute timeout
    source_ip   inet,
    user_agent  text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_user ON auth.sessions (username);
CREATE INDEX sessions_by_expiry ON auth.sessions (expires_at);
