"""The admin REST API (Starlette + msgspec + asyncpg): where admins write inventory,
boot parameters and cloud-init payloads.  Inventory writes go through core.inventory,
the write layer the sync daemons use too (discovery registering hardware, power
recording a verified state)."""
