"""HTTP request and response bodies, one module per PRD resource."""
