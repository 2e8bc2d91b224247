"""Outages of the database and Redis: recognised, logged once, answered 503, probed back.

The first failure that shows a dependency is away opens an outage (`note`), logged on
one line: "database unavailable: …" or "redis unavailable: …". While it lasts, callers
ask before using the dependency (`admit`, `may_try`) and are refused at once, but for
one probe every PROBE_INTERVAL_SECONDS: no request waits on a dependency known to be
away, and none piles up behind its timeouts. The probe that gets an answer ends the
outage (`recovered`), logged once: "database back after 4.2 s".

For the database, the refusal happens where a connection would be asked of the pool
(console.postgresql, the backend): the pool is closed as the outage begins, so the
queries already waiting on it fail at once rather than each after DB_POOL_TIMEOUT, and
a fresh one is made when the probe finds the database back.

/v1 and the account API answer `unavailable(kind)`: 503 `service_unavailable` with
Retry-After; the site's pages answer templates/503.html (console.unavailable). What
each loss means for the service is in README ("When Redis or PostgreSQL is down").
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from psycopg_pool import PoolClosed, PoolTimeout

from gateway.errors import GatewayError
from gateway.state import on_reset

log = logging.getLogger(__name__)

DATABASE = "database"
REDIS = "redis"
PROBE_INTERVAL_SECONDS = 1.0
RETRY_AFTER_SECONDS = 2
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""Redis is away: refused, dropped or silent (every Redis client has timeouts)."""

# SQLSTATEs of a server that is going or gone: connection exceptions (class 08), an
# administrator's or a crash's shutdown, a server still starting, no connection left.
SERVER_AWAY_CLASSES = ("08",)
SERVER_AWAY_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
WHAT = {DATABASE: "its database", REDIS: "its rate-limit store"}


class DatabaseAway(PoolTimeout):
    """No connection is asked of the pool: the database is known to be away. A
    PoolTimeout, so what waits for connections (the settlement journal) gives up the same
    way; and not a new outage, so it never delays the next probe."""


_OURS = (DatabaseAway, PoolClosed)


@dataclass(slots=True)
class Outage:
    since: float
    error: str  # the exception's type name, the one detail /readyz shows
    next_probe: float


_outages: dict[str, Outage] = {}
_lock = threading.Lock()


@on_reset
def forget_outages() -> None:
    _outages.clear()


def kind_of(exc: BaseException) -> str | None:
    """DATABASE or REDIS when `exc` says that dependency is away, else None.

    A database that answered with an error (a deadlock, a statement timeout, a broken
    constraint) is not away; one that refused, dropped or never gave a connection is.
    """
    if isinstance(exc, REDIS_ERRORS):
        return REDIS
    if isinstance(exc, OperationalError | InterfaceError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        if state is None or state.startswith(SERVER_AWAY_CLASSES) or state in SERVER_AWAY_STATES:
            return DATABASE
    return None


def note(kind: str, exc: BaseException) -> None:
    """Open an outage of `kind` (logged once, on one line), or, when one is open (a
    probe failed), put the next probe PROBE_INTERVAL_SECONDS away."""
    if isinstance(exc, _OURS) or isinstance(exc.__cause__, _OURS):
        return  # a refusal of this module's, or the pool it dropped: no news
    now = time.monotonic()
    with _lock:
        outage = _outages.get(kind)
        if outage is not None:
            outage.next_probe = now + PROBE_INTERVAL_SECONDS  # a probe failed: wait again
            return
        _outages[kind] = Outage(
            since=now, error=type(exc).__name__, next_probe=now + PROBE_INTERVAL_SECONDS
        )
    log.error("%s unavailable: %s: %s", kind, type(exc).__name__, " ".join(str(exc).split()))
    if kind == DATABASE:
        # On a thread of its own: closing the pool waits for its workers' connection
        # attempts, and this may be running on the event loop.
        threading.Thread(target=_drop_pool, name="outage-drop-pool", daemon=True).start()


def noted(exc: BaseException) -> bool:
    """`note()` the outage `exc` shows, if it shows one; True then. For code that logs
    its own failures: `if not outages.noted(exc): log.warning(…)` logs an outage once."""
    kind = kind_of(exc)
    if kind is not None:
        note(kind, exc)
    return kind is not None


def recovered(kind: str) -> None:
    """End the outage of `kind`, if one is open (logged once). Cheap when none is."""
    if kind not in _outages:
        return
    with _lock:
        outage = _outages.pop(kind, None)
    if outage is not None:
        log.warning("%s back after %.1f s", kind, time.monotonic() - outage.since)


def down(kind: str) -> Outage | None:
    return _outages.get(kind)


def may_try(kind: str) -> bool:
    """Whether to use `kind` now: yes when it is up; while it is away, yes for one
    caller PROBE_INTERVAL_SECONDS after the outage began or the last probe failed, and
    that caller's attempt is the probe: it must end in `recovered()` or `note()`. Never
    blocks."""
    outage = _outages.get(kind)
    if outage is None:
        return True
    with _lock:
        now = time.monotonic()
        if now < outage.next_probe:
            return False
        outage.next_probe = now + PROBE_INTERVAL_SECONDS
    return True


def admit(kind: str) -> bool:
    """`may_try()`, probing `kind` itself when it is this caller's turn: True when the
    dependency is up or the probe got an answer. Blocks for the probe (bounded by the
    dependency's connect timeout), so call it from a thread, or `admit_async()`."""
    return kind not in _outages or (may_try(kind) and _probe(kind))


async def admit_async(kind: str) -> bool:
    """`admit()` for async code: no thread hop unless a probe is due."""
    if kind not in _outages:
        return True
    return may_try(kind) and await _probe_async(kind)


def refuse_connection_while_away() -> None:
    """Raise DatabaseAway unless `admit(DATABASE)`: for the database backend, before it
    asks the pool for a connection (console.postgresql)."""
    if not admit(DATABASE):
        raise DatabaseAway("the database is unavailable (gateway.outages probes it)")


def unavailable(kind: str) -> GatewayError:
    """The 503 for a request that needs `kind` while it is away."""
    return GatewayError(
        503,
        f"Switchboard cannot reach {WHAT[kind]} right now. "
        f"Try again in {RETRY_AFTER_SECONDS} seconds.",
        code="service_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _probe(kind: str) -> bool:
    try:
        if kind == DATABASE:
            _probe_database()
        else:
            _probe_redis()
    except Exception as exc:
        note(kind, exc)  # still away: wait another interval (logged when it began)
        return False
    recovered(kind)
    return True


_probe_async = sync_to_async(_probe, thread_sensitive=False)


def _probe_database() -> None:
    """Connect past the pool (the pool would wait DB_POOL_TIMEOUT), then replace the
    pool: its connections died with the server, and its reconnection attempts are
    backing off, seconds apart, which would keep service down after the server is up."""
    database: Any = connections[DEFAULT_DB_ALIAS]  # PostgreSQL's: Database, close_pool()
    database.Database.connect(**database.get_connection_params()).close()
    if getattr(database, "pool", None) is not None:
        database.close_pool()


def _drop_pool() -> None:
    """Close the database pool as an outage begins: the queries waiting on it fail at
    once (PoolClosed) instead of each waiting DB_POOL_TIMEOUT, and its dead connections
    go with it. No new one is made while the outage lasts (refuse_connection_while_away)."""
    database: Any = connections[DEFAULT_DB_ALIAS]
    if getattr(database, "pool", None) is not None:
        database.close_pool()


def _probe_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, **settings.REDIS_CLIENT_OPTIONS)
    try:
        client.ping()
    finally:
        client.close()
