"""Alembic migrations of the backend schema (one history for SQLite and PostgreSQL)."""
