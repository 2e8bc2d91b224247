"""`manage.py check --database default` proves the books, or fails.

- billing.E001: an account's balance differs from the sum of its ledger entries.
- billing.E002: an account's held credit differs from the sum of its active holds.
- billing.W001: an account's balance is negative (a warning; the hint says why).
- billing.E003: the books could not be read (database unreachable), so nothing is proved.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import ERROR, WARNING, CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections
from django.db.models import F, Model, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce

# Enough to act on; a wholesale breakage would otherwise print every account.
SHOWN_PER_CHECK = 20
# Runs of the checks remembered (billing.models.BooksCheck), newest first.
CHECKS_KEPT = 100


@register(Tags.database)
def check_books(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every balance is the sum of its ledger, every held amount the sum of its holds,
    and no balance is negative, on each database asked for. Like Django's own database
    checks it runs only with `--database` (and in `migrate`), so other commands never
    wait for the database."""
    return [issue for alias in databases or () for issue in _check_books_on(alias)]


def last_books_check(alias: str = "default") -> Any:
    """The latest recorded run of the books' checks on `alias` (a BooksCheck), or None."""
    from billing.models import BooksCheck

    return BooksCheck.objects.filter(database=alias).first()


def _check_books_on(alias: str) -> list[CheckMessage]:
    issues = _books_issues(alias)
    _record(alias, issues)
    return issues


def _record(alias: str, issues: list[CheckMessage]) -> None:
    """Keep when the books were last proved, and what was found, for the operator page."""
    from billing.models import BooksCheck

    try:
        if BooksCheck._meta.db_table not in connections[alias].introspection.table_names():
            return
        BooksCheck.objects.using(alias).create(
            database=alias,
            errors=sum(issue.level >= ERROR for issue in issues),
            warnings=sum(WARNING <= issue.level < ERROR for issue in issues),
            findings=[f"{issue.id}: {issue.msg}" for issue in issues][: SHOWN_PER_CHECK * 3],
        )
        stale = BooksCheck.objects.using(alias).filter(database=alias)[CHECKS_KEPT:]
        BooksCheck.objects.using(alias).filter(
            pk__in=list(stale.values_list("pk", flat=True))
        ).delete()
    except DatabaseError:
        # The issues say the books could not be read; there is nowhere to write either.
        return


def _books_issues(alias: str) -> list[CheckMessage]:
    from billing.models import Account, Hold, LedgerEntry

    try:
        if Account._meta.db_table not in connections[alias].introspection.table_names():
            # Before the first `migrate` (which runs these checks) there are no books yet.
            return []
        unledgered = _accounts_not_summing_to(alias, "balance_micro_usd", LedgerEntry)
        unexplained = _accounts_not_summing_to(alias, "held_micro_usd", Hold)
        negative = list(
            Account.objects.using(alias)
            .filter(balance_micro_usd__lt=0)
            .order_by("pk")
            .values_list("pk", "balance_micro_usd")[:SHOWN_PER_CHECK]
        )
    except DatabaseError as exc:
        return [
            Error(
                f"The books on database {alias!r} could not be checked: {exc}".strip(),
                hint="Is the database up and DATABASE_URL right? Books that cannot be read "
                "are not proved, so this check fails rather than report no issues.",
                id="billing.E003",
            )
        ]
    return [
        *(
            Error(
                f"Account {pk}: balance {balance} micro-USD differs from the sum of its "
                f"ledger entries ({total} micro-USD)",
                hint="A balance changed without its ledger entry (or an entry without its "
                "balance); only billing.ledger writes either, in one transaction.",
                id="billing.E001",
            )
            for pk, balance, total in unledgered
        ),
        *(
            Error(
                f"Account {pk}: held {held} micro-USD differs from the sum of its active "
                f"holds ({total} micro-USD)",
                hint="Credit is held that no in-flight request explains, or a hold lost its "
                "credit; only billing.ledger writes holds, and `sweepholds` cannot repair this.",
                id="billing.E002",
            )
            for pk, held, total in unexplained
        ),
        *(
            Warning(
                f"Account {pk}: balance is negative ({balance} micro-USD)",
                hint="A warning, not an error: the books can still be right. A refund of "
                "credit already spent leaves a real debt (its ledger entry is flagged) for "
                "the operator to settle, and `migrate`, which runs these checks, should not "
                "stop for it. `check --database default --fail-level WARNING` fails on it.",
                id="billing.W001",
            )
            for pk, balance in negative
        ),
    ]


def _accounts_not_summing_to(
    alias: str, column: str, rows: type[Model]
) -> list[tuple[int, int, int]]:
    """(account id, column, sum of its `rows`' amounts) where the two differ: one
    statement, so it reads one consistent snapshot while requests are in flight."""
    from billing.models import Account

    totals = (
        rows._default_manager.using(alias)
        .filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(total=Sum("amount_micro_usd"))
        .values("total")
    )
    return list(
        Account.objects.using(alias)
        .annotate(total=Coalesce(Subquery(totals), 0))
        .exclude(**{column: F("total")})
        .order_by("pk")
        .values_list("pk", column, "total")[:SHOWN_PER_CHECK]
    )


@register()
def check_holds_are_refreshed_before_they_expire(
    app_configs: Any = None, **kwargs: Any
) -> list[Error]:
    """A running call refreshes its hold every HOLD_REFRESH_SECONDS: it must be sooner
    than HOLD_TTL_SECONDS, or the sweeper takes live requests for dead ones."""
    refresh, ttl = settings.HOLD_REFRESH_SECONDS, settings.HOLD_TTL_SECONDS
    if 0 < refresh < ttl:
        return []
    return [
        Error(
            f"HOLD_REFRESH_SECONDS ({refresh}) must be above 0 and below HOLD_TTL_SECONDS ({ttl})",
            id="billing.E010",
        )
    ]


# A monthly spend cap reads the key's usage records of the current calendar month.
SHORTEST_RETENTION_DAYS = 32


@register()
def check_usage_retention(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Raw usage records must outlive the longest spend-cap period that reads them."""
    days = settings.USAGE_RETENTION_DAYS
    if days == 0 or days >= SHORTEST_RETENTION_DAYS:
        return []
    return [
        Error(
            f"USAGE_RETENTION_DAYS ({days}) must be 0 (keep for ever) or at least "
            f"{SHORTEST_RETENTION_DAYS}",
            hint="Monthly spend caps add up the key's usage records of the month; pruning "
            "them sooner would let a capped key spend its cap again.",
            id="billing.E011",
        )
    ]
