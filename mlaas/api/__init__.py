"""The HTTP API: thin Flask routes over mlaas services."""
