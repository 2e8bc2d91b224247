"""A page per model: its catalog entry, its providers' health and its recent speed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from statistics import median
from typing import Any

from django.utils import timezone

from billing.models import UsageRecord
from gateway import routing
from gateway.catalog import ModelInfo

RECENT_DAYS = 7
RECENT_LIMIT = 500
"""The speed figures read at most this many of the model's newest successful requests
from the last RECENT_DAYS: one indexed, bounded query per page view."""


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    name: str
    priority: int
    cooling_seconds: float

    @property
    def healthy(self) -> bool:
        return self.cooling_seconds == 0


@dataclass(frozen=True, slots=True)
class Speed:
    """Latency and time to first token of recent requests, in milliseconds."""

    requests: int
    latency_median: int | None
    latency_p95: int | None
    ttft_median: int | None
    ttft_p95: int | None


def provider_health(model: ModelInfo) -> list[ProviderHealth]:
    """The model's routes in the order they are tried, each provider cooling or not."""
    return [
        ProviderHealth(
            name=route.provider.name,
            priority=route.priority,
            cooling_seconds=routing.cooling_for(route.provider.id),
        )
        for route in model.routes
    ]


def _percentile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def recent_speed(model_id: str, now: Any = None) -> Speed:
    """Median and 95th percentile latency and TTFT of the model's recent traffic."""
    since = (now or timezone.now()) - timedelta(days=RECENT_DAYS)
    rows = list(
        UsageRecord.objects.filter(
            model=model_id, status=UsageRecord.Status.OK, created_at__gte=since
        )
        .order_by("-created_at")
        .values_list("latency_ms", "ttft_ms")[:RECENT_LIMIT]
    )
    latencies = [latency for latency, _ in rows]
    ttfts = [ttft for _, ttft in rows if ttft is not None]
    return Speed(
        requests=len(rows),
        latency_median=int(median(latencies)) if latencies else None,
        latency_p95=_percentile(latencies, 0.95),
        ttft_median=int(median(ttfts)) if ttfts else None,
        ttft_p95=_percentile(ttfts, 0.95),
    )
