"""Per-key RPM and TPM limits with the `limits` library.

Storage is in-process memory by default and Redis when REDIS_URL is set, so a limit
holds across every worker and host (the limit, not limit times workers). The sliding
window counter keeps a token cost cheap (one counter, not one entry per token).

With Redis, both of a key's limits are checked, counted and read back in one Lua
script (one round trip per request instead of four), with the `limits` library's
sliding-window-counter arithmetic; in memory the library itself does the work.

The same windows count per client address what no key pays for (`address_wait`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from django.conf import settings
from django.http import HttpRequest

from gateway.errors import GatewayError
from gateway.state import on_reset

if TYPE_CHECKING:
    from limits.aio.strategies import SlidingWindowCounterRateLimiter
    from limits.strategies import (
        SlidingWindowCounterRateLimiter as SyncSlidingWindowCounterRateLimiter,
    )

WINDOW_SECONDS = 60

_limiters: dict[int, SlidingWindowCounterRateLimiter] = {}
_scripts: dict[int, Any] = {}


@on_reset
def forget_limiters() -> None:
    _limiters.clear()
    _scripts.clear()


def _limiter() -> SlidingWindowCounterRateLimiter:
    """One limiter per event loop: async Redis connections belong to their loop.

    Only the in-memory case (no REDIS_URL) uses the library, so it is imported then:
    with Redis a worker is a few MB smaller without it.
    """
    from limits.aio.strategies import SlidingWindowCounterRateLimiter
    from limits.storage import storage_from_string

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


# For each window (KEYS: previous, current; ARGV: limit, cost) in order: roll the
# window over when due, count the cost if the weighted count leaves room, and return
# {allowed, previous count, previous ttl ms, current count, current ttl ms}. It stops
# at the first window that refuses, as the requests limit comes before the tokens one.
TAKE_SCRIPT = """
local expiry = tonumber(ARGV[1]) * 1000
local answers = {}
for i = 1, #KEYS / 2 do
    local previous, current = KEYS[2 * i - 1], KEYS[2 * i]
    local limit, cost = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    local current_ttl = tonumber(redis.call('pttl', current))
    if current_ttl > 0 and current_ttl < expiry then
        redis.call('rename', current, previous)
        redis.call('set', current, 0, 'PX', current_ttl + expiry)
    end
    local previous_count = tonumber(redis.call('get', previous)) or 0
    local previous_ttl = math.max(tonumber(redis.call('pttl', previous)) or 0, 0)
    local current_count = tonumber(redis.call('get', current)) or 0
    current_ttl = math.max(tonumber(redis.call('pttl', current)) or 0, 0)
    local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
    local allowed = 0
    if cost <= limit and weighted + cost <= limit then
        allowed = 1
        if redis.call('exists', current) == 1 then
            redis.call('incrby', current, cost)
        else
            redis.call('set', current, cost, 'PX', expiry * 2)
            current_ttl = expiry * 2
        end
        current_count = current_count + cost
    end
    answers[i] = {allowed, previous_count, previous_ttl, current_count, current_ttl}
    if allowed == 0 then
        break
    end
end
return answers
"""


def _script() -> Any:
    """The registered script on this event loop's Redis client."""
    loop_id = id(asyncio.get_running_loop())
    script = _scripts.get(loop_id)
    if script is None:
        script = aioredis.Redis.from_url(settings.REDIS_URL).register_script(TAKE_SCRIPT)
        _scripts[loop_id] = script
    return script


def _state_from_counts(
    limit: int, previous: int, previous_ttl_ms: int, current: int, current_ttl_ms: int
) -> LimitState:
    """Remaining and reset time as `limits`' SlidingWindowCounterRateLimiter reports them."""
    previous_ttl, current_ttl = previous_ttl_ms / 1000, current_ttl_ms / 1000
    weighted = previous * previous_ttl / WINDOW_SECONDS + current
    remaining = max(0, limit - math.floor(weighted))
    reset = 0.0
    if previous or current:
        reset = min(
            previous_ttl % (WINDOW_SECONDS / previous) if previous else math.inf,
            current_ttl % WINDOW_SECONDS if current else math.inf,
        )
    return LimitState(limit=limit, remaining=remaining, reset_seconds=reset)


async def _take_in_redis(
    windows: list[tuple[int, str, int]],
) -> list[tuple[bool, LimitState]]:
    keys: list[str] = []
    args: list[int] = [WINDOW_SECONDS]
    for limit, identifier, cost in windows:
        current = f"sb:limit:{{{identifier}}}"
        keys += [f"{current}/-1", current]
        args += [limit, cost]
    answers = await _script()(keys=keys, args=args)
    return [
        (bool(answer[0]), _state_from_counts(limit, *(int(value) for value in answer[1:])))
        for (limit, _, _), answer in zip(windows, answers, strict=False)
    ]


async def _take(limit: int, identifier: str, cost: int) -> tuple[bool, LimitState]:
    from limits import RateLimitItemPerMinute

    limiter = _limiter()
    item = RateLimitItemPerMinute(limit)
    allowed = cost <= limit and await limiter.hit(item, identifier, cost=cost)
    stats = await limiter.get_window_stats(item, identifier)
    reset = max(0.0, stats.reset_time - time.time())
    return allowed, LimitState(limit=limit, remaining=stats.remaining, reset_seconds=reset)


async def _take_all(windows: list[tuple[int, str, int]]) -> list[tuple[bool, LimitState]]:
    """(allowed, state) for each window in order, up to the first that refuses."""
    if settings.REDIS_URL:
        return await _take_in_redis(windows)
    taken = []
    for window in windows:
        taken.append(await _take(*window))
        if not taken[-1][0]:
            break
    return taken


async def check_limits(
    *, key_id: int, rpm: int | None, tpm: int | None, tokens: int
) -> dict[str, str]:
    """Count this request against the key's limits; the headers to send, or a 429."""
    windows = []
    if rpm:
        windows.append((rpm, f"rpm:{key_id}", 1))
    if tpm:
        windows.append((tpm, f"tpm:{key_id}", tokens))
    if not windows:
        return {}
    taken = iter(await _take_all(windows))
    request_state = token_state = None
    if rpm:
        allowed, request_state = next(taken)
        if not allowed:
            raise _too_many("requests per minute", rpm, request_state, None)
    if tpm:
        allowed, token_state = next(taken)
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


# Per client address, for what no key pays for: the public estimate and failed key
# checks. The windows are the same one-minute sliding counters as a key's, in Redis
# through TAKE_SCRIPT or in memory through `limits`. Both must hold across event
# loops, since the account API checks keys on a fresh loop each time (async_to_sync):
# Redis scripts are kept per loop object (a dead loop's id comes back, bound to a
# client of that loop), and memory is one store for the process, through `limits`'
# thread-safe synchronous API (no I/O, so it does not block the loop).
_address_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
    weakref.WeakKeyDictionary()
)
_address_memory: list[SyncSlidingWindowCounterRateLimiter] = []


@on_reset
def forget_address_counts() -> None:
    _address_scripts.clear()
    _address_memory.clear()


def client_address(request: HttpRequest) -> str:
    """The address limits are counted by: REMOTE_ADDR, which uvicorn's --proxy-headers
    sets from X-Forwarded-For behind a trusted proxy. An IPv6 client counts as its /64,
    the block one subscriber is usually given."""
    address = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


async def address_wait(*, scope: str, address: str, per_minute: int, count: bool) -> int:
    """Seconds `address` must wait before one more event in `scope` fits under
    `per_minute`, or 0 when it fits now (and then, with `count`, it is counted).

    `count=False` only looks: a check that must come before work which is counted only
    when it fails (a failed key check).
    """
    identifier = f"address:{scope}:{address}"
    if settings.REDIS_URL:
        loop = asyncio.get_running_loop()
        script = _address_scripts.get(loop)
        if script is None:
            script = aioredis.Redis.from_url(settings.REDIS_URL).register_script(TAKE_SCRIPT)
            _address_scripts[loop] = script
        current = f"sb:limit:{{{identifier}}}"
        # Looking is taking nothing against one less: it fits only if one more would.
        limit, cost = (per_minute, 1) if count else (per_minute - 1, 0)
        [answer] = await script(keys=[f"{current}/-1", current], args=[WINDOW_SECONDS, limit, cost])
        if answer[0]:
            return 0
        state = _state_from_counts(per_minute, *(int(value) for value in answer[1:]))
        reset = state.reset_seconds
    else:
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import SlidingWindowCounterRateLimiter

        if not _address_memory:
            _address_memory.append(SlidingWindowCounterRateLimiter(MemoryStorage()))
        limiter = _address_memory[0]
        item = RateLimitItemPerMinute(per_minute)
        if (limiter.hit if count else limiter.test)(item, identifier):
            return 0
        reset = limiter.get_window_stats(item, identifier).reset_time - time.time()
    return max(1, math.ceil(reset))


def address_throttled(message: str, wait: int) -> GatewayError:
    """The 429 for an address over its limit: `message`, and when to try again."""
    return GatewayError(
        429,
        f"{message} Try again in {wait}s.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(wait)},
    )
