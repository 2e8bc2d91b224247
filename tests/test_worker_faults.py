"""Holds under live and dead workers: a uvicorn process on this run's database and Redis.

A live call's hold is refreshed, so the sweeper never releases it however long the call
runs; a worker killed mid-stream (kill -9) leaves a hold that records what it had
relayed, and the sweeper bills that instead of releasing it for nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from django.utils import timezone

from billing.ledger import release_expired_holds
from billing.models import Hold, UsageRecord
from tests.fakes.upstream import Ok
from tests.test_multiworker import (
    MESSAGES,
    Worker,
    assert_books_balance,
    catalog,
    shared_redis,
    worker_env,
)

__all__ = ["catalog", "shared_redis"]

pytestmark = pytest.mark.django_db(transaction=True)

HOLD_TTL_SECONDS = 2


@pytest.fixture
def worker(transactional_db, tmp_path, shared_redis) -> Iterator[Worker]:
    env = worker_env(
        tmp_path,
        shared_redis,
        HOLD_TTL_SECONDS=str(HOLD_TTL_SECONDS),
        HOLD_REFRESH_SECONDS="1",
    )
    process = Worker(env, tmp_path / "worker.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def stream(url: str, secret: str, received: list[bytes], cut: bool = False) -> None:
    """Read a stream into `received`; with `cut`, the server is expected to die midway."""
    try:
        _read(url, secret, received)
    except httpx.RemoteProtocolError:
        if not cut:
            raise


def _read(url: str, secret: str, received: list[bytes]) -> None:
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": "mw-model", "messages": MESSAGES, "max_tokens": 200, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    ) as response:
        received.extend(response.iter_bytes())


def test_the_sweeper_never_releases_the_hold_of_a_call_still_running(
    worker, catalog, customer, fake_upstream
):
    fake_upstream.script("mw-upstream", Ok(text="word " * 50, delay=0.1))
    received: list[bytes] = []
    client = threading.Thread(target=stream, args=(worker.url, customer.secret, received))
    client.start()

    deadline = time.monotonic() + 30
    while not Hold.objects.filter(account=customer.account).exists():
        assert time.monotonic() < deadline, "the call never took its hold"
        time.sleep(0.05)
    sweeps = 0
    while client.is_alive() and time.monotonic() < deadline:
        time.sleep(0.5)
        release_expired_holds()
        sweeps += 1
        if client.is_alive():
            assert Hold.objects.filter(account=customer.account).exists(), (
                f"the sweeper released a live call's hold after {sweeps * 0.5:.1f} s"
            )
    client.join(timeout=5)

    assert sweeps * 0.5 > 2 * HOLD_TTL_SECONDS, "the call did not outlive its hold's TTL"
    assert b"data: [DONE]" in b"".join(received)
    record = UsageRecord.objects.get(account=customer.account)
    assert record.status == UsageRecord.Status.OK
    assert record.completion_tokens == 50
    assert record.flags == ""
    assert record.cost_micro_usd == 50
    assert_books_balance(customer.account)


def test_a_worker_killed_mid_stream_leaves_a_hold_the_sweeper_bills_for_what_it_relayed(
    worker, catalog, customer, fake_upstream
):
    fake_upstream.script("mw-upstream", Ok(text="word " * 100, delay=0.05))
    received: list[bytes] = []
    client = threading.Thread(
        target=stream, args=(worker.url, customer.secret, received, True), daemon=True
    )
    client.start()
    deadline = time.monotonic() + 30
    while b"".join(received).count(b"data: ") < 30:
        assert time.monotonic() < deadline, "the stream never got going"
        time.sleep(0.02)

    worker.process.kill()
    worker.process.wait(timeout=5)
    hold = Hold.objects.get(account=customer.account)
    assert hold.progress is not None, "the worker never recorded its progress"
    while hold.expires_at > timezone.now():
        assert time.monotonic() < deadline
        time.sleep(0.1)

    release_expired_holds()

    record = UsageRecord.objects.get(account=customer.account)
    assert record.status == UsageRecord.Status.ERROR
    assert "interrupted" in record.flags.split()
    assert 0 < record.completion_tokens <= 100
    assert record.cost_micro_usd == record.completion_tokens
    assert_books_balance(customer.account)
