"""A client that leaves while its credit is being held gets the hold released at once."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from billing.models import Account, Hold, UsageRecord
from gateway import calls
from gateway.auth import key_info

pytestmark = pytest.mark.django_db(transaction=True)


async def test_cancelling_during_the_reservation_releases_the_hold(
    customer, demo_catalog, monkeypatch
):
    real_reserve = calls._reserve_async
    reserved = asyncio.Event()

    async def slow_reserve(**kwargs):
        reservation = await real_reserve(**kwargs)
        reserved.set()
        await asyncio.sleep(0.5)
        return reservation

    monkeypatch.setattr(calls, "_reserve_async", slow_reserve)
    key = await key_info(customer.api_key.prefix)
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    preparing = asyncio.create_task(calls.open_call(key=key, body=body, request_id="req_gone"))
    await asyncio.wait_for(reserved.wait(), timeout=5)

    preparing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(preparing, timeout=10)

    record = await UsageRecord.objects.aget(request_id="req_gone")
    assert (record.status, record.cost_micro_usd) == (UsageRecord.Status.CANCELLED, 0)
    assert not await Hold.objects.filter(request_id="req_gone").aexists()
    account = await Account.objects.aget(pk=customer.account.pk)
    assert account.held_micro_usd == 0
    assert await sync_to_async(account.ledger_sum)() == account.balance_micro_usd
