"""Regression tests for security findings: each failed before its fix."""
