"""Daemons that act on the outside world: Kea reservations, Redfish discovery,
power transitions and the event outbox relay."""
