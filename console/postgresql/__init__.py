"""Django's PostgreSQL backend that asks no connection of the pool while the database is
away (gateway.outages): the ENGINE settings.py sets for a postgres:// DATABASE_URL."""
