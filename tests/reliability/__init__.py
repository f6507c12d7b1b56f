"""Fault injection against the real parts."""
