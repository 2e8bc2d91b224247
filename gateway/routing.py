"""Route selection: a model's routes by priority, skipping providers cooling down.

A provider that fails with a retryable error (connection, timeout, 5xx, 429) is
skipped for PROVIDER_COOLDOWN_SECONDS (unless fallback is off: then the first route is
the only one, cooling or not). Cooldowns are per process: they only save
doomed attempts, nothing about money or limits depends on them.
"""

from __future__ import annotations

import math
import time

from django.conf import settings

from gateway.catalog import ModelInfo, RouteInfo
from gateway.errors import GatewayError
from gateway.state import on_reset

_cooling_until: dict[int, float] = {}


@on_reset
def forget_cooldowns() -> None:
    _cooling_until.clear()


def cool_down(provider_id: int, seconds: float | None = None) -> None:
    wait = settings.PROVIDER_COOLDOWN_SECONDS if seconds is None else seconds
    _cooling_until[provider_id] = time.monotonic() + max(wait, 0)


def recovered(provider_id: int) -> None:
    _cooling_until.pop(provider_id, None)


def cooling_for(provider_id: int) -> float:
    """Seconds until the provider is tried again (0 when it is healthy)."""
    until = _cooling_until.get(provider_id)
    if until is None:
        return 0.0
    left = until - time.monotonic()
    if left <= 0:
        _cooling_until.pop(provider_id, None)
        return 0.0
    return left


def routes_to_try(model: ModelInfo, *, fallback: bool) -> list[RouteInfo]:
    """Healthy routes in priority order, or a 503.

    With fallback off (`X-Fallback: off`) the caller asked for the first route and no
    other, so it is tried even while cooling down: a mirror may differ in price or
    behaviour, and the cooldown only exists to save attempts on the caller's behalf.
    """
    if not model.routes:
        raise GatewayError(
            503,
            f"Model '{model.id}' has no enabled route to any provider.",
            code="no_route",
            headers={"Retry-After": "60"},
        )
    if not fallback:
        return list(model.routes[:1])
    healthy = [r for r in model.routes if cooling_for(r.provider.id) == 0]
    if not healthy:
        wait = min(cooling_for(r.provider.id) for r in model.routes)
        raise no_healthy_upstream(model.id, wait, "every provider is cooling down after errors")
    return healthy


def soonest_recovery(model: ModelInfo) -> float:
    """Seconds until the first of the model's routes is tried again (0: one is healthy)."""
    return min((cooling_for(r.provider.id) for r in model.routes), default=0.0)


def no_healthy_upstream(model_id: str, retry_after: float, reason: str) -> GatewayError:
    return GatewayError(
        503,
        f"No healthy upstream for '{model_id}': {reason}.",
        code="upstream_unavailable",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )
