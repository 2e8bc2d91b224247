"""Pruning raw usage records older than USAGE_RETENTION_DAYS (`manage.py pruneusage`).

In batches of a few thousand rows, each its own short transaction found through the
created_at index, so pruning a year of records never holds a long lock or a huge
transaction against the settlements writing new ones. The hourly rollups stay: the
dashboards keep their history. Records of keys with a lifetime spend cap are kept,
since that cap adds them all up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, SpendPeriod
from billing.models import UsageRecord


@dataclass(frozen=True, slots=True)
class Pruned:
    deleted: int
    batches: int
    cutoff: datetime | None


def prune_usage(
    *,
    days: int | None = None,
    batch: int = 5000,
    max_batches: int | None = None,
    pause: float = 0.0,
    now: datetime | None = None,
) -> Pruned:
    """Delete usage records created more than `days` (USAGE_RETENTION_DAYS) ago, `batch`
    at a time, at most `max_batches` batches, sleeping `pause` seconds between them."""
    days = settings.USAGE_RETENTION_DAYS if days is None else days
    if days <= 0:
        return Pruned(0, 0, None)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    lifetime_capped = list(
        ApiKey.objects.filter(
            spend_cap_period=SpendPeriod.TOTAL, spend_cap_micro_usd__isnull=False
        ).values_list("pk", flat=True)
    )
    old = UsageRecord.objects.filter(created_at__lt=cutoff).exclude(api_key_id__in=lifetime_capped)
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            ids = list(old.order_by("created_at").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            UsageRecord.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
        batches += 1
        if len(ids) < batch:
            break
        if pause:
            time.sleep(pause)
    return Pruned(deleted, batches, cutoff)
