"""`with_pings`, the Messages door's keep-alive: events pass through in order, a None
marks each quiet interval, closing it closes the source, and a failure reaches the
reader. Real asyncio, real timers (short ones), no server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from gateway.doors.messages import PUMPED_AHEAD, with_pings


async def source(log: list[str], pauses: dict[int, float], count: int = 5) -> AsyncGenerator[Any]:
    try:
        for index in range(count):
            if index in pauses:
                await asyncio.sleep(pauses[index])
            yield {"index": index}
        log.append("ended")
    finally:
        log.append("closed")


async def read_all(events: AsyncGenerator[Any]) -> list[Any]:
    async with contextlib.aclosing(events) as items:
        return [item async for item in items]


def test_events_pass_through_in_order_without_pings_when_never_quiet():
    log: list[str] = []
    items = asyncio.run(read_all(with_pings(source(log, {}), every=5)))

    assert items == [{"index": i} for i in range(5)]
    assert log == ["ended", "closed"]


def test_a_quiet_upstream_gets_a_ping_per_quiet_interval():
    log: list[str] = []
    items = asyncio.run(read_all(with_pings(source(log, {3: 0.35}), every=0.1)))

    events = [item for item in items if item is not None]
    assert events == [{"index": i} for i in range(5)]
    pings_before = items.index({"index": 3}) - items.index({"index": 2}) - 1
    assert 2 <= pings_before <= 4
    assert items[:3] == [{"index": 0}, {"index": 1}, {"index": 2}]


def test_closing_it_mid_stream_closes_the_source():
    log: list[str] = []

    async def read_two() -> list[Any]:
        got: list[Any] = []
        async with contextlib.aclosing(with_pings(source(log, {2: 10}), every=5)) as items:
            async for item in items:
                got.append(item)
                if len(got) == 2:
                    break
        return got

    assert asyncio.run(asyncio.wait_for(read_two(), 5)) == [{"index": 0}, {"index": 1}]
    assert log == ["closed"]


def test_a_failing_source_raises_to_the_reader():
    async def failing() -> AsyncGenerator[Any]:
        yield {"index": 0}
        raise RuntimeError("upstream broke")

    async def read() -> list[Any]:
        return await read_all(with_pings(failing(), every=5))

    with pytest.raises(RuntimeError, match="upstream broke"):
        asyncio.run(read())


def test_the_pump_reads_at_most_a_few_dozen_events_ahead_of_a_slow_reader():
    produced = [0]

    async def many() -> AsyncGenerator[Any]:
        for index in range(500):
            produced[0] += 1
            yield {"index": index}

    async def read_slowly() -> list[int]:
        ahead: list[int] = []
        got = 0
        async with contextlib.aclosing(with_pings(many(), every=5)) as items:
            async for _ in items:
                got += 1
                if got % 50 == 0:
                    await asyncio.sleep(0.01)  # the pump runs meanwhile
                    ahead.append(produced[0] - got)
        assert got == 500
        return ahead

    ahead = asyncio.run(asyncio.wait_for(read_slowly(), 10))

    assert max(ahead) <= PUMPED_AHEAD + 1
    assert ahead[0] >= PUMPED_AHEAD - 1, "the pump did not read ahead while the reader paused"
