"""Chamicore's shared kernel: configuration, database, identity rules, problems,
and the inventory's one write layer (inventory.py), which the admin API and the
sync daemons (discovery, power) both write through.

core imports nothing from hotpath, admin_api, sync or cli.
"""
