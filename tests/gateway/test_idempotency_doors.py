"""`@idempotent` on any front door: what a first try that ends without an answer leaves.

Each door here is a small view under `api_view` that bills through the real ledger
(a hold, then a settlement) and then fails or is cancelled, so the rule is checked for
every door to come, not only for chat completions: a first try that was billed is
answered from what it left (never run nor billed again), one that was not is forgotten.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import pytest
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test import AsyncRequestFactory

from billing.ledger import reserve_credits, settle
from billing.models import LedgerEntry, UsageRecord
from gateway.doors.messages import anthropic_error
from gateway.errors import GatewayError, openai_error
from gateway.idempotency import idempotent
from gateway.models import IdempotentRequest
from gateway.sync import db_sync_to_async
from gateway.views import ErrorRenderer, api_view

pytestmark = pytest.mark.django_db(transaction=True)

COST = 1_234


def _bill(request: HttpRequest) -> None:
    key = request.api_key  # type: ignore[attr-defined]
    reservation = reserve_credits(
        account_id=key.account_id, amount=COST, request_id=request.request_id, api_key=key.key
    )
    settle(reservation=reservation, cost=COST, usage={"model": "door-test", "status": "ok"})


bill = db_sync_to_async(_bill)


def door(
    behaviour: Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    render_error: ErrorRenderer = openai_error,
) -> tuple:
    """A POST view under api_view and @idempotent, and the request ids it ran for."""
    runs: list[str] = []

    @api_view(("POST",), render_error=render_error)
    @idempotent
    async def view(request: HttpRequest) -> HttpResponseBase:
        runs.append(request.request_id)  # type: ignore[attr-defined]
        return await behaviour(request)

    return view, runs


def request_for(customer, key: str = "door-key", body: bytes = b'{"x": 1}') -> HttpRequest:
    return AsyncRequestFactory().post(
        "/v1/door",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {customer.secret}", "Idempotency-Key": key},
    )


def error_of(response: HttpResponseBase) -> dict:
    return orjson.loads(response.content)["error"]  # type: ignore[attr-defined]


async def test_a_5xx_after_the_call_was_billed_is_replayed_and_not_run_again(customer):
    async def billed_then_broken(request: HttpRequest) -> HttpResponse:
        await bill(request)
        raise RuntimeError("work after the commit failed")

    view, runs = door(billed_then_broken)

    first = await view(request_for(customer))
    second = await view(request_for(customer))

    assert first.status_code == second.status_code == 500
    assert error_of(second) == error_of(first)
    assert second["Idempotent-Replayed"] == "true"
    assert second["x-request-id"] == first["x-request-id"] == runs[0]
    assert second["x-should-retry"] == "false"
    assert len(runs) == 1
    assert await UsageRecord.objects.filter(account_id=customer.account.pk).acount() == 1
    usage = LedgerEntry.objects.filter(account_id=customer.account.pk, kind="usage")
    assert [e.amount_micro_usd async for e in usage] == [-COST]


async def test_an_error_after_billing_keeps_the_status_the_first_client_saw(customer):
    async def billed_then_refused(request: HttpRequest) -> HttpResponse:
        await bill(request)
        raise GatewayError(502, "Upstream failed after answering.", code="upstream_error")

    view, runs = door(billed_then_refused)

    first = await view(request_for(customer))
    second = await view(request_for(customer))

    assert first.status_code == second.status_code == 502
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert len(runs) == 1


async def test_a_failure_before_anything_was_billed_lets_the_retry_run(customer):
    async def unavailable(request: HttpRequest) -> HttpResponse:
        raise GatewayError(503, "No healthy upstream.", code="upstream_unavailable")

    view, runs = door(unavailable)

    first = await view(request_for(customer))
    second = await view(request_for(customer))

    assert first.status_code == second.status_code == 503
    assert not second.has_header("Idempotent-Replayed")
    assert len(runs) == 2
    assert not await IdempotentRequest.objects.aexists()


async def test_an_unexpected_error_before_billing_lets_the_retry_run(customer):
    async def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("a bug before the hold")

    view, runs = door(broken)

    assert (await view(request_for(customer))).status_code == 500
    assert (await view(request_for(customer))).status_code == 500
    assert len(runs) == 2


async def test_a_client_gone_after_billing_is_told_so_on_retry_and_not_billed_again(customer):
    billed = asyncio.Event()

    async def billed_then_waits(request: HttpRequest) -> HttpResponse:
        await bill(request)
        billed.set()
        await asyncio.sleep(30)
        raise AssertionError("the client was meant to leave first")

    view, runs = door(billed_then_waits)
    first = asyncio.ensure_future(view(request_for(customer)))
    await asyncio.wait_for(billed.wait(), 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    retry = await view(request_for(customer))

    assert retry.status_code == 409
    error = error_of(retry)
    assert error["code"] == "idempotency_key_cancelled"
    assert runs[0] in error["message"]
    assert retry["x-request-id"] == runs[0]
    assert retry["Idempotent-Replayed"] == "true"
    assert retry["x-should-retry"] == "false"
    assert len(runs) == 1
    assert await UsageRecord.objects.filter(account_id=customer.account.pk).acount() == 1


async def test_a_client_gone_before_billing_lets_the_retry_run(customer):
    started = asyncio.Event()

    async def waits(request: HttpRequest) -> HttpResponse:
        started.set()
        await asyncio.sleep(30)
        raise AssertionError("the client was meant to leave first")

    view, runs = door(waits)
    first = asyncio.ensure_future(view(request_for(customer)))
    await asyncio.wait_for(started.wait(), 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    assert not await IdempotentRequest.objects.aexists()
    started.clear()
    second = asyncio.ensure_future(view(request_for(customer)))
    await asyncio.wait_for(started.wait(), 5)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert len(runs) == 2


async def test_the_decorator_needs_no_query_without_the_header(customer, monkeypatch):
    async def ok(request: HttpRequest) -> HttpResponse:
        return HttpResponse(b"{}", content_type="application/json")

    def no_queries(*args: object, **kwargs: object) -> None:
        raise AssertionError("the idempotency table was queried without the header")

    monkeypatch.setattr(IdempotentRequest.objects, "claim", no_queries)
    view, runs = door(ok)
    request = AsyncRequestFactory().post(
        "/v1/door",
        data=b"{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {customer.secret}"},
    )

    assert (await view(request)).status_code == 200
    assert len(runs) == 1


async def test_what_is_left_for_a_retry_is_in_the_doors_own_error_shape(customer):
    billed = asyncio.Event()

    async def billed_then_waits(request: HttpRequest) -> HttpResponse:
        await bill(request)
        billed.set()
        await asyncio.sleep(30)
        raise AssertionError("the client was meant to leave first")

    async def billed_then_broken(request: HttpRequest) -> HttpResponse:
        await bill(request)
        raise RuntimeError("work after the commit failed")

    view, _ = door(billed_then_waits, anthropic_error)
    first = asyncio.ensure_future(view(request_for(customer)))
    await asyncio.wait_for(billed.wait(), 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    left = await view(request_for(customer))
    broken, _ = door(billed_then_broken, anthropic_error)
    await broken(request_for(customer, key="other-key"))
    replayed = await broken(request_for(customer, key="other-key"))

    for response, status, kind in (
        (left, 409, "invalid_request_error"),
        (replayed, 500, "api_error"),
    ):
        assert response.status_code == status
        assert response["Idempotent-Replayed"] == "true"
        payload = orjson.loads(response.content)
        assert payload["type"] == "error" and payload["error"]["type"] == kind
