"""The ledger's hand-written SQL, built from the models' `_meta`.

Reserving and settling are the hot path of every call, so they skip Django's query
compiler: billing.ledger runs the statements below. They rely on a small part of
Django's field API, all of it here and nowhere else:

- `Model._meta.concrete_fields`, `db_table`, `pk`, and each field's `column`,
  `primary_key`, `generated` and `has_db_default()`, to list the columns a row has;
- `Field.pre_save(obj, add=True)` then `Field.get_db_prep_save(value, connection)`,
  to turn an unsaved instance into the parameters a normal save() would send;
- `connection.ops.quote_name`, and `Model._state` (`adding`, `db`) to mark a row saved.

tests/billing/test_sql.py is the contract: the columns written here are the table's
(from introspection) and a row inserted here reads back exactly as one save() wrote.
It fails loudly when a Django upgrade or a model change breaks any of that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from billing import rollups
from billing.models import Account, Hold, LedgerEntry, UsageRecord

Quote = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Statements:
    """The hot path's statements that every vendor runs (with `%s` parameters)."""

    reserve: str
    """Hold `amount` on account `id` when `balance - held >= required` (the amount or
    more): rowcount 1 or 0."""
    release: str
    """Delete the hold of a request id, returning its amount (no row: already gone)."""
    balance: str
    """The account's balance."""
    settle: str
    """Charge, release the held amount, end unlimited mode below the floor."""


def statements(db: BaseDatabaseWrapper) -> Statements:
    """The hot path's statements, built once per database vendor."""
    return _statements_for(db.vendor, db.ops.quote_name)


@functools.cache
def _statements_for(vendor: str, quote: Quote) -> Statements:
    account, hold = quote(Account._meta.db_table), quote(Hold._meta.db_table)
    balance, held = quote("balance_micro_usd"), quote("held_micro_usd")
    unlimited, pk = quote("unlimited"), quote("id")
    return Statements(
        reserve=(
            f"UPDATE {account} SET {held} = {held} + %s "  # noqa: S608 - names from model meta
            f"WHERE {pk} = %s AND {balance} - {held} >= %s"
        ),
        release=(
            f"DELETE FROM {hold} WHERE {quote('request_id')} = %s "  # noqa: S608
            f"RETURNING {quote('amount_micro_usd')}"
        ),
        balance=f"SELECT {balance} FROM {account} WHERE {pk} = %s",  # noqa: S608
        settle=(
            f"UPDATE {account} SET {balance} = {balance} - %s, {held} = {held} - %s, "  # noqa: S608
            f"{unlimited} = CASE WHEN {unlimited} AND {balance} - %s < %s "
            f"THEN %s ELSE {unlimited} END WHERE {pk} = %s"
        ),
    )


@functools.cache
def reserve_statement(quote: Quote) -> tuple[str, tuple[Field, ...]]:
    """PostgreSQL: the conditional hold on the account and the hold row, one statement;
    no row is inserted (rowcount 0) when the account cannot cover the amount.

    Parameters: amount, account id, the credit the account must have available (the
    amount, or more), then values() of the Hold for the fields.
    """
    account = quote(Account._meta.db_table)
    balance, held, pk = quote("balance_micro_usd"), quote("held_micro_usd"), quote("id")
    insert, fields = insert_select(Hold, quote, "reserved", {})
    return (
        f"WITH reserved AS (UPDATE {account} SET {held} = {held} + %s "  # noqa: S608
        f"WHERE {pk} = %s AND {balance} - {held} >= %s RETURNING {pk}) "
        f"{insert}",
        fields,
    )


@functools.cache
def settle_statement(
    quote: Quote, flags: tuple[str, str]
) -> tuple[str, tuple[Field, ...], tuple[Field, ...], tuple[tuple[str, ...], ...]]:
    """PostgreSQL: settle() as one statement that returns the usage record's id, charge,
    uncharged amount and flags.

    Release the hold first, then lock the account row (the one-time filter on `released`
    orders the two, as the sweeper and the SQLite path do) and read its balance; charge
    the cost capped at the hold and at that balance; write the usage record and (for a
    charge) the ledger entry, and add the record to its rows of billing.rollups.ROLLUPS;
    update the account last. `flags` are the words for a missing hold and a capped charge.

    Parameters: request id, account id, cost, cost, hold amount, the caller's flags,
    values() of the UsageRecord and of the LedgerEntry for their fields, each rollup's
    increment for its keys (rollups.upsert_params), the unlimited mode floor, account id.
    """
    account, hold = quote(Account._meta.db_table), quote(Hold._meta.db_table)
    balance, held = quote("balance_micro_usd"), quote("held_micro_usd")
    amount, unlimited, pk = quote("amount_micro_usd"), quote("unlimited"), quote("id")
    hold_missing, capped = flags
    usage, usage_fields = insert_select(
        UsageRecord,
        quote,
        "charge",
        {
            "cost_micro_usd": "charge.amount",
            "uncharged_micro_usd": "charge.uncharged",
            "flags": "charge.flags",
        },
    )
    entry, entry_fields = insert_select(
        LedgerEntry, quote, "charge", {"amount_micro_usd": "-charge.amount"}
    )
    upserts = [rollups.upsert_statement(rollup, quote, "charge") for rollup in rollups.ROLLUPS]
    rollup_ctes = "".join(f"rollup_{n} AS ({upsert}), " for n, (upsert, _) in enumerate(upserts))
    rollup_keys = tuple(tuple(keys) for _, keys in upserts)
    statement = (
        f"WITH released AS (DELETE FROM {hold} WHERE {quote('request_id')} = %s "  # noqa: S608
        f"RETURNING {amount}), "
        f"locked AS (SELECT {balance} AS balance FROM {account} WHERE {pk} = %s "
        "AND (SELECT count(*) FROM released) >= 0 FOR UPDATE), "
        "capped AS (SELECT EXISTS (SELECT 1 FROM released) AS released, "
        f"(SELECT COALESCE(SUM({amount}), 0) FROM released) AS released_amount, "
        "%s::bigint AS cost, "
        "LEAST(%s::bigint, %s::bigint, GREATEST(locked.balance, 0)) AS amount, "
        "%s::text AS flags FROM locked), "
        "charge AS (SELECT released, released_amount, amount, cost - amount AS uncharged, "
        "concat_ws(' ', NULLIF(flags, ''), "
        f"CASE WHEN NOT released THEN '{hold_missing}' END, "
        f"CASE WHEN cost > amount THEN '{capped}' END) AS flags FROM capped), "
        f"usage AS ({usage} RETURNING {pk}), "
        f"entry AS ({entry} WHERE charge.amount > 0 RETURNING 1), "
        f"{rollup_ctes}"
        f"account AS (UPDATE {account} SET {balance} = {balance} - charge.amount, "
        f"{held} = {held} - charge.released_amount, "
        f"{unlimited} = CASE WHEN {unlimited} AND {balance} - charge.amount < %s "
        f"THEN false ELSE {unlimited} END FROM charge WHERE {account}.{pk} = %s "
        "RETURNING 1) "
        f"SELECT usage.{pk}, charge.amount, charge.uncharged, charge.flags FROM usage, charge"
    )
    return statement, usage_fields, entry_fields, rollup_keys


def insert_select(
    model: type[Model], quote: Quote, source: str, expressions: dict[str, str]
) -> tuple[str, tuple[Field, ...]]:
    """`INSERT INTO <model> (...) SELECT ... FROM <source>`: a parameter for each column
    but those in `expressions` (SQL over `source`); returns the parameters' fields."""
    columns = written(model)
    names = ", ".join(quote(column) for _, column in columns)
    selected = ", ".join(expressions.get(column, "%s") for _, column in columns)
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({names}) SELECT {selected} FROM {source}",  # noqa: S608
        tuple(f for f, column in columns if column not in expressions),
    )


def written(model: type[Model]) -> tuple[tuple[Field, str], ...]:
    """The model's columns but the primary key, with their fields, in order.

    A column the database computes (a generated field, a database default) cannot be
    sent as a parameter: such a field on these models is refused, not silently written.
    """
    columns = []
    for field in model._meta.concrete_fields:
        if field.primary_key or not field.column:
            continue
        if getattr(field, "generated", False) or field.has_db_default():
            raise ImproperlyConfigured(
                f"{model.__name__}.{field.name} is computed by the database; billing.sql "
                "writes every column itself and cannot insert this model"
            )
        columns.append((field, field.column))
    return tuple(columns)


def values(db: BaseDatabaseWrapper, obj: Model, fields: tuple[Field, ...]) -> list[Any]:
    """The parameters save() would send for `fields` of a new `obj` (defaults applied)."""
    return [f.get_db_prep_save(f.pre_save(obj, True), db) for f in fields]


@functools.cache
def _insert_statement(
    model: type[Model], vendor: str, quote: Quote
) -> tuple[str, tuple[Field, ...]]:
    columns = written(model)
    names = ", ".join(quote(column) for _, column in columns)
    marks = ", ".join(["%s"] * len(columns))
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({names}) VALUES ({marks}) "  # noqa: S608
        f"RETURNING {quote(model._meta.pk.attname)}",
        tuple(f for f, _ in columns),
    )


def insert(db: BaseDatabaseWrapper, cursor: Any, obj: Model) -> None:
    """INSERT one new row for `obj` and set its pk: Model.save() without the query compiler.

    Only for the append-only rows of the hot path (holds, usage records, ledger entries),
    which have no save() logic or signal receivers beyond the append-only check.
    """
    statement, fields = _insert_statement(type(obj), db.vendor, db.ops.quote_name)
    cursor.execute(statement, values(db, obj, fields))
    obj.pk = cursor.fetchone()[0]
    saved(obj, db)


def saved(obj: Model, db: BaseDatabaseWrapper) -> None:
    """Mark `obj` as a row of `db`, as save() does once it has inserted it."""
    obj._state.adding = False
    obj._state.db = db.alias
