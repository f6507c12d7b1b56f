-- The X-Request-ID of the request that made each audited change: the admin API's log lines carry the same
-- id, so an entry leads to the lines of its request (and an MCP call or console action to its every step).
ALTER TABLE auth.audit ADD COLUMN request_id text;
CREATE INDEX audit_request_id ON auth.audit (request_id) WHERE request_id IS NOT NULL;
