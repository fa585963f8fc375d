"""The HTTP side: the ASGI app, its routes and error table, searches, the caches in front of the store,
the operators' endpoints and the API's documentation."""
