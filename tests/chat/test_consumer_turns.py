"""Regenerate, edit-and-resend, retry, per-conversation settings and trimming over the
chat socket, through the real ASGI application and the engine's one settlement."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from billing.models import Account, Hold, LedgerEntry, UsageRecord
from chat.context import answer_room
from chat.models import MAX_MESSAGE_CHARS, Message
from gateway.catalog import get_catalog, invalidate_catalog
from gateway.models import Model
from gateway.routing import forget_cooldowns
from gateway.tokens import count_prompt
from tests.chat.conftest import TIMEOUT, act, ask, frames_until, open_socket
from tests.fakes.upstream import Fail

pytestmark = pytest.mark.django_db(transaction=True)

DONE = "Answer complete"


def usage_debits() -> list[int]:
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE).order_by("id")
    return [-e.amount_micro_usd for e in entries]


def assert_books_balance(customer) -> None:
    """Every call was debited once, at its recorded cost, and nothing is still held."""
    records = list(UsageRecord.objects.settled().order_by("created_at", "id"))
    assert usage_debits() == [r.cost_micro_usd for r in records if r.cost_micro_usd]
    account = Account.objects.get(pk=customer.account.pk)
    spent = sum(r.cost_micro_usd for r in records)
    assert account.balance_micro_usd == customer.account.balance_micro_usd - spent
    assert account.held_micro_usd == 0
    assert not Hold.objects.exists()


async def test_regenerate_is_billed_as_one_new_call_and_the_old_answer_stays_billed(
    connect_as, customer, conversation, fast_demo
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "Name a colour")
        await frames_until(communicator, DONE)
        await act(communicator, "regenerate")
        frames = await frames_until(communicator, DONE)

    question, old, new = Message.objects.order_by("id")
    assert (old.replaced, new.replaced, question.replaced) == (True, False, False)
    first, second = UsageRecord.objects.settled().order_by("created_at", "id")
    assert (old.request_id, new.request_id) == (first.request_id, second.request_id)
    assert old.cost_micro_usd == first.cost_micro_usd > 0
    assert new.cost_micro_usd == second.cost_micro_usd > 0
    # The same question was asked again, with no trace of the replaced answer.
    assert second.prompt_tokens == first.prompt_tokens
    assert_books_balance(customer)
    assert f'<li id="message-{old.pk}" hx-swap-oob="delete">' in frames[0]
    assert f'id="message-{question.pk}"' not in frames[0]
    assert f'id="answer-{new.pk}-tail"' in frames[0]
    assert list(conversation.shown_messages()) == [question, new]
    assert conversation.spent_micro_usd() == first.cost_micro_usd + second.cost_micro_usd


async def test_edit_and_resend_replaces_the_last_exchange(
    connect_as, customer, conversation, fast_demo
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "First question")
        await frames_until(communicator, DONE)
        await ask(communicator, "Second question with a typo")
        await frames_until(communicator, DONE)
        await ask(communicator, "Second question", action="edit")
        frames = await frames_until(communicator, DONE)

    q1, a1, q2, a2, q3, a3 = Message.objects.order_by("id")
    assert [m.replaced for m in (q1, a1, q2, a2, q3, a3)] == [
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    assert q3.content == "Second question"
    assert 'You said: "Second question"' in a3.content
    records = list(UsageRecord.objects.settled().order_by("created_at", "id"))
    assert len(records) == 3
    # The edit carried the first exchange and the new question, not the replaced one.
    assert records[2].prompt_tokens < records[1].prompt_tokens
    assert_books_balance(customer)
    assert f'<li id="message-{q2.pk}" hx-swap-oob="delete">' in frames[0]
    assert f'<li id="message-{a2.pk}" hx-swap-oob="delete">' in frames[0]
    assert list(conversation.shown_messages()) == [q1, a1, q3, a3]


async def test_regenerate_with_nothing_asked_is_refused_and_bills_nothing(
    connect_as, customer, conversation, fast_demo
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await act(communicator, "regenerate")
        frame = await communicator.receive_from(timeout=TIMEOUT)
        await act(communicator, "explode")
        unknown = await communicator.receive_from(timeout=TIMEOUT)

    assert "There is no question to answer again yet." in frame
    assert "unexpected" in unknown
    assert not Message.objects.exists()
    assert not UsageRecord.objects.exists()


async def test_retry_after_an_upstream_failure_answers_and_bills_once(
    connect_as, customer, upstream_conversation, fake_upstream
):
    fake_upstream.script("primary-model", Fail(status=503, retry_after=1))
    async with open_socket(connect_as(customer.user, upstream_conversation.pk)) as communicator:
        await ask(communicator, "Hello")
        failed = await frames_until(communicator, "The answer failed")
        forget_cooldowns()  # the upstream is back
        await act(communicator, "retry")
        await frames_until(communicator, DONE)

    assert '"action": "retry"' in failed[-1]
    _question, broken, answer = Message.objects.order_by("id")
    assert (broken.status, broken.replaced) == (Message.Status.ERROR, True)
    assert (answer.status, answer.replaced) == (Message.Status.OK, False)
    statuses = list(
        UsageRecord.objects.settled().order_by("created_at", "id").values_list("status", flat=True)
    )
    assert statuses == ["error", "ok"]
    assert_books_balance(customer)


async def test_the_settings_go_with_every_turn_and_the_model_can_change_mid_thread(
    connect_as, customer, upstream_conversation, fake_upstream, demo_catalog
):
    chat = upstream_conversation
    type(chat).objects.filter(pk=chat.pk).update(
        system_prompt="Answer like a pirate.", temperature="0.30", max_tokens=50
    )
    async with open_socket(connect_as(customer.user, chat.pk)) as communicator:
        await ask(communicator, "Hello")
        await frames_until(communicator, DONE)
        type(chat).objects.filter(pk=chat.pk).update(model="demo", temperature=None)
        await ask(communicator, "And now?")
        await frames_until(communicator, DONE)

    (sent,) = fake_upstream.requests_for("primary-model")
    assert sent.json["messages"] == [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hello"},
    ]
    assert sent.json["temperature"] == 0.3
    assert sent.json.get("max_tokens", sent.json.get("max_completion_tokens")) == 50
    first, second = UsageRecord.objects.settled().order_by("created_at", "id")
    assert (first.model, second.model) == ("gpt-test", "demo")
    answers = list(Message.objects.filter(role="assistant").order_by("id"))
    assert [a.model for a in answers] == ["gpt-test", "demo"]
    # The demo model saw the system prompt, the first exchange and the new question.
    history = [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": answers[0].content},
        {"role": "user", "content": "And now?"},
    ]
    assert second.prompt_tokens == count_prompt(history)
    assert_books_balance(customer)


@pytest.fixture
def small_window(demo_catalog, fast_demo):
    """The demo model with a 400-token window, so a few turns fill it."""
    Model.objects.filter(id="demo").update(context_length=400, max_output_tokens=100)
    invalidate_catalog()
    cache.clear()
    yield get_catalog().resolve("demo")
    invalidate_catalog()


async def test_a_long_history_is_trimmed_oldest_first_before_the_hold(
    connect_as, customer, conversation, small_window
):
    type(conversation).objects.filter(pk=conversation.pk).update(system_prompt="Be brief.")
    limit = small_window.context_length - answer_room(small_window, None)
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        for n in range(6):
            await ask(communicator, f"Question number {n}: " + "words " * 20)
            await frames_until(communicator, DONE)

    records = list(UsageRecord.objects.settled().order_by("created_at", "id"))
    assert [r.status for r in records] == ["ok"] * 6
    assert all(r.prompt_tokens <= limit for r in records)
    full = [{"role": "system", "content": "Be brief."}, *conversation.history()]
    assert count_prompt(full) > small_window.context_length  # it would not have fit
    answers = list(Message.objects.filter(role="assistant").order_by("id"))
    assert answers[0].trimmed == 0
    assert answers[-1].trimmed > 0
    assert answers[-1].trimmed % 2 == 0  # whole exchanges
    # The last prompt kept the system prompt and the newest exchanges.
    kept = full[:1] + full[1 + answers[-1].trimmed : 1 + 10]
    last_question = {"role": "user", "content": Message.objects.filter(role="user").last().content}
    assert records[-1].prompt_tokens == count_prompt([*kept, last_question])
    assert_books_balance(customer)


async def test_a_question_too_long_for_the_window_is_refused_with_its_count(
    connect_as, customer, conversation, small_window
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "word " * 400)
        frame = await communicator.receive_from(timeout=TIMEOUT)

    assert "This message is 4" in frame
    assert "this model takes at most 300 with room left for the answer" in frame
    assert not Message.objects.exists()
    assert not UsageRecord.objects.exists()
    assert not Hold.objects.exists()


async def test_a_message_over_the_character_limit_is_refused_not_cut(
    connect_as, customer, conversation, fast_demo
):
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "x" * (MAX_MESSAGE_CHARS + 1))
        frame = await communicator.receive_from(timeout=TIMEOUT)

    assert "at most 32,000 characters (this one has 32001)" in frame
    assert not Message.objects.exists()


async def test_the_answer_streams_as_rendered_markdown_blocks(
    connect_as, customer, conversation, fast_demo, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 20
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, "Say **bold** and `a < b` and ~~old~~")
        frames = await frames_until(communicator, DONE)

    answer = Message.objects.get(role="assistant")
    tails = [f for f in frames if f'id="answer-{answer.pk}-tail" hx-swap-oob="innerHTML"' in f]
    assert len(tails) > 3
    assert any("<strong>bold</strong>" in f for f in tails)
    assert any("<code>a &lt; b</code>" in f for f in tails)
    assert not any("<script" in f for f in frames)
    assert "<s>old</s>" in frames[-1]
    assert 'class="chat-meter' in frames[-1]
