"""Refused calls in the request log.

A call `open_call()` refuses for a known key (402 out of credit or over a cap, 403 a
model the key may not call, 404 an unknown model, 429 over the key's limits, a 400
the call could not be served) leaves a usage record: status `refused`, the HTTP status
and error code it was answered with, no cost, no hold. The record is written by the
same worker after the answer has gone, so it can never fail or slow the request.

Kept cheap under a flood (a client retrying a 429 in a tight loop): `note()` never
touches the database. Refusals wait in the worker's queue and go in one bulk INSERT
every FLUSH_SECONDS; per key and worker at most REFUSALS_LOGGED_PER_KEY_PER_MINUTE are
logged a minute (the rest only counted in `switchboard_refusals_unlogged_total`), and
the queue holds at most QUEUE_LIMIT. A refusal is written once: its request id is
unique and a second insert of it is ignored.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.utils import timezone
from prometheus_client import Counter

from billing.models import UsageRecord
from billing.rollups import insert_records
from gateway import outages
from gateway.auth import KeyInfo
from gateway.errors import GatewayError
from gateway.state import on_reset
from gateway.sync import db_sync_to_async

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
QUEUE_LIMIT = 5000

UNLOGGED = Counter(
    "switchboard_refusals_unlogged",
    "Refused calls left out of the request log: over the per-key limit a minute, or the "
    "worker's queue was full.",
)

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_queue: list[UsageRecord] = []
_per_key: dict[int, tuple[int, int]] = {}  # key id -> (minute, refusals logged in it)
_scheduled: set[asyncio.AbstractEventLoop] = set()
_writing: set[asyncio.Future[None]] = set()


@on_reset
def forget_refusals() -> None:
    with _lock:
        _queue.clear()
        _per_key.clear()
        _scheduled.clear()


def recorded(open_call: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Wrap `open_call` so that a call it refuses (a 4xx GatewayError) is logged."""

    @functools.wraps(open_call)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await open_call(*args, **kwargs)
        except GatewayError as exc:
            if 400 <= exc.status < 500:
                note(
                    key=kwargs["key"],  # type: ignore[arg-type]
                    body=kwargs["body"],
                    request_id=kwargs["request_id"],  # type: ignore[arg-type]
                    source=str(kwargs.get("source") or UsageRecord.Source.API),
                    error=exc,
                )
            raise

    return wrapper


def note(*, key: KeyInfo, body: Any, request_id: str, source: str, error: GatewayError) -> None:
    """Queue the refusal of a call for the request log. Never raises."""
    try:
        if not _admitted(key.id):
            UNLOGGED.inc()
            return
        model = body.get("model") if isinstance(body, dict) else None
        record = UsageRecord(
            request_id=request_id,
            account_id=key.account_id,
            api_key_id=key.id,
            source=source,
            model=model[:200] if isinstance(model, str) else "",
            stream=isinstance(body, dict) and body.get("stream") is True,
            status=UsageRecord.Status.REFUSED,
            http_status=error.status,
            error_code=(error.code or "")[:64],
            error=error.message[:300],
            attempts=0,
            created_at=timezone.now(),
        )
        with _lock:
            if len(_queue) >= QUEUE_LIMIT:
                UNLOGGED.inc()
                return
            _queue.append(record)
        _schedule_flush()
    except Exception:
        log.exception("could not note the refusal of %s", request_id)


def _admitted(key_id: int) -> bool:
    minute = int(time.monotonic() // 60)
    limit = settings.REFUSALS_LOGGED_PER_KEY_PER_MINUTE
    with _lock:
        seen_minute, count = _per_key.get(key_id, (minute, 0))
        if seen_minute != minute:
            count = 0
        if count >= limit:
            return False
        _per_key[key_id] = (minute, count + 1)
        if len(_per_key) > QUEUE_LIMIT:
            # Keys from earlier minutes only: the map stays as small as the keys in use.
            for stale in [k for k, (m, _) in _per_key.items() if m != minute]:
                del _per_key[stale]
        return True


def _schedule_flush() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush()  # no event loop (a management command): write at once
        return
    with _lock:
        if loop in _scheduled:
            return
        _scheduled.add(loop)
    loop.call_later(FLUSH_SECONDS, _start_flush, loop)


def _start_flush(loop: asyncio.AbstractEventLoop) -> None:
    with _lock:
        _scheduled.discard(loop)
    task = asyncio.ensure_future(_flush_async())
    _writing.add(task)
    task.add_done_callback(_writing.discard)


def pending() -> bool:
    """Whether refusals of this process still wait for their INSERT or are in one: what
    a caller must wait out before it deletes the accounts they belong to."""
    with _lock:
        return bool(_queue or _scheduled or _writing)


def flush() -> int:
    """Write the queued refusals now (one INSERT per 500) with their rollups; returns how
    many were queued. A failure (the database away) drops them with a log line: they
    carry no money."""
    with _lock:
        batch = _queue[:]
        _queue.clear()
    if not batch:
        return 0
    try:
        insert_records(batch)
    except Exception as exc:
        if not outages.noted(exc):
            log.warning("could not log %d refused calls", len(batch), exc_info=True)
    return len(batch)


_flush_async = db_sync_to_async(flush)
