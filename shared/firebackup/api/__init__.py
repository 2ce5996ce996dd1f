"""HTTP API (/v1): routes table, schemas, OpenAPI, and the WSGI app factory."""
