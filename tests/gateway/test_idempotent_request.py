"""IdempotentRequest: one holder per (account, key), even when claims race on many threads.

The threads stand in for workers: each claims through its own database connection at
the same moment (a barrier), so on PostgreSQL the unique constraint decides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from gateway.idempotency import delete_expired_idempotent_requests
from gateway.models import IdempotentRequest

pytestmark = pytest.mark.django_db(transaction=True)

RACERS = 8


def race(claim: Callable[[int], IdempotentRequest | None]) -> list[IdempotentRequest | None]:
    """Run `claim(i)` on RACERS threads released together; their results, in any order."""
    barrier = threading.Barrier(RACERS, timeout=10)
    results: list[IdempotentRequest | None] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results.append(claim(i))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors, errors
    assert len(results) == RACERS
    return results


def claim(account, request_id: str, key: str = "k", body: str = "h") -> IdempotentRequest | None:
    return IdempotentRequest.objects.claim(
        account_id=account.pk, key=key, body_sha256=body, request_id=request_id
    )


def age(entry_key: str, by: timedelta) -> None:
    IdempotentRequest.objects.filter(key=entry_key).update(created_at=timezone.now() - by)


def test_of_racing_first_claims_exactly_one_wins(customer):
    results = race(lambda i: claim(customer.account, f"req_{i}"))

    assert results.count(None) == 1
    entry = IdempotentRequest.objects.get()
    assert all(r is not None and r.request_id == entry.request_id for r in results if r)
    assert entry.state == IdempotentRequest.State.RUNNING


def test_of_racing_takeovers_of_a_lapsed_entry_exactly_one_wins(customer):
    assert claim(customer.account, "req_old") is None
    age("k", timedelta(hours=24, seconds=1))

    results = race(lambda i: claim(customer.account, f"req_{i}"))

    assert results.count(None) == 1
    assert IdempotentRequest.objects.get().request_id != "req_old"


def test_a_running_entry_is_abandoned_after_the_hold_ttl(customer, settings):
    settings.HOLD_TTL_SECONDS = 60
    assert claim(customer.account, "req_dead") is None
    age("k", timedelta(seconds=59))
    assert claim(customer.account, "req_retry").request_id == "req_dead"

    age("k", timedelta(seconds=61))

    assert claim(customer.account, "req_retry") is None
    assert IdempotentRequest.objects.get().request_id == "req_retry"


def test_a_done_entry_is_replayed_for_24_hours(customer, settings):
    settings.HOLD_TTL_SECONDS = 60
    assert claim(customer.account, "req_first") is None
    IdempotentRequest.objects.record(
        account_id=customer.account.pk,
        key="k",
        request_id="req_first",
        status=200,
        content_type="application/json",
        headers={},
        body=b"{}",
    )
    age("k", timedelta(hours=23, minutes=59))

    holder = claim(customer.account, "req_retry")

    assert holder is not None
    assert holder.state == IdempotentRequest.State.DONE
    assert bytes(holder.body) == b"{}"


def test_release_forgets_only_the_running_claim_of_that_request(customer):
    assert claim(customer.account, "req_a") is None
    IdempotentRequest.objects.release(account_id=customer.account.pk, key="k", request_id="req_b")
    assert IdempotentRequest.objects.exists()

    IdempotentRequest.objects.release(account_id=customer.account.pk, key="k", request_id="req_a")

    assert not IdempotentRequest.objects.exists()


def test_the_sweep_deletes_entries_past_24_hours_only(make_customer):
    alice, bob = make_customer(), make_customer()
    assert claim(alice.account, "req_old", key="old") is None
    assert claim(bob.account, "req_new", key="new") is None
    age("old", timedelta(hours=24))
    age("new", timedelta(hours=23))

    assert delete_expired_idempotent_requests() == 1

    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["new"]
