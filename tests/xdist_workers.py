"""Keeps pytest-xdist's workers (`pytest -n 2`) out of each other's Redis.

pytest-django gives every worker a test database of its own (`test_switchboard_gw0`,
...). Redis has no such thing: the cache, the channel layer and the rate limiter of two
workers would share one database (their account and key ids collide), and the tests
that `flushdb()` it would empty it under the other worker. So worker N uses Redis
database base + 1 + N of REDIS_URL; a run without workers uses REDIS_URL as it is.

The settings read REDIS_URL when they are imported, and pytest-django imports them in
its own `pytest_load_initial_conftests`, before any conftest is read: this module is a
plugin loaded with `-p` (pyproject's addopts) and rewrites the variable first. The
processes the tests start (uvicorn workers, management commands) inherit it.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

# The Redis the tests that need one use when REDIS_URL is unset (the rate limiter
# against both stores, the multi-worker processes), emptied by them: a database no
# other program on the machine should use. LOCAL_REDIS_URL moves it.
DEFAULT_LOCAL_REDIS = "redis://127.0.0.1:6379/10"


def worker_number() -> int | None:
    """0 for xdist's worker gw0, 1 for gw1, ...; None outside a worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return int(worker.removeprefix("gw")) if worker else None


def for_this_worker(url: str) -> str:
    """`url` with the Redis database this process owns: base + 1 + worker number."""
    number = worker_number()
    if number is None:
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + 1 + number}"))


def local_redis_url() -> str:
    return for_this_worker(os.environ.get("LOCAL_REDIS_URL", DEFAULT_LOCAL_REDIS))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    if os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = for_this_worker(os.environ["REDIS_URL"])
