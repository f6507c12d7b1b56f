"""Whole-node operations across domains: bulk import, provisioning, decommissioning."""
