"""The chat socket, driven through the real ASGI application (console.asgi)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from billing.models import Account, Hold, LedgerEntry, UsageRecord
from chat.models import Message
from gateway.providers.demo import demo_answer
from tests.chat.conftest import TIMEOUT, ask, frames_until, open_socket
from tests.fakes.upstream import ErrorEvent, Fail

pytestmark = pytest.mark.django_db(transaction=True)

RENDERED = '-tail" hx-swap-oob="innerHTML">'


async def test_a_message_streams_the_demo_answer_and_is_billed_once(
    connect_as, customer, conversation, fast_demo
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "Hello there")
        frames = await frames_until(communicator, "Answer complete")

    question, answer = Message.objects.filter(conversation=conversation).order_by("id")
    assert (question.role, question.content) == ("user", "Hello there")
    expected = demo_answer({"messages": [{"role": "user", "content": "Hello there"}]})
    assert answer.role == "assistant"
    assert answer.status == Message.Status.OK
    assert answer.content == expected

    started = frames[0]
    assert 'id="messages" hx-swap-oob="beforeend"' in started
    assert "Hello there" in started
    assert f'id="answer-{answer.pk}-tail"' in started
    assert "data-generating" in started
    rendered = [f for f in frames if f'id="answer-{answer.pk}-tail" hx-swap-oob="innerHTML"' in f]
    assert rendered
    finished = frames[-1]
    assert f'id="message-{answer.pk}"' in finished
    assert 'hx-swap-oob="true"' in finished
    assert "data-generating" not in finished

    record = UsageRecord.objects.get()
    assert record.source == UsageRecord.Source.WEB
    assert record.status == UsageRecord.Status.OK
    assert record.stream is True
    assert record.api_key.kind == "web"
    assert record.api_key.user == customer.user
    assert record.request_id == answer.request_id
    assert (answer.prompt_tokens, answer.completion_tokens) == (
        record.prompt_tokens,
        record.completion_tokens,
    )
    assert answer.cost_micro_usd == record.cost_micro_usd > 0
    assert f"{record.total_tokens} tokens" in finished
    usage = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE)
    assert [e.amount_micro_usd for e in usage] == [-record.cost_micro_usd]
    account = Account.objects.get(pk=customer.account.pk)
    assert account.balance_micro_usd == customer.account.balance_micro_usd - record.cost_micro_usd
    assert account.held_micro_usd == 0
    assert not Hold.objects.exists()
    conversation.refresh_from_db()
    assert conversation.title == "Hello there"


async def test_the_next_question_carries_the_history(connect_as, customer, conversation, fast_demo):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "First question")
        await frames_until(communicator, "Answer complete")
        await ask(communicator, "Second question")
        await frames_until(communicator, "Answer complete")

    first, second = UsageRecord.objects.order_by("created_at", "id")
    assert second.prompt_tokens > first.prompt_tokens + first.completion_tokens
    assert conversation.messages.count() == 4
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE).count() == 2


async def test_one_web_key_is_minted_and_kept_off_the_keys_page(
    connect_as, client, customer, conversation, fast_demo
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "One")
        await frames_until(communicator, "Answer complete")
        await ask(communicator, "Two")
        await frames_until(communicator, "Answer complete")

    web_keys = customer.user.api_keys.filter(kind="web")
    assert web_keys.count() == 1
    assert set(UsageRecord.objects.values_list("api_key", flat=True)) == {web_keys.get().pk}
    client.force_login(customer.user)
    page = client.get("/account/keys/")
    assert "Web chat" not in page.content.decode()


async def test_another_users_conversation_is_refused(
    connect_as, make_customer, conversation, fast_demo
):
    outsider = make_customer()
    communicator = connect_as(outsider.user, conversation.pk)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    assert code == 4404
    await communicator.disconnect()
    assert not Message.objects.exists()


async def test_an_anonymous_visitor_is_refused(connect_as, conversation, fast_demo):
    communicator = connect_as(None, conversation.pk)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    assert code == 4403
    await communicator.disconnect()


async def test_a_missing_conversation_is_refused(connect_as, customer, fast_demo):
    communicator = connect_as(customer.user, 999_999)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    assert code == 4404
    await communicator.disconnect()


async def test_insufficient_credit_shows_the_402_message_and_bills_nothing(
    connect_as, make_customer, make_conversation, fast_demo
):
    poor = make_customer(credit_micro_usd=100)
    conversation = make_conversation(poor.user)
    async with open_socket(connect_as(poor.user, conversation.pk)) as communicator:
        await ask(communicator, "Hello")
        frames = await frames_until(communicator, "The answer failed")

    assert "Insufficient credits" in frames[-1]
    assert "Add credit" in frames[-1]
    answer = Message.objects.get(role="assistant")
    assert answer.status == Message.Status.ERROR
    assert answer.error.startswith("Insufficient credits")
    assert (answer.content, answer.cost_micro_usd, answer.request_id) == ("", 0, "")
    # The refusal is in the request log (written by the worker just after), costing nothing.
    for _ in range(100):
        if UsageRecord.objects.exists():
            break
        await asyncio.sleep(0.05)
    refused = UsageRecord.objects.get()
    assert (refused.status, refused.http_status, refused.source) == ("refused", 402, "web")
    assert (refused.error_code, refused.cost_micro_usd) == ("insufficient_credits", 0)
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE).exists()
    account = Account.objects.get(pk=poor.account.pk)
    assert (account.balance_micro_usd, account.held_micro_usd) == (100, 0)


async def test_a_rate_limited_web_key_shows_the_429_message(
    connect_as, customer, conversation, fast_demo
):
    from chat.models import web_key_for

    web_key_for(customer.user).__class__.objects.filter(kind="web").update(rpm_limit=1)
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "One")
        await frames_until(communicator, "Answer complete")
        await ask(communicator, "Two")
        frames = await frames_until(communicator, "The answer failed")

    assert "Rate limit reached: 1 requests per minute" in frames[-1]
    assert UsageRecord.objects.settled().count() == 1


async def test_a_question_the_form_rejects_is_not_stored(
    connect_as, customer, conversation, fast_demo
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "   ")
        empty = await communicator.receive_from(timeout=TIMEOUT)
        await communicator.send_to(text_data="not json")
        garbled = await communicator.receive_from(timeout=TIMEOUT)

    assert "Type a message first." in empty
    assert "unexpected" in garbled
    assert not Message.objects.exists()


async def test_disconnecting_mid_stream_cancels_and_bills_what_was_generated(
    connect_as, customer, conversation, fast_demo, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 50
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "Tell me a long story")
        await frames_until(communicator, RENDERED)
        await frames_until(communicator, RENDERED)

    record = UsageRecord.objects.get()
    assert record.status == UsageRecord.Status.CANCELLED
    assert record.source == UsageRecord.Source.WEB
    answer = Message.objects.get(role="assistant")
    assert answer.status == Message.Status.CANCELLED
    assert answer.content
    full = demo_answer({"messages": [{"role": "user", "content": "Tell me a long story"}]})
    assert full.startswith(answer.content)
    assert answer.content != full
    assert answer.request_id == record.request_id
    assert answer.cost_micro_usd == record.cost_micro_usd
    usage = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE)
    assert [e.amount_micro_usd for e in usage] == [-record.cost_micro_usd]
    assert not Hold.objects.exists()


async def test_stop_ends_the_answer_and_keeps_the_socket_open(
    connect_as, customer, conversation, fast_demo, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 50
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "Tell me a long story")
        await frames_until(communicator, RENDERED)
        await communicator.send_to(text_data=orjson.dumps({"action": "stop"}).decode())
        frames = await frames_until(communicator, "Stopped.")
        settings.DEMO_TOKEN_DELAY_MS = 0
        await ask(communicator, "And now?")
        await frames_until(communicator, "Answer complete")

    assert "data-generating" not in frames[-1]
    statuses = list(
        UsageRecord.objects.order_by("created_at", "id").values_list("status", flat=True)
    )
    assert statuses == [UsageRecord.Status.CANCELLED, UsageRecord.Status.OK]
    assert list(
        Message.objects.filter(role="assistant").order_by("id").values_list("status", flat=True)
    ) == [Message.Status.CANCELLED, Message.Status.OK]


async def test_an_upstream_that_fails_before_answering_shows_the_503(
    connect_as, customer, upstream_conversation, fake_upstream
):
    fake_upstream.script("primary-model", Fail(status=503, retry_after=1))
    async with open_socket(connect_as(customer.user, upstream_conversation.pk)) as communicator:
        await ask(communicator, "Hello")
        frames = await frames_until(communicator, "The answer failed")

    assert "No healthy upstream for &#x27;gpt-test&#x27;" in frames[-1]
    record = UsageRecord.objects.get()
    assert (record.status, record.cost_micro_usd, record.source) == ("error", 0, "web")
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE).exists()
    assert Message.objects.get(role="assistant").status == Message.Status.ERROR


async def test_a_stream_cut_mid_answer_keeps_the_text_and_bills_it(
    connect_as, customer, upstream_conversation, fake_upstream
):
    fake_upstream.script("primary-model", ErrorEvent(after_chunks=3))
    async with open_socket(connect_as(customer.user, upstream_conversation.pk)) as communicator:
        await ask(communicator, "Hello")
        frames = await frames_until(communicator, "The answer failed")

    assert "Upstream failed mid-stream" in frames[-1]
    answer = Message.objects.get(role="assistant")
    record = UsageRecord.objects.get()
    assert answer.status == Message.Status.ERROR
    assert answer.content
    assert (record.status, record.source) == ("error", "web")
    assert answer.cost_micro_usd == record.cost_micro_usd > 0
    usage = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE)
    assert [e.amount_micro_usd for e in usage] == [-record.cost_micro_usd]
