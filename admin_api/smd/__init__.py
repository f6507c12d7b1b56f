"""Inventory (State Manager Data): components, Ethernet interfaces, groups and partitions."""
