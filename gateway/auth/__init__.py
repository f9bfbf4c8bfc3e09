"""Authentication: every route but /health* needs an API key or a bearer token."""
