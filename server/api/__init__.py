"""REST API: one router per resource; routes stay thin and call server/services."""
