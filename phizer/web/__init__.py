"""HTTP: the front and worker applications, the protocol between them, admin endpoints."""
