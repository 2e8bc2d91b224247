"""The chat socket with a mode as the conversation's model: `auto` and a persona."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from billing.models import Hold, UsageRecord
from chat.models import Message
from gateway.models import Persona
from gateway.tokens import count_prompt
from tests.chat.conftest import ask, frames_until, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def answer_in(connect_as, customer, conversation, text: str) -> Message:
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        await ask(communicator, text)
        await frames_until(communicator, "Answer complete")
    return await Message.objects.filter(conversation=conversation, role="assistant").alast()


async def test_a_conversation_on_auto_is_routed_and_billed_at_the_chosen_model(
    connect_as, customer, make_conversation, fast_demo
):
    conversation = await sync_to_async(make_conversation)(customer.user, model="auto")

    answer = await answer_in(connect_as, customer, conversation, "Hello there")

    assert answer.status == Message.Status.OK
    record = await UsageRecord.objects.aget(request_id=answer.request_id)
    assert (record.model, record.requested_model, record.source) == ("demo", "auto", "web")
    assert answer.cost_micro_usd == record.cost_micro_usd > 0


async def test_a_conversation_with_a_persona_sends_its_prompt_and_stays_billed_once(
    connect_as, customer, make_conversation, fast_demo, settings
):
    settings.PERSONA_MEMORY_MODEL = ""  # no memory step: the turn alone is billed
    await Persona.objects.acreate(
        owner=customer.user, name="Pirate", slug="pirate", system_prompt="Talk like a pirate."
    )
    conversation = await sync_to_async(make_conversation)(customer.user, model="persona/pirate")

    answer = await answer_in(connect_as, customer, conversation, "Ahoy")

    record = await UsageRecord.objects.aget(account=customer.account)
    assert (record.requested_model, record.model) == ("persona/pirate", "demo")
    assert answer.request_id == record.request_id
    # The demo model counts what it was sent: the persona's prompt, then the question.
    sent = [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "Ahoy"},
    ]
    assert record.prompt_tokens == count_prompt(sent)
    assert not await Hold.objects.filter(account=customer.account).aexists()
