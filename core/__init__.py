"""Chamicore's shared kernel: configuration, database, identity rules, problems.

core imports nothing from hotpath, admin_api, sync or cli.
"""
