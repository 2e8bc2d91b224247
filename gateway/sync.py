"""Database work for async views, run on the shared thread pool."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

T = TypeVar("T")


def db_sync_to_async(
    func: Callable[..., T], *, executor: ThreadPoolExecutor | None = None
) -> Callable[..., Any]:
    """`sync_to_async(func, thread_sensitive=False)` that returns pooled connections,
    on the event loop's default executor unless given one.

    Nothing ends a "request" on the pool's threads, so without this every thread would
    keep a connection checked out of Django's pool for good, and more threads (or
    event loops) than DB_POOL_MAX would starve every later query.
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        finally:
            for connection in connections.all(initialized_only=True):
                if getattr(connection, "pool", None) is not None:
                    connection.close()

    return sync_to_async(run, thread_sensitive=False, executor=executor)
