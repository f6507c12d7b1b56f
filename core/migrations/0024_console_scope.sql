-- The serial console (/console/v1/nodes/{id}) types into a node as root would: its own scope, granted to
-- the admin role only.  Other roles get it by an explicit edit (PUT /auth/v1/roles/{name}).
UPDATE auth.roles SET scopes = array_append(scopes, 'write:console'), updated_at = now()
WHERE name = 'admin' AND NOT 'write:console' = ANY(scopes);
