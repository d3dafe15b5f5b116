"""simwallet.gateway.store: schema, engines and migrations for SQLite and PostgreSQL."""
