"""Django's PostgreSQL backend, subclassed as Django documents, so that an outage of the
database is noticed at once and waited on by nobody (gateway.outages):

- while the database is known to be away, a connection is refused at once (the probe
  asks for it once a second) instead of every query waiting DB_POOL_TIMEOUT on a pool
  that cannot connect, each holding one of the worker's threads while it waits;
- the pool does not retry a failed connection in the background, seconds apart: its
  second failed attempt in a row reports the outage, which closes the pool, so the
  queries already waiting on it fail at once too.

And psycopg keeps the parsed form of longer statements: it caches a statement's
conversion to PostgreSQL's placeholders only up to 4096 bytes and 50 parameters, and
the settlement's one statement (billing.sql) has 7 KB and 95, so every settlement
parsed it again: 95 µs of a request's 2.7 ms of CPU, and more under load
(`psycopg._queries`, private: tests/console/test_postgresql.py checks it against the
pinned release).
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg
import psycopg._queries
from django.db import DEFAULT_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

from gateway import outages

# Above the settlement statement's size and parameter count (billing.sql), with room.
psycopg._queries.MAX_CACHED_STATEMENT_LENGTH = 16_384
psycopg._queries.MAX_CACHED_STATEMENT_PARAMS = 200


def _could_not_connect(pool: ConnectionPool) -> None:
    # psycopg_pool calls this while handling the connection error: name it if it can.
    error = sys.exc_info()[1] or psycopg.OperationalError(f"{pool.name} could not connect")
    outages.note(outages.DATABASE, error)


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS) -> None:
        pool = settings_dict.get("OPTIONS", {}).get("pool")
        if isinstance(pool, dict):
            pool.setdefault("reconnect_timeout", 0)
            pool.setdefault("reconnect_failed", _could_not_connect)
        super().__init__(settings_dict, alias)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        outages.refuse_connection_while_away()
        return super().get_new_connection(conn_params)
