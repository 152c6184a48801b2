"""HTTP routes: thin handlers that validate input and call services."""
