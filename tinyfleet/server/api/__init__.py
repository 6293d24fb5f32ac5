"""REST API: one router per resource; routes stay thin and call tinyfleet/server/services."""
