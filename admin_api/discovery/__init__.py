"""Discovery: targets, scans, drivers."""
