"""The admin REST API (Starlette + msgspec + asyncpg): the only writer of inventory,
boot parameters and cloud-init payloads."""
