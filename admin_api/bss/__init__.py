"""Boot Script Service: boot parameters and boot-path telemetry."""
