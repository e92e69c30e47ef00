"""HTTP routes of the core: identity, alarms, events, audit, operations, administrative units."""
