"""Per-key RPM and TPM limits with the `limits` library.

Storage is in-process memory by default and Redis when REDIS_URL is set, so a limit
holds across every worker and host (the limit, not limit times workers). The sliding
window counter keeps a token cost cheap (one counter, not one entry per token).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from gateway.errors import GatewayError
from gateway.state import on_reset

_limiters: dict[int, SlidingWindowCounterRateLimiter] = {}


@on_reset
def forget_limiters() -> None:
    _limiters.clear()


def _limiter() -> SlidingWindowCounterRateLimiter:
    """One limiter per event loop: async Redis connections belong to their loop."""
    loop_id = id(asyncio.get_running_loop())
    limiter = _limiters.get(loop_id)
    if limiter is None:
        uri = settings.RATELIMIT_STORAGE_URI
        options: dict[str, Any] = {"implementation": "redispy"} if "redis" in uri else {}
        limiter = SlidingWindowCounterRateLimiter(storage_from_string(uri, **options))
        _limiters[loop_id] = limiter
    return limiter


@dataclass(slots=True)
class LimitState:
    limit: int
    remaining: int
    reset_seconds: float


def _duration(seconds: float) -> str:
    """OpenAI's reset format: '1s', '6m0s'."""
    seconds = max(0.0, seconds)
    minutes, rest = divmod(seconds, 60)
    if minutes:
        return f"{int(minutes)}m{rest:.0f}s"
    return f"{rest:.3g}s"


def headers_for(requests: LimitState | None, tokens: LimitState | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, state in (("requests", requests), ("tokens", tokens)):
        if state is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(max(0, state.remaining))
            headers[f"x-ratelimit-reset-{name}"] = _duration(state.reset_seconds)
    return headers


async def _take(limit: int, identifier: str, cost: int) -> tuple[bool, LimitState]:
    limiter = _limiter()
    item = RateLimitItemPerMinute(limit)
    allowed = cost <= limit and await limiter.hit(item, identifier, cost=cost)
    stats = await limiter.get_window_stats(item, identifier)
    reset = max(0.0, stats.reset_time - time.time())
    return allowed, LimitState(limit=limit, remaining=stats.remaining, reset_seconds=reset)


async def check_limits(
    *, key_id: int, rpm: int | None, tpm: int | None, tokens: int
) -> dict[str, str]:
    """Count this request against the key's limits; the headers to send, or a 429."""
    request_state = token_state = None
    if rpm:
        allowed, request_state = await _take(rpm, f"rpm:{key_id}", 1)
        if not allowed:
            raise _too_many("requests per minute", rpm, request_state, None)
    if tpm:
        allowed, token_state = await _take(tpm, f"tpm:{key_id}", tokens)
        if not allowed:
            if tokens > tpm:
                raise GatewayError(
                    429,
                    f"Request too large: {tokens} tokens (prompt plus max output) exceed this "
                    f"key's limit of {tpm} tokens per minute. Lower max_tokens or the prompt.",
                    code="rate_limit_exceeded",
                    headers=headers_for(request_state, token_state),
                )
            raise _too_many("tokens per minute", tpm, token_state, request_state)
    return headers_for(request_state, token_state)


def _too_many(
    what: str, limit: int, state: LimitState, requests: LimitState | None
) -> GatewayError:
    headers = (
        headers_for(requests, state) if what.startswith("tokens") else headers_for(state, None)
    )
    headers["Retry-After"] = str(max(1, math.ceil(state.reset_seconds)))
    return GatewayError(
        429,
        f"Rate limit reached: {limit} {what} for this key. Try again in {headers['Retry-After']}s.",
        code="rate_limit_exceeded",
        headers=headers,
    )
