"""Per-key RPM and TPM limits with the `limits` library.

Storage is in-process memory by default and Redis when REDIS_URL is set, so a limit
holds across every worker and host (the limit, not limit times workers). The sliding
window counter keeps a token cost cheap (one counter, not one entry per token).

With Redis, both of a key's limits are checked, counted and read back in one Lua
script (one round trip per request instead of four), with the `limits` library's
sliding-window-counter arithmetic; in memory the library's MemoryStorage keeps the
windows. Both give a window's counts and times to live, read by one function.

Every answer carries OpenAI's six `x-ratelimit-*` headers. A window without a limit
(None or 0) is reported as UNLIMITED requests or tokens remaining, resetting in 0s:
OpenAI clients parse these headers as integers and durations, so a word or a negative
number would read as "nothing left", while a large limit equal to its remainder reads
as 0% used (Codex CLI) and never makes a client wait.

The same windows count per client address what no key pays for (`address_wait`).

Counters fail closed: while Redis is away, whatever must be counted there is answered
503 (gateway.outages), never counted in one worker's memory instead, where a limit
would become the limit times the workers (README, "When Redis or PostgreSQL is down").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from django.conf import settings
from django.http import HttpRequest
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import outages
from gateway.errors import GatewayError
from gateway.state import on_reset

if TYPE_CHECKING:
    from limits.aio.storage import MemoryStorage
    from limits.storage import MemoryStorage as SyncMemoryStorage

WINDOW_SECONDS = 60
# The largest signed 32-bit integer: every client's integer type holds it.
UNLIMITED = 2_147_483_647
HEADER_NAMES = tuple(
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
)

T = TypeVar("T")

_memory: dict[int, MemoryStorage] = {}
_scripts: dict[int, Any] = {}


@on_reset
def forget_limiters() -> None:
    _memory.clear()
    _scripts.clear()


def _memory_storage() -> MemoryStorage:
    """One in-process store per event loop (its locks belong to the loop).

    Only the in-memory case (no REDIS_URL) uses the library, so it is imported then:
    with Redis a worker is a few MB smaller without it.
    """
    from limits.aio.storage import MemoryStorage

    loop_id = id(asyncio.get_running_loop())
    storage = _memory.get(loop_id)
    if storage is None:
        storage = _memory[loop_id] = MemoryStorage()
    return storage


@dataclass(slots=True)
class LimitState:
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True, slots=True)
class Window:
    """One of a key's limits and what this request costs against it."""

    kind: str  # "requests" or "tokens"
    limit: int
    identifier: str
    cost: int


def _duration(seconds: float) -> str:
    """OpenAI's reset format, a Go-style duration: '20ms', '1.5s', '6m0s'."""
    seconds = max(0.0, seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(round(seconds, 1), 60)
    if minutes:
        return f"{int(minutes)}m{rest:.0f}s"
    return f"{rest:g}s"


def headers_for(requests: LimitState | None, tokens: LimitState | None) -> dict[str, str]:
    """The six headers; a window without a limit (None) is reported as UNLIMITED."""
    headers: dict[str, str] = {}
    for kind, state in (("requests", requests), ("tokens", tokens)):
        if state is None:
            state = LimitState(limit=UNLIMITED, remaining=UNLIMITED, reset_seconds=0)
        headers[f"x-ratelimit-limit-{kind}"] = str(state.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, state.remaining))
        headers[f"x-ratelimit-reset-{kind}"] = _duration(state.reset_seconds)
    return headers


# For each window (KEYS: previous, current; ARGV: limit, cost) in order: roll the
# window over when due, then by mode (ARGV[2]): 'take' counts the cost if the weighted
# count leaves room (and only reads the windows after one that refuses, as the
# requests limit comes before the tokens one), 'give' takes the cost back off the
# current window then the previous one (never below 0), 'read' counts nothing. Returns
# {counted, previous count, previous ttl ms, current count, current ttl ms} per window.
WINDOWS_SCRIPT = """
local expiry = tonumber(ARGV[1]) * 1000
local mode = ARGV[2]
local counting = mode == 'take'
local answers = {}
for i = 1, #KEYS / 2 do
    local previous, current = KEYS[2 * i - 1], KEYS[2 * i]
    local limit, cost = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
    local current_ttl = tonumber(redis.call('pttl', current))
    if current_ttl > 0 and current_ttl < expiry then
        redis.call('rename', current, previous)
        redis.call('set', current, 0, 'PX', current_ttl + expiry)
    end
    local previous_count = tonumber(redis.call('get', previous)) or 0
    local previous_ttl = math.max(tonumber(redis.call('pttl', previous)) or 0, 0)
    local current_count = tonumber(redis.call('get', current)) or 0
    current_ttl = math.max(tonumber(redis.call('pttl', current)) or 0, 0)
    local counted = 0
    if counting then
        local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
        if cost <= limit and weighted + cost <= limit then
            counted = 1
            if redis.call('exists', current) == 1 then
                redis.call('incrby', current, cost)
            else
                redis.call('set', current, cost, 'PX', expiry * 2)
                current_ttl = expiry * 2
            end
            current_count = current_count + cost
        else
            counting = false
        end
    elseif mode == 'give' then
        local from_current = math.min(cost, current_count)
        if from_current > 0 then
            redis.call('decrby', current, from_current)
            current_count = current_count - from_current
        end
        local from_previous = math.min(cost - from_current, previous_count)
        if from_previous > 0 then
            redis.call('decrby', previous, from_previous)
            previous_count = previous_count - from_previous
        end
    end
    answers[i] = {counted, previous_count, previous_ttl, current_count, current_ttl}
end
return answers
"""


def _registered_script() -> Any:
    """WINDOWS_SCRIPT on a new client of REDIS_URL with settings.REDIS_CLIENT_OPTIONS'
    timeouts and their retry: once, at once, and only a dropped connection (a Redis that
    restarted leaves the pool's connections dead), never a timeout."""
    client = aioredis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.REDIS_CLIENT_OPTIONS["socket_timeout"],
        socket_connect_timeout=settings.REDIS_CLIENT_OPTIONS["socket_connect_timeout"],
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return client.register_script(WINDOWS_SCRIPT)


def _script() -> Any:
    """The registered script on this event loop's Redis client."""
    loop_id = id(asyncio.get_running_loop())
    script = _scripts.get(loop_id)
    if script is None:
        script = _scripts[loop_id] = _registered_script()
    return script


async def _in_redis(work: Callable[[], Awaitable[T]]) -> T:
    """`work()` against Redis, or the 503 while Redis is away (asked once a second)."""
    if not outages.may_try(outages.REDIS):
        raise outages.unavailable(outages.REDIS)
    try:
        result = await work()
    except outages.REDIS_ERRORS as exc:
        outages.note(outages.REDIS, exc)
        raise outages.unavailable(outages.REDIS) from exc
    outages.recovered(outages.REDIS)
    return result


def _state_from_counts(
    limit: int, previous: int, previous_ttl: float, current: int, current_ttl: float
) -> LimitState:
    """Remaining and reset time as `limits`' SlidingWindowCounterRateLimiter reports them,
    from a window's counts and times to live in seconds (both stores give these)."""
    weighted = previous * previous_ttl / WINDOW_SECONDS + current
    remaining = max(0, limit - math.floor(weighted))
    reset = 0.0
    if previous or current:
        reset = min(
            previous_ttl % (WINDOW_SECONDS / previous) if previous else math.inf,
            current_ttl % WINDOW_SECONDS if current else math.inf,
        )
    return LimitState(limit=limit, remaining=remaining, reset_seconds=reset)


async def _run_in_redis(mode: str, windows: list[Window]) -> list[tuple[bool, LimitState]]:
    keys: list[str] = []
    args: list[int | str] = [WINDOW_SECONDS, mode]
    for window in windows:
        current = f"sb:limit:{{{window.identifier}}}"
        keys += [f"{current}/-1", current]
        args += [window.limit, window.cost]
    answers = await _in_redis(lambda: _script()(keys=keys, args=args))
    return [
        (
            bool(counted),
            _state_from_counts(
                window.limit,
                int(previous),
                int(previous_ttl) / 1000,
                int(current),
                int(current_ttl) / 1000,
            ),
        )
        for window, (counted, previous, previous_ttl, current, current_ttl) in zip(
            windows, answers, strict=True
        )
    ]


async def _give_back_in_memory(storage: MemoryStorage, key: str, cost: int) -> None:
    """Take `cost` off the current window, then the previous one, as the script does."""
    previous_key, current_key = storage.sliding_window_keys(key, WINDOW_SECONDS, time.time())
    from_current = min(cost, await storage.get(current_key))
    if from_current:
        await storage.decr(current_key, from_current)
    from_previous = min(cost - from_current, await storage.get(previous_key))
    if from_previous:
        await storage.decr(previous_key, from_previous)


async def _run_in_memory(mode: str, windows: list[Window]) -> list[tuple[bool, LimitState]]:
    storage = _memory_storage()
    counting = mode == "take"
    answers = []
    for window in windows:
        key = f"sb:limit:{window.identifier}"
        counted = False
        if counting:
            counted = await storage.acquire_sliding_window_entry(
                key, window.limit, WINDOW_SECONDS, window.cost
            )
            counting = counted
        elif mode == "give":
            await _give_back_in_memory(storage, key, window.cost)
        counts = await storage.get_sliding_window(key, WINDOW_SECONDS)
        answers.append((counted, _state_from_counts(window.limit, *counts)))
    return answers


async def _run(mode: str, windows: list[Window]) -> list[tuple[bool, LimitState]]:
    """(counted, state) for each window in order, in Redis or in memory."""
    if settings.REDIS_URL:
        return await _run_in_redis(mode, windows)
    return await _run_in_memory(mode, windows)


def _windows(key_id: int, rpm: int | None, tpm: int | None, tokens: int) -> list[Window]:
    windows = []
    if rpm:
        windows.append(Window("requests", rpm, f"rpm:{key_id}", 1))
    if tpm:
        windows.append(Window("tokens", tpm, f"tpm:{key_id}", tokens))
    return windows


def _headers(windows: list[Window], answers: list[tuple[bool, LimitState]]) -> dict[str, str]:
    states = {window.kind: state for window, (_, state) in zip(windows, answers, strict=True)}
    return headers_for(states.get("requests"), states.get("tokens"))


async def check_limits(
    *,
    key_id: int,
    rpm: int | None,
    tpm: int | None,
    tokens: int,
    counted_tokens: Callable[[], Awaitable[int]] | None = None,
) -> dict[str, str]:
    """Count this request against the key's limits (None or 0: unlimited).

    `tokens` may be a bound of what the request can use: then `counted_tokens()` gives
    its count, asked for only when the tokens window refuses the bound (the request the
    requests window counted is given back, and both are tried once more with it).

    Returns the six `x-ratelimit-*` headers, or raises a 429 that carries them (or
    the 503 of gateway.outages while Redis is away).
    """
    windows = _windows(key_id, rpm, tpm, tokens)
    if not windows:
        return headers_for(None, None)
    answers = await _run("take", windows)
    # The tokens window is the last; a requests window refusing first leaves it unread.
    requests_counted = not rpm or answers[0][0]
    if counted_tokens is not None and tpm and requests_counted and not answers[-1][0]:
        if rpm:
            await _run("give", windows[:1])
        windows = _windows(key_id, rpm, tpm, await counted_tokens())
        answers = await _run("take", windows)
    headers = _headers(windows, answers)
    for window, (counted, state) in zip(windows, answers, strict=True):
        if not counted:
            raise _refused(window, state, headers)
    return headers


async def current_limits(*, key_id: int, rpm: int | None, tpm: int | None) -> dict[str, str]:
    """The six `x-ratelimit-*` headers for the key's limits, read without counting."""
    windows = _windows(key_id, rpm, tpm, 0)
    if not windows:
        return headers_for(None, None)
    return _headers(windows, await _run("read", windows))


async def give_back(*, key_id: int, rpm: int | None, tpm: int | None, tokens: int) -> None:
    """Return one request and `tokens` tokens to the key's current windows.

    For a request that `check_limits` counted and that was then refused before the
    upstream was called (402 from the credit hold): it must not use up the limits.
    Never raises for Redis being away: the refusal is answered, not this courtesy.
    """
    windows = _windows(key_id, rpm, tpm, tokens)
    if windows:
        with contextlib.suppress(GatewayError):
            await _run("give", windows)


def _refused(window: Window, state: LimitState, headers: dict[str, str]) -> GatewayError:
    if window.kind == "tokens" and window.cost > window.limit:
        return GatewayError(
            429,
            f"Request too large: {window.cost} tokens (prompt plus max output) exceed this "
            f"key's limit of {window.limit} tokens per minute. Lower max_tokens or the prompt.",
            code="rate_limit_exceeded",
            headers=headers,
        )
    retry_after = str(max(1, math.ceil(state.reset_seconds)))
    return GatewayError(
        429,
        f"Rate limit reached: {window.limit} {window.kind} per minute for this key. "
        f"Try again in {retry_after}s.",
        code="rate_limit_exceeded",
        headers={**headers, "Retry-After": retry_after},
    )


# Per client address, for what no key pays for: the public estimate and failed key
# checks. The windows are the same one-minute sliding counters as a key's, in Redis
# through WINDOWS_SCRIPT or in memory through `limits`. Both must hold across event
# loops, since the account API checks keys on a fresh loop each time (async_to_sync):
# Redis scripts are kept per loop object (a dead loop's id comes back, bound to a
# client of that loop), and memory is one store for the process, `limits`' thread-safe
# synchronous MemoryStorage (no I/O, so it does not block the loop).
_address_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
    weakref.WeakKeyDictionary()
)
_address_memory: list[SyncMemoryStorage] = []


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


async def _address_window(mode: str, limit: int, identifier: str) -> tuple[bool, LimitState]:
    """(counted, state) of one window of cost 1, by mode 'take' or 'read'."""
    if settings.REDIS_URL:
        loop = asyncio.get_running_loop()
        script = _address_scripts.get(loop)
        if script is None:
            script = _address_scripts[loop] = _registered_script()
        current = f"sb:limit:{{{identifier}}}"
        [answer] = await _in_redis(
            lambda: script(keys=[f"{current}/-1", current], args=[WINDOW_SECONDS, mode, limit, 1])
        )
        counted, previous, previous_ttl, count, current_ttl = (int(value) for value in answer)
        state = _state_from_counts(limit, previous, previous_ttl / 1000, count, current_ttl / 1000)
        return bool(counted), state
    from limits.storage import MemoryStorage

    if not _address_memory:
        _address_memory.append(MemoryStorage())
    storage, key = _address_memory[0], f"sb:limit:{identifier}"
    counted = mode == "take" and storage.acquire_sliding_window_entry(key, limit, WINDOW_SECONDS, 1)
    return counted, _state_from_counts(limit, *storage.get_sliding_window(key, WINDOW_SECONDS))


async def address_wait(*, scope: str, address: str, per_minute: int, count: bool) -> int:
    """Seconds `address` must wait before one more event in `scope` fits under
    `per_minute`, or 0 when it fits now (and then, with `count`, it is counted).

    `count=False` only looks: a check that must come before work which is counted only
    when it fails (a failed key check).
    """
    mode = "take" if count else "read"
    counted, state = await _address_window(mode, per_minute, f"address:{scope}:{address}")
    if counted or (not count and state.remaining >= 1):
        return 0
    return max(1, math.ceil(state.reset_seconds))


def address_throttled(message: str, wait: int) -> GatewayError:
    """The 429 for an address over its limit: `message`, and when to try again."""
    return GatewayError(
        429,
        f"{message} Try again in {wait}s.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(wait)},
    )
