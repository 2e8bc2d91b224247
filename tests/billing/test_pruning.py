"""Pruning raw usage records: old ones go in bounded batches, the rollups stay."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from billing import rollups
from billing.checks import check_usage_retention
from billing.models import UsageHour, UsageRecord
from billing.retention import prune_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged(customer):
    """Seven records: five 100 days old, two from today; rolled up."""
    now = timezone.now()
    for n in range(7):
        UsageRecord.objects.create(
            request_id=f"req_{n}",
            account=customer.account,
            api_key=customer.api_key,
            model="gpt-test",
            cost_micro_usd=100,
            created_at=now - timedelta(days=100 if n < 5 else 0, minutes=n),
        )
    rollups.rebuild(now - timedelta(days=101), now + timedelta(hours=1))
    return customer


def test_records_past_retention_are_deleted_in_batches(aged, settings):
    settings.USAGE_RETENTION_DAYS = 90

    pruned = prune_usage(batch=2)

    assert (pruned.deleted, pruned.batches) == (5, 3)
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["req_5", "req_6"]


def test_the_rollups_keep_the_history_of_pruned_records(aged, settings):
    settings.USAGE_RETENTION_DAYS = 90
    before = UsageHour.objects.values_list("requests", flat=True)
    total = sum(before)

    prune_usage()

    assert sum(UsageHour.objects.values_list("requests", flat=True)) == total == 7


def test_a_bound_on_batches_stops_early(aged):
    pruned = prune_usage(days=90, batch=2, max_batches=1)

    assert (pruned.deleted, pruned.batches) == (2, 1)
    assert UsageRecord.objects.count() == 5


def test_records_of_a_key_with_a_lifetime_cap_are_kept(aged):
    aged.api_key.spend_cap_micro_usd = 5_000_000
    aged.api_key.spend_cap_period = "total"
    aged.api_key.save()

    assert prune_usage(days=90).deleted == 0


def test_no_retention_keeps_everything(aged, settings):
    settings.USAGE_RETENTION_DAYS = 0

    assert prune_usage().cutoff is None
    assert UsageRecord.objects.count() == 7


def test_the_command_reports_what_it_deleted(aged):
    out = io.StringIO()

    call_command("pruneusage", "--days", "90", "--batch", "3", stdout=out)

    assert "Deleted 5 usage records" in out.getvalue()
    assert "2 batches" in out.getvalue()


@pytest.mark.parametrize("args", [["--days", "7"], ["--batch", "0"], ["--max-batches", "0"]])
def test_the_command_refuses_bad_bounds(aged, args):
    with pytest.raises(CommandError):
        call_command("pruneusage", *args)
    assert UsageRecord.objects.count() == 7


@pytest.mark.parametrize(("days", "ok"), [(0, True), (32, True), (400, True), (7, False)])
def test_a_retention_shorter_than_a_month_is_refused(settings, days, ok):
    settings.USAGE_RETENTION_DAYS = days

    assert (check_usage_retention() == []) is ok
