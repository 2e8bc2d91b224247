"""Money under concurrency: parallel requests on a small balance never overspend it.

Fifty requests race against a balance that covers exactly five worst-case holds, through
the real ASGI app under uvicorn. The books must balance afterwards: no negative
balance, nothing left held, one usage record per answered request, the ledger equal to
the balance. Then the ledger's own guarantees: settling twice charges once, the
sweeper releases expired holds once, credits are idempotent, entries are append-only.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db.models import Sum
from django.utils import timezone

from billing.ledger import credit_account, release_expired_holds, reserve_credits, settle
from billing.models import Account, Hold, LedgerEntry, UsageRecord
from billing.money import token_cost
from gateway import calls, tokens
from gateway.management.commands.synccatalog import DEMO_MODEL
from gateway.providers.demo import demo_answer
from gateway.tokens import encoding
from tests.gateway.prompts import bound_of, count_unkept, fresh_text

PARALLEL = 50
AFFORDABLE = 5
MAX_TOKENS = 40
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Explain why a balance must never be spent twice, please."},
]


def cost_at_demo_prices(prompt_tokens: int, completion_tokens: int) -> int:
    return token_cost(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=0,
        input_price=DEMO_MODEL["input_price"],
        output_price=DEMO_MODEL["output_price"],
        cached_price=DEMO_MODEL["cached_input_price"],
    )


def worst_case(messages: list[dict[str, Any]] = MESSAGES, *, bound: bool = False) -> int:
    """The hold calls.open_call places for one request (no markup): for the prompt's
    count, or for its bound."""
    prompt = bound_of(messages) if bound else count_unkept(messages)
    reserved_prompt = int(prompt * calls.PROMPT_MARGIN) + calls.PROMPT_SLACK_TOKENS
    return cost_at_demo_prices(reserved_prompt, MAX_TOKENS)


def real_cost(messages: list[dict[str, Any]] = MESSAGES) -> int:
    """What one answered request costs: the demo is cut at max_tokens."""
    return cost_at_demo_prices(count_unkept(messages), MAX_TOKENS)


def agent_sized(chars: int) -> list[dict[str, Any]]:
    """A prompt no request has sent before, of `chars` characters more than MESSAGES."""
    return [*MESSAGES, {"role": "user", "content": fresh_text(chars)}]


@pytest.fixture
def fast_demo(settings: Any, demo_catalog: None) -> None:
    settings.DEMO_TOKEN_DELAY_MS = 2
    settings.PRICE_MARKUP_PERCENT = 0


def test_the_race_is_set_up_so_exactly_five_requests_can_win() -> None:
    answer = encoding().encode_ordinary(demo_answer({"messages": MESSAGES}))
    assert len(answer) > MAX_TOKENS
    worst, cost = worst_case(), real_cost()
    assert 0 < cost < worst
    # Five settled requests give back less than one more hold needs.
    assert AFFORDABLE * (worst - cost) < worst


def snapshot(account_id: int) -> dict[str, Any]:
    account = Account.objects.get(pk=account_id)
    records = UsageRecord.objects.filter(account_id=account_id)
    usage = records.settled()
    return {
        "balance": account.balance_micro_usd,
        "held": account.held_micro_usd,
        "ledger": account.ledger_sum(),
        "holds": Hold.objects.filter(account_id=account_id).count(),
        "flagged": LedgerEntry.objects.filter(account_id=account_id, flagged=True).count(),
        "usage": {r.request_id: r for r in usage},
        # The request log's refused calls (written after the answer, by each worker).
        "refusals": list(records.filter(status=UsageRecord.Status.REFUSED)),
        "charged": usage.aggregate(total=Sum("cost_micro_usd"))["total"] or 0,
    }


async def watch_balance(account_id: int, done: asyncio.Event, seen: list[int]) -> None:
    """Samples balance and available credit while the race runs (bounded)."""
    read = sync_to_async(
        lambda: Account.objects.values_list("balance_micro_usd", "held_micro_usd").get(
            pk=account_id
        )
    )
    for _ in range(2_000):
        balance, held = await read()
        seen.extend([balance, balance - held])
        if done.is_set():
            return
        await asyncio.sleep(0.005)


async def settled(account_id: int) -> dict[str, Any]:
    """The books once every hold is gone (streams settle as their body ends)."""
    state = await sync_to_async(snapshot)(account_id)
    for _ in range(200):
        if state["holds"] == 0:
            break
        await asyncio.sleep(0.025)
        state = await sync_to_async(snapshot)(account_id)
    return state


def stream_usage(text: str) -> dict[str, Any]:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = [orjson.loads(e)["usage"] for e in events[:-1] if orjson.loads(e).get("usage")]
    assert len(usage) == 1
    return usage[0]


async def race(
    base_url: str, secret: str, stream: bool, messages: list[dict[str, Any]] = MESSAGES
) -> list[httpx.Response]:
    """PARALLEL identical requests at once; every one is answered (bounded timeouts)."""
    payload: dict[str, Any] = {"model": "demo", "messages": messages, "max_tokens": MAX_TOKENS}
    if stream:
        payload.update(stream=True, stream_options={"include_usage": True})
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=PARALLEL),
    ) as client:
        return await asyncio.gather(
            *(client.post("/v1/chat/completions", json=payload) for _ in range(PARALLEL))
        )


async def watched_race(
    customer: Any, base_url: str, stream: bool, messages: list[dict[str, Any]] = MESSAGES
) -> tuple[list[httpx.Response], list[int]]:
    """race(), and the account's balance and available credit sampled meanwhile."""
    done, seen = asyncio.Event(), []
    watcher = asyncio.create_task(watch_balance(customer.account.pk, done, seen))
    responses = await race(base_url, customer.secret, stream, messages)
    done.set()
    await watcher
    return responses, seen


def split(
    responses: list[httpx.Response], refusal: str, stream: bool
) -> tuple[dict[str, int], set[str]]:
    """Costs of the answered requests by request id, and the ids of the refused ones."""
    costs: dict[str, int] = {}
    refused: set[str] = set()
    for response in responses:
        request_id = response.headers["x-request-id"]
        if response.status_code != 200:
            assert response.status_code == 402
            assert response.json()["error"]["code"] == refusal
            refused.add(request_id)
        elif stream:
            costs[request_id] = stream_usage(response.text)["cost_micro_usd"]
        else:
            costs[request_id] = int(response.headers["X-Request-Cost-Micro-Usd"])
    return costs, refused


def assert_books_balance(
    books: dict[str, Any],
    costs: dict[str, int],
    refused: set[str],
    stream: bool,
    messages: list[dict[str, Any]] = MESSAGES,
) -> None:
    assert books["balance"] >= 0
    assert books["held"] == 0 and books["holds"] == 0
    assert books["ledger"] == books["balance"]
    assert books["flagged"] == 0
    assert set(books["usage"]) == set(costs)
    assert not refused & set(books["usage"])
    assert {r.request_id for r in books["refusals"]} <= refused
    assert all(r.cost_micro_usd == 0 for r in books["refusals"])
    assert {rid: r.cost_micro_usd for rid, r in books["usage"].items()} == costs
    assert all(record.stream is stream for record in books["usage"].values())
    assert all(cost == real_cost(messages) for cost in costs.values())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_parallel_requests_never_spend_more_than_the_balance(
    fast_demo: None, make_customer: Any, live_server_url: str, stream: bool
) -> None:
    customer = await sync_to_async(make_customer)(credit_micro_usd=AFFORDABLE * worst_case())
    start = customer.account.balance_micro_usd
    responses, seen = await watched_race(customer, live_server_url, stream)

    costs, refused = split(responses, "insufficient_credits", stream)
    assert len(costs) == AFFORDABLE and len(refused) == PARALLEL - AFFORDABLE
    books = await settled(customer.account.pk)
    assert min(seen) >= 0
    assert_books_balance(books, costs, refused, stream)
    assert books["charged"] == start - books["balance"] == sum(costs.values())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_parallel_requests_never_spend_more_than_the_keys_cap(
    fast_demo: None, make_customer: Any, live_server_url: str, stream: bool
) -> None:
    cap = AFFORDABLE * worst_case()
    customer = await sync_to_async(make_customer)(spend_cap_micro_usd=cap)
    start = customer.account.balance_micro_usd

    costs, refused = split(
        await race(live_server_url, customer.secret, stream), "spend_cap_exceeded", stream
    )

    assert len(costs) == AFFORDABLE and len(refused) == PARALLEL - AFFORDABLE
    books = await settled(customer.account.pk)
    assert_books_balance(books, costs, refused, stream)
    assert books["charged"] == start - books["balance"] == sum(costs.values()) <= cap


LARGE_PROMPT_CHARS = 24_000  # more new text than tokens.EXACT_CHARS, within demo's window


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_parallel_large_prompts_on_a_small_balance_are_held_for_their_counts(
    fast_demo: None, make_customer: Any, live_server_url: str, stream: bool
) -> None:
    """The bound cannot be spared by five counted holds' worth: every request is held
    for its count, and exactly as many win as with a prompt that is counted at once."""
    messages = agent_sized(LARGE_PROMPT_CHARS)
    assert tokens._kept_count(messages[-1]["content"]) is None
    assert calls.BOUND_HEADROOM * worst_case(messages, bound=True) > AFFORDABLE * worst_case(
        messages
    )
    customer = await sync_to_async(make_customer)(
        credit_micro_usd=AFFORDABLE * worst_case(messages)
    )
    start = customer.account.balance_micro_usd
    responses, seen = await watched_race(customer, live_server_url, stream, messages)

    costs, refused = split(responses, "insufficient_credits", stream)
    assert len(costs) == AFFORDABLE and len(refused) == PARALLEL - AFFORDABLE
    books = await settled(customer.account.pk)
    assert min(seen) >= 0
    assert_books_balance(books, costs, refused, stream, messages)
    assert books["charged"] == start - books["balance"] == sum(costs.values())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_parallel_large_prompts_held_by_their_bounds_never_overspend(
    fast_demo: None, make_customer: Any, live_server_url: str, stream: bool
) -> None:
    """Credit for a few holds by the bound with their headroom: the first requests are
    held by their bounds, the later ones by their counts once the bound cannot be
    spared, and none overspends."""
    messages = agent_sized(LARGE_PROMPT_CHARS)
    assert tokens._kept_count(messages[-1]["content"]) is None
    bound = worst_case(messages, bound=True)
    credit = (calls.BOUND_HEADROOM + 2) * bound
    customer = await sync_to_async(make_customer)(credit_micro_usd=credit)
    responses, seen = await watched_race(customer, live_server_url, stream, messages)

    costs, refused = split(responses, "insufficient_credits", stream)
    assert len(costs) + len(refused) == PARALLEL
    # At least the bound holds the credit could spare, then what was left counted.
    assert len(costs) >= 3 + (2 * bound) // worst_case(messages)
    books = await settled(customer.account.pk)
    assert min(seen) >= 0
    assert_books_balance(books, costs, refused, stream, messages)
    assert books["charged"] == credit - books["balance"] == sum(costs.values()) <= credit


def reserve(customer: Any, amount: int, request_id: str) -> Any:
    return reserve_credits(
        account_id=customer.account.pk,
        amount=amount,
        request_id=request_id,
        api_key=customer.api_key,
    )


USAGE = {"model": "demo", "prompt_tokens": 10, "completion_tokens": 20, "status": "ok"}


@pytest.mark.django_db
def test_settling_the_same_request_twice_charges_once(customer: Any) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 1_000, "req_twice")

    first = settle(reservation=reservation, cost=600, usage=USAGE)
    second = settle(reservation=reservation, cost=600, usage=USAGE)

    assert second.pk == first.pk
    account = Account.objects.get(pk=customer.account.pk)
    assert account.balance_micro_usd == start - 600
    assert account.held_micro_usd == 0
    assert account.ledger_sum() == account.balance_micro_usd
    assert UsageRecord.objects.filter(request_id="req_twice").count() == 1
    assert LedgerEntry.objects.filter(idempotency_key="usage:req_twice").count() == 1


@pytest.mark.django_db
def test_a_settlement_never_charges_more_than_was_held(customer: Any) -> None:
    start = customer.account.balance_micro_usd
    record = settle(reservation=reserve(customer, 500, "req_capped"), cost=9_999, usage=USAGE)

    assert record.cost_micro_usd == 500
    assert Account.objects.get(pk=customer.account.pk).balance_micro_usd == start - 500


@pytest.mark.django_db
def test_a_hold_beyond_the_available_credit_is_refused(make_customer: Any) -> None:
    from billing.ledger import InsufficientCredits

    customer = make_customer(credit_micro_usd=1_000)
    reserve(customer, 600, "req_first")
    with pytest.raises(InsufficientCredits) as refused:
        reserve(customer, 600, "req_second")

    assert (refused.value.needed, refused.value.available) == (600, 400)
    assert Hold.objects.filter(account_id=customer.account.pk).count() == 1


@pytest.mark.django_db
def test_the_sweeper_releases_an_expired_hold_once(customer: Any) -> None:
    start = customer.account.balance_micro_usd
    reserve(customer, 700, "req_dead_worker")
    reserve(customer, 300, "req_still_running")
    Hold.objects.filter(request_id="req_dead_worker").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert release_expired_holds().released == 1
    assert release_expired_holds().released == 0

    account = Account.objects.get(pk=customer.account.pk)
    assert account.balance_micro_usd == start
    assert account.held_micro_usd == 300
    assert list(Hold.objects.values_list("request_id", flat=True)) == ["req_still_running"]


@pytest.mark.django_db
def test_a_late_settlement_after_the_sweeper_charges_once_and_leaves_held_alone(
    customer: Any,
) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 700, "req_late")
    assert release_expired_holds(now=timezone.now() + timedelta(days=1)).released == 1

    settle(reservation=reservation, cost=400, usage=USAGE)
    settle(reservation=reservation, cost=400, usage=USAGE)

    account = Account.objects.get(pk=customer.account.pk)
    assert account.held_micro_usd == 0
    assert account.balance_micro_usd == start - 400 == account.ledger_sum()


@pytest.mark.django_db
def test_a_credit_with_a_used_idempotency_key_lands_once(customer: Any) -> None:
    account = customer.account
    start = account.balance_micro_usd

    first = credit_account(
        account=account, amount=5_000, kind=LedgerEntry.Kind.PURCHASE, idempotency_key="evt_1"
    )
    again = credit_account(
        account=account, amount=5_000, kind=LedgerEntry.Kind.PURCHASE, idempotency_key="evt_1"
    )

    assert first is not None and again is None
    account.refresh_from_db()
    assert account.balance_micro_usd == start + 5_000 == account.ledger_sum()


@pytest.mark.django_db
def test_ledger_entries_are_append_only(customer: Any) -> None:
    entry = customer.account.entries.first()
    entry.amount_micro_usd += 1_000_000

    with pytest.raises(ValueError, match="append-only"):
        entry.save()

    assert customer.account.ledger_sum() == customer.account.balance_micro_usd
