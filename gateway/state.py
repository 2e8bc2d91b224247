"""Per-process state that tests (and admin changes) need to reset in one place."""

from __future__ import annotations

from collections.abc import Callable

_resetters: list[Callable[[], None]] = []


def on_reset(func: Callable[[], None]) -> Callable[[], None]:
    _resetters.append(func)
    return func


def reset_process_state() -> None:
    """Forget cached keys, the catalog snapshot, rate-limit storage, cooldowns and
    outages."""
    from gateway import auth, catalog, outages, ratelimit, routing  # noqa: F401 - registers resetters

    for reset in _resetters:
        reset()
