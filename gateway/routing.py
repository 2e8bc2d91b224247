"""Route selection: a model's routes by priority, skipping providers cooling down.

A provider that fails with a retryable error (connection, timeout, 5xx, 429) is
skipped for PROVIDER_COOLDOWN_SECONDS (unless fallback is off: then the first route is
the only one, cooling or not). Cooldowns are per process: they only save
doomed attempts, nothing about money or limits depends on them.

While every route of a model cools down, one request at a time per provider, at most
one every PROVIDER_PROBE_SECONDS, is sent to the route that recovers first (`_probe`;
the next one while that one's probe is not due or still out): a half-open circuit. Its
answer ends the cooldown, so one failed call (a connection the upstream closed as it
was reused, a single 5xx) costs a model with no mirror about a second of refusals
rather than the whole cooldown; a provider that is really down gets one attempt per
interval per worker, never a pile of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from django.conf import settings

from gateway.catalog import ModelInfo, RouteInfo
from gateway.errors import GatewayError
from gateway.state import on_reset

_cooling_until: dict[int, float] = {}
_probe_due: dict[int, float] = {}  # provider id → when a cooling one may be probed
_probing: set[int] = set()  # providers with a probe in flight


@on_reset
def forget_cooldowns() -> None:
    _cooling_until.clear()
    _probe_due.clear()
    _probing.clear()


def cool_down(provider_id: int, seconds: float | None = None) -> None:
    """Skip the provider for PROVIDER_COOLDOWN_SECONDS, probed from PROVIDER_PROBE_SECONDS
    on; or for `seconds`, the upstream's own Retry-After, and not asked again before."""
    now = time.monotonic()
    if seconds is None:
        _cooling_until[provider_id] = now + settings.PROVIDER_COOLDOWN_SECONDS
        _probe_due[provider_id] = now + settings.PROVIDER_PROBE_SECONDS
    else:
        _cooling_until[provider_id] = _probe_due[provider_id] = now + max(seconds, 0)


def recovered(provider_id: int) -> None:
    _cooling_until.pop(provider_id, None)


def attempt_ended(provider_id: int) -> None:
    """An attempt on the provider is over, however it went: a probe may follow."""
    _probing.discard(provider_id)


def _probe(routes: Sequence[RouteInfo]) -> RouteInfo | None:
    """Of the cooling routes that may be probed now (the probe due, none in flight), the
    one that recovers first; taken, so its next probe is PROVIDER_PROBE_SECONDS away."""
    now = time.monotonic()
    for route in sorted(routes, key=lambda r: cooling_for(r.provider.id)):
        provider_id = route.provider.id
        if provider_id not in _probing and now >= _probe_due.get(provider_id, 0.0):
            _probing.add(provider_id)
            _probe_due[provider_id] = now + settings.PROVIDER_PROBE_SECONDS
            return route
    return None


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
    """Healthy routes in priority order; while none is, a probe (`_probe`), or a 503.

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
    if healthy:
        return healthy
    probe = _probe(model.routes)
    if probe is None:
        raise no_healthy_upstream(
            model.id, soonest_recovery(model), "every provider is cooling down after errors"
        )
    return [probe]


def _tried_again_in(provider_id: int) -> float:
    """Seconds until the provider is tried again: its cooldown's end or its next probe."""
    cooling = cooling_for(provider_id)
    if cooling == 0:
        return 0.0
    return min(cooling, max(0.0, _probe_due.get(provider_id, 0.0) - time.monotonic()))


def soonest_recovery(model: ModelInfo) -> float:
    """Seconds until the first of the model's routes is tried again (0: one is healthy)."""
    return min((_tried_again_in(r.provider.id) for r in model.routes), default=0.0)


def no_healthy_upstream(model_id: str, retry_after: float, reason: str) -> GatewayError:
    return GatewayError(
        503,
        f"No healthy upstream for '{model_id}': {reason}.",
        code="upstream_unavailable",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )
