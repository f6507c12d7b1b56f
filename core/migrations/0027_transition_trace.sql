-- The trace of the request that asked for a transition (a W3C traceparent, or NULL when that request was
-- not traced), so that the power engine's task spans, which run later in the sync daemon, join it.
ALTER TABLE power.transitions ADD COLUMN traceparent text CHECK (octet_length(traceparent) <= 55);
