"""The PostgreSQL backend (console.postgresql) and the psycopg internals it relies on:
the settlement statement's conversion is kept, not parsed again on every settlement."""

from __future__ import annotations

import psycopg._queries
from django.db import connection
from psycopg.adapt import Transformer

import console.postgresql.base  # noqa: F401 - raises the limits, whatever the database
from billing import sql
from billing.ledger import SETTLEMENT_FLAGS
from tests.contracts import assert_reads, pinned

CHECKED = "3.3.9"  # the psycopg release console/postgresql/base.py was written against
USER = "console/postgresql/base.py"


def test_psycopg_is_pinned_to_the_release_the_backend_was_checked_against():
    assert str(pinned("psycopg").specifier) == f"=={CHECKED}", (
        f"pyproject.toml must pin psycopg exactly: {USER} sets its private "
        f"psycopg._queries limits (checked against psycopg {CHECKED})"
    )


def test_psycopg_still_reads_the_statement_cache_limits_where_it_converts_a_query():
    for query in (psycopg._queries.PostgresQuery, psycopg._queries.PostgresClientQuery):
        for fragment in ("MAX_CACHED_STATEMENT_LENGTH", "MAX_CACHED_STATEMENT_PARAMS"):
            assert_reads(query.convert, fragment, distribution="psycopg", user=USER)


def test_the_settlement_statement_fits_the_raised_limits():
    statement, *_ = sql.settle_statement(connection.ops.quote_name, SETTLEMENT_FLAGS)

    assert len(statement.encode()) <= psycopg._queries.MAX_CACHED_STATEMENT_LENGTH
    assert statement.count("%s") <= psycopg._queries.MAX_CACHED_STATEMENT_PARAMS


def test_the_settlement_statement_is_converted_once_then_reused():
    statement, *_ = sql.settle_statement(connection.ops.quote_name, SETTLEMENT_FLAGS)
    params = [0] * statement.count("%s")
    query = psycopg._queries.PostgresClientQuery(Transformer())
    query.convert(statement, params)
    hits = psycopg._queries._query2pg_client.cache_info().hits

    query.convert(statement, params)

    assert psycopg._queries._query2pg_client.cache_info().hits == hits + 1
