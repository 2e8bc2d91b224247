"""The settlement journal: a settlement the database cannot take now waits on local disk.

settle_or_journal() is settle() that outlives a database outage: it retries on a fresh
connection (unless the pool could not give one at all) and, when the database stays
away, appends the settlement as one JSON line to this process's file in
SETTLEMENT_JOURNAL_DIR, fsync'd before it returns.
replay_journal() writes every journaled line through settle(), which is idempotent on
the request id, so a line applied twice still charges once. Workers replay in the
background (schedule_replay) and `manage.py sweepholds` replays before it sweeps.

Every file is locked (flock) while it is appended to or replayed. A replayer removes a
file, or replaces it with the lines it kept, while it holds the file's lock, and a
writer that gets the lock of a file no longer in the directory opens the new one: no
line is lost between a writer and a replayer, and no two replayers apply one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, connections
from django.utils import timezone
from psycopg_pool import PoolClosed, PoolTimeout

from billing.ledger import Reservation, settle
from billing.models import UsageRecord

log = logging.getLogger(__name__)

OUTAGE = (OperationalError, InterfaceError)
"""The errors of a database that is away (a refused connection, a dropped one)."""
RETRY_DELAYS = (0.1, 0.3, 0.9)
"""Seconds to wait before each retry of a settlement the database refused."""
REPLAY_INTERVAL_SECONDS = 3.0
REPLAY_TASK_NAME = "settlement-journal-replay"
SUFFIX = ".jsonl"


def settle_or_journal(
    *, reservation: Reservation, cost: int, usage: dict[str, Any]
) -> UsageRecord | None:
    """settle(), or the settlement journaled when the database is away; None then.

    Never raises for a database outage: a refused settlement is retried on a fresh
    connection after each of RETRY_DELAYS, then appended to the journal; a pool that
    gave no connection within DB_POOL_TIMEOUT is not waited on again. Bad input and
    broken constraints still raise, as from settle(). Run it in a thread, outside any
    transaction; after a None, call schedule_replay() from the event loop.
    """
    at = timezone.now()
    error: Exception | None = None
    for delay in (*RETRY_DELAYS, None):
        try:
            return settle(reservation=reservation, cost=cost, usage=usage)
        except OUTAGE as exc:
            error = exc
        if connection.in_atomic_block:
            # The caller's transaction is lost with the connection: nothing to retry in.
            break
        if isinstance(error.__cause__, PoolTimeout | PoolClosed):
            # No connection came (within DB_POOL_TIMEOUT, or at all while the database
            # is known to be away): not one connection dropped, and waiting again would
            # only hold the caller up.
            break
        _drop_connection()
        if delay is None:
            break
        time.sleep(delay)
    path = _append(_line(reservation=reservation, cost=cost, usage=usage, at=at))
    log.error(
        "settlement of %s journaled to %s, the database refused it: %s",
        reservation.request_id,
        path,
        error,
    )
    return None


def replay_journal() -> int:
    """Settle every journaled line, in every file of the directory (those of processes
    that died too), and remove what was settled; returns how many were settled.

    A line that fails for a reason other than an outage is kept and logged, never
    dropped; an outage stops the replay and keeps every line not yet settled.
    """
    return _replay().settled


def schedule_replay() -> None:
    """Replay the journal every REPLAY_INTERVAL_SECONDS in a background task of the
    running event loop, until a replay meets no outage; call it from async code after
    settle_or_journal() returned None. A call while the task runs adds one more pass."""
    global _replayer, _requests
    _requests += 1
    loop = asyncio.get_running_loop()
    if _replayer is not None and not _replayer.done() and _replayer.get_loop() is loop:
        return
    _replayer = loop.create_task(_replay_until_written(), name=REPLAY_TASK_NAME)


_replayer: asyncio.Task[None] | None = None
_requests = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Replay:
    settled: int
    outage: bool


async def _replay_until_written() -> None:
    while True:
        await asyncio.sleep(REPLAY_INTERVAL_SECONDS)
        requested = _requests
        try:
            replay = await _replay_in_a_thread()
        except Exception:
            log.exception("replaying the settlement journal failed; trying again")
            continue
        if not replay.outage and requested == _requests:
            return


def _replay_and_close() -> _Replay:
    try:
        return _replay()
    finally:
        # A pool thread's connection is never closed by a request's end: return it.
        connections.close_all()


_replay_in_a_thread = sync_to_async(_replay_and_close, thread_sensitive=False)


def _replay() -> _Replay:
    directory = _directory()
    if not directory.is_dir():
        return _Replay(settled=0, outage=False)
    settled = 0
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        replay = _replay_file(path)
        settled += replay.settled
        if replay.outage:
            return _Replay(settled=settled, outage=True)
    return _Replay(settled=settled, outage=False)


def _replay_file(path: Path) -> _Replay:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return _Replay(settled=0, outage=False)  # another replayer removed it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:
            return _Replay(settled=0, outage=False)  # another replayer replaced it
        kept: list[bytes] = []
        settled, outage = 0, False
        for line in filter(bytes.strip, _read(fd).split(b"\n")):
            if outage:
                kept.append(line)
                continue
            try:
                _settle_line(line)
            except OUTAGE:
                outage = True
                kept.append(line)
                _drop_connection()
            except Exception:
                log.exception("journaled settlement kept, it cannot be written: %r", line[:300])
                kept.append(line)
            else:
                settled += 1
        if settled:
            _rewrite(path, kept)
        return _Replay(settled=settled, outage=outage)
    finally:
        os.close(fd)


def _settle_line(line: bytes) -> None:
    entry = orjson.loads(line)
    usage = dict(entry["usage"])
    usage.setdefault("created_at", datetime.fromisoformat(entry["at"]))
    settle(reservation=Reservation(**entry["reservation"]), cost=entry["cost"], usage=usage)


def _rewrite(path: Path, kept: list[bytes]) -> None:
    """Remove `path`, or replace it with `kept`: called with the file's lock held, so a
    writer waiting for it finds the file gone and opens the new one."""
    if kept:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write(fd, b"".join(line + b"\n" for line in kept))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    else:
        path.unlink()
    _fsync_directory(path.parent)


def _line(*, reservation: Reservation, cost: int, usage: dict[str, Any], at: datetime) -> bytes:
    return orjson.dumps(
        {
            "reservation": dataclasses.asdict(reservation),
            "cost": cost,
            "usage": usage,
            "at": at.isoformat(),
        }
    )


def _append(line: bytes) -> Path:
    """Append one line to this process's file, durably; returns the file's path."""
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{socket.gethostname()}-{os.getpid()}{SUFFIX}"
    for _ in range(100):
        with _locked(path, os.O_RDWR | os.O_APPEND | os.O_CREAT) as fd:
            status = os.fstat(fd)
            if status.st_nlink == 0:
                continue  # a replayer removed or replaced it while this waited for the lock
            if status.st_size and os.pread(fd, 1, status.st_size - 1) != b"\n":
                line = b"\n" + line  # a writer died mid-line: keep that line apart
            _write(fd, line + b"\n")
            os.fsync(fd)
        _fsync_directory(directory)
        return path
    raise OSError(f"could not append to the settlement journal {path}")


@contextlib.contextmanager
def _locked(path: Path, flags: int) -> Iterator[int]:
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _read(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    """Make a file's creation, replacement or removal itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _directory() -> Path:
    return Path(settings.SETTLEMENT_JOURNAL_DIR)


def _drop_connection() -> None:
    """Close this thread's connection, so the next query opens a fresh one."""
    with contextlib.suppress(DatabaseError):
        connection.close()
