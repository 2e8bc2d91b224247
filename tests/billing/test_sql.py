"""The contract of billing/sql.py with Django's field API: it fails loudly when a Django
upgrade or a model change makes the hand-written ledger SQL write something else than
a normal save() would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models
from django.db.models import Model
from django.test.utils import isolate_apps

from billing import rollups, sql
from billing.ledger import SETTLEMENT_FLAGS
from billing.models import Account, Hold, LedgerEntry, UsageRecord

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 4, 5, 6, 7, 890_123, tzinfo=UTC)


def table_columns(model: type[Model]) -> list[str]:
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, model._meta.db_table)
    return [column.name for column in description]


def raw_row(model: type[Model], pk: int) -> dict[str, Any]:
    """The row as the database stores it, column by column (no field conversion)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {quote(model._meta.db_table)} WHERE {quote('id')} = %s",
            [pk],
        )
        names = [column[0] for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def hold(customer: Any, n: int) -> Hold:
    return Hold(
        account_id=customer.account.pk,
        api_key_id=customer.api_key.pk,
        request_id=f"req_contract_{n}",
        amount_micro_usd=1_234,
        created_at=AT,
        expires_at=AT + timedelta(seconds=900),
        progress={"cost": 77, "usage": {"model": "demo", "ttft_ms": None, "stream": True}},
    )


def usage_record(customer: Any, n: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_contract_{n}",
        account_id=customer.account.pk,
        api_key_id=customer.api_key.pk,
        source=UsageRecord.Source.WEB,
        model="demo",
        provider="démo ☃",
        stream=True,
        prompt_tokens=11,
        completion_tokens=22,
        cost_micro_usd=333,
        reserved_micro_usd=444,
        uncharged_micro_usd=5,
        flags="capped usage_suspect",
        ttft_ms=None,
        status=UsageRecord.Status.CANCELLED,
        created_at=AT,
    )


def minimal_usage_record(customer: Any, n: int) -> UsageRecord:
    """Only what settle() always sets: every other column takes its field's default."""
    return UsageRecord(
        request_id=f"req_minimal_{n}",
        account_id=customer.account.pk,
        model="demo",
        created_at=AT,
    )


def ledger_entry(customer: Any, n: int) -> LedgerEntry:
    return LedgerEntry(
        account_id=customer.account.pk,
        kind=LedgerEntry.Kind.USAGE,
        amount_micro_usd=-333,
        idempotency_key=f"usage:req_contract_{n}",
        memo="demo req_contract",
        created_at=AT,
    )


ROWS: dict[str, Callable[[Any, int], Model]] = {
    "hold": hold,
    "usage_record": usage_record,
    "minimal_usage_record": minimal_usage_record,
    "ledger_entry": ledger_entry,
}
UNIQUE = {"id", "request_id", "idempotency_key"}


@pytest.mark.parametrize("model", [Hold, UsageRecord, LedgerEntry], ids=lambda m: m.__name__)
def test_the_columns_it_writes_are_the_tables_columns(model: type[Model]) -> None:
    columns = [column for _, column in sql.written(model)]

    assert sorted([model._meta.pk.column, *columns]) == sorted(table_columns(model))
    assert len(set(columns)) == len(columns)


def test_the_columns_its_statements_name_are_the_tables() -> None:
    named = {
        Account: {"id", "balance_micro_usd", "held_micro_usd", "unlimited"},
        Hold: {"request_id", "amount_micro_usd"},
    }
    quote = connection.ops.quote_name
    statements = sql.statements(connection)
    text = " ".join([statements.reserve, statements.release, statements.balance, statements.settle])

    for model, columns in named.items():
        assert columns <= set(table_columns(model))
        assert quote(model._meta.db_table) in text
        assert all(quote(column) in text for column in columns)


@pytest.mark.parametrize("make", ROWS.values(), ids=ROWS.keys())
def test_a_row_it_inserts_reads_back_as_the_row_save_writes(
    customer: Any, make: Callable[[Any, int], Model]
) -> None:
    by_sql, by_save = make(customer, 1), make(customer, 2)

    with connection.cursor() as cursor:
        sql.insert(connection, cursor, by_sql)
    by_save.save()

    assert by_sql.pk is not None and by_sql.pk != by_save.pk
    assert (by_sql._state.adding, by_sql._state.db) == (False, connection.alias)
    model = type(by_sql)
    stored, saved = raw_row(model, by_sql.pk), raw_row(model, by_save.pk)
    assert {k: v for k, v in stored.items() if k not in UNIQUE} == {
        k: v for k, v in saved.items() if k not in UNIQUE
    }
    fields = [f.attname for f in model._meta.concrete_fields if f.attname not in UNIQUE]
    read = model.objects.filter(pk__in=[by_sql.pk, by_save.pk]).order_by("pk")
    first, second = ([getattr(row, name) for name in fields] for row in read.only(*fields))
    assert first == second
    assert first == [getattr(by_sql, name) for name in fields]


def test_a_row_it_inserted_is_a_saved_row_to_django(customer: Any) -> None:
    entry = ledger_entry(customer, 3)

    with connection.cursor() as cursor:
        sql.insert(connection, cursor, entry)

    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    entry.refresh_from_db()
    assert entry.amount_micro_usd == -333


def test_the_parameters_it_sends_follow_the_fields_of_its_statements() -> None:
    statement, usage_fields, entry_fields, rollup_keys = sql.settle_statement(
        connection.ops.quote_name, SETTLEMENT_FLAGS
    )
    reserve, hold_fields = sql.reserve_statement(connection.ops.quote_name)

    # Every column is a parameter but the ones the statement computes.
    computed = {"cost_micro_usd", "uncharged_micro_usd", "flags"}
    assert [f.column for f in usage_fields] == [
        column for _, column in sql.written(UsageRecord) if column not in computed
    ]
    assert [f.column for f in entry_fields] == [
        column for _, column in sql.written(LedgerEntry) if column != "amount_micro_usd"
    ]
    assert [f for f, _ in sql.written(Hold)] == list(hold_fields)
    # Each rollup's columns, but the charge and what it left (computed too).
    assert rollup_keys == tuple(
        tuple(c for c in rollup.columns if c not in rollups.CHARGED) for rollup in rollups.ROLLUPS
    )
    rollup_params = sum(len(keys) for keys in rollup_keys)
    assert statement.count("%s") == 8 + len(usage_fields) + len(entry_fields) + rollup_params
    assert reserve.count("%s") == 3 + len(hold_fields)


def test_a_column_the_database_computes_is_refused_not_written() -> None:
    with isolate_apps("billing"):

        class Computed(models.Model):
            amount = models.BigIntegerField(db_default=0)

            class Meta:
                app_label = "billing"

            def __str__(self) -> str:
                return str(self.amount)

        with pytest.raises(ImproperlyConfigured, match=r"Computed\.amount"):
            sql.written(Computed)
