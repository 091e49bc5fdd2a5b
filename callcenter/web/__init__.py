"""The web subsystem: HTTP for operations (health, metrics) and, later, the APIs."""
