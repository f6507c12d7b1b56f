"""The `chamicore` command: the one piece that knows every service."""
