"""Daemons that act on the outside world: Kea reservations, Redfish discovery,
power transitions and the event outbox relay.  What they write to the inventory
goes through core.inventory, as the admin API's writes do."""
