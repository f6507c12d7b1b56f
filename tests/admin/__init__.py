"""The admin API: in-process against a fresh database, or as a real server."""
