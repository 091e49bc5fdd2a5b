"""The data layer shared by every subsystem: SQLite by default, PostgreSQL by URL."""
