"""Authentication and authorisation of the admin API: signing keys, tokens,
service accounts, roles, policies, revocation, device credentials, audit."""
