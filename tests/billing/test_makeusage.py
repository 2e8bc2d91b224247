"""`makeusage`: synthetic usage for measuring, with rollups that match and books that balance."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Max, Min, Sum
from django.utils import timezone

from billing import rollups
from billing.checks import check_books
from billing.models import Account, Purchase, UsageDay, UsageHour, UsageRecord
from billing.synthetic import COLUMNS
from tests.billing.test_rollups import raw_rows, rollup_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def made() -> str:
    out = io.StringIO()
    call_command("makeusage", "2000", "--accounts", "6", "--days", "20", stdout=out)
    return out.getvalue()


def test_it_makes_the_records_and_their_accounts(made):
    assert UsageRecord.objects.count() == 2000
    assert Account.objects.filter(user__email__startswith="synthetic-").count() == 6
    assert "2,000 usage records for 6 accounts over 20 days" in made


def test_the_records_spread_over_the_range_statuses_protocols_and_accounts(made):
    span = UsageRecord.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    assert span["first"] >= timezone.now() - timedelta(days=20, minutes=1)
    assert span["last"] - span["first"] > timedelta(days=19)
    statuses = set(UsageRecord.objects.values_list("status", flat=True))
    assert {"ok", "error"} <= statuses
    assert set(UsageRecord.objects.values_list("source", flat=True)) >= {"web"}
    per_account = sorted(
        UsageRecord.objects.values_list("account", flat=True).order_by().distinct()
    )
    assert len(per_account) == 6
    busiest = UsageRecord.objects.filter(account=per_account[0]).count()
    assert busiest > 2000 / 6  # Zipf: the first account makes more than its share


def test_its_rollups_equal_the_raw_rows(made):
    assert rollup_rows() == raw_rows()
    assert rollup_rows(rollups.DAILY) == raw_rows(rollups.DAILY)
    assert UsageHour.objects.aggregate(n=Sum("requests"))["n"] == 2000
    assert UsageDay.objects.aggregate(n=Sum("requests"))["n"] == 2000


def test_its_books_balance(made):
    assert Purchase.objects.exists()
    assert check_books(databases=["default"]) == []


@pytest.mark.parametrize("args", [["0"], ["10", "--accounts", "0"], ["10", "--days", "0"]])
def test_it_refuses_nothing_to_make(db, args):
    with pytest.raises(CommandError):
        call_command("makeusage", *args)


def test_repeated_records_keep_the_rollups_equal_to_the_raw_rows(db):
    if connection.vendor != "postgresql":
        with pytest.raises(CommandError, match="needs PostgreSQL"):
            call_command("makeusage", "10", "--repeat", "2")
        return
    call_command("makeusage", "300", "--accounts", "3", "--days", "5", "--repeat", "3", verbosity=0)

    assert UsageRecord.objects.count() == 1200
    assert UsageRecord.objects.filter(created_at__gt=timezone.now()).count() == 0
    assert rollup_rows() == raw_rows()
    assert rollup_rows(rollups.DAILY) == raw_rows(rollups.DAILY)


def test_the_generator_writes_every_column_a_record_requires():
    """COPY skips Django's defaults: a new NOT NULL field must be generated too."""
    required = {
        field.column
        for field in UsageRecord._meta.concrete_fields
        if not field.primary_key and not field.null
    }

    assert required <= set(COLUMNS)
