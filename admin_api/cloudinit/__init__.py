"""cloud-init payloads by scope."""
