"""Personas with memory (`model: "persona/<slug>"`, `"lcm"`) through the SDKs, live.

The fake upstream records what it is sent, so the tests read the persona's system
prompt and memory where the model reads them. The memory step is the fake's
`memory-model`, scripted to answer facts; every exchange is billed as two calls (the
answer, then the memory step), each once and within its own hold.
"""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from billing.models import Account, Hold, LedgerEntry, UsageRecord
from gateway.models import Model, Persona, PersonaMemory, Provider, Route, RouterProfile
from tests.fakes.upstream import Fail, Ok

pytestmark = pytest.mark.django_db(transaction=True)

COACH_PROMPT = "You are Coach, a patient chess coach."
PRICES = {
    "chat-model": (2_000_000, 8_000_000),
    "memory-model": (100_000, 400_000),
    "claude-model": (3_000_000, 15_000_000),
}
FACTS = "- The user's name is Ada.\n- The user plays the Sicilian Defence."


@pytest.fixture
def catalog(fake_upstream, settings):
    settings.PERSONA_MEMORY_MODEL = "memory-model"
    openai_kind = Provider.objects.create(
        name="fake", kind="openai", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    anthropic_kind = Provider.objects.create(
        name="fake-anthropic", kind="anthropic", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    for model_id, (input_price, output_price) in PRICES.items():
        model = Model.objects.create(
            id=model_id, input_price=input_price, output_price=output_price, context_length=32_000
        )
        provider = anthropic_kind if model_id.startswith("claude") else openai_kind
        Route.objects.create(model=model, provider=provider, upstream_model=model_id)
    RouterProfile.objects.create(model_id="chat-model", tier=1)
    return fake_upstream


@pytest.fixture
def coach(catalog):
    Persona.objects.filter(is_default=True).delete()
    return Persona.objects.create(
        name="Coach", slug="coach", system_prompt=COACH_PROMPT, model="chat-model", avatar="♞"
    )


@pytest.fixture
def client(live_server_url, customer, coach):
    return openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=0, timeout=10
    )


def price(model_id: str, record: UsageRecord) -> int:
    input_price, output_price = PRICES[model_id]
    total = record.prompt_tokens * input_price + record.completion_tokens * output_price
    return -(-total // 1_000_000)


def wait_for_memory_steps(account: Account, count: int = 1) -> list[UsageRecord]:
    """The memory step runs after the answer was sent: wait (bounded) for its records."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        steps = list(
            UsageRecord.objects.filter(
                account=account, requested_model__startswith="persona-memory/"
            )
        )
        if len(steps) >= count and not Hold.objects.filter(account=account).exists():
            return steps
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} memory steps were settled")


def wait_for_facts(user, persona) -> PersonaMemory:
    """The facts are saved just after the memory step's call settles: wait (bounded)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        memory = PersonaMemory.objects.filter(user=user, persona=persona).first()
        if memory is not None and memory.fact_list:
            return memory
        time.sleep(0.05)
    raise AssertionError(f"{persona} remembered nothing about {user}")


def assert_books_balance(account: Account) -> None:
    account.refresh_from_db()
    assert account.held_micro_usd == 0
    assert not Hold.objects.filter(account=account).exists()
    assert account.ledger_sum() == account.balance_micro_usd


def system_sent(fake, model: str = "chat-model") -> str:
    return fake.requests_for(model)[-1].json["messages"][0]["content"]


def test_the_persona_prompt_and_its_memory_reach_the_model(client, customer, coach, catalog):
    PersonaMemory.objects.create(user=customer.user, persona=coach, facts="Likes short answers")
    raw = client.chat.completions.with_raw_response.create(
        model="persona/coach", messages=[{"role": "user", "content": "Which opening?"}]
    )
    reply = raw.parse()

    sent = catalog.requests_for("chat-model")[-1].json["messages"]
    assert sent[0]["role"] == "system"
    assert sent[0]["content"].startswith(COACH_PROMPT)
    assert "- Likes short answers" in sent[0]["content"]
    assert sent[1:] == [{"role": "user", "content": "Which opening?"}]
    assert reply.model == raw.headers["x-routed-model"] == "chat-model"
    record = UsageRecord.objects.get(request_id=raw.headers["x-request-id"])
    assert (record.model, record.requested_model) == ("chat-model", "persona/coach")
    # The hold covered the persona's prompt: it is counted in the billed prompt.
    assert record.prompt_tokens > 20
    wait_for_memory_steps(customer.account)


def test_memory_is_kept_across_conversations_and_each_step_is_billed_once(
    client, customer, coach, catalog
):
    catalog.script("memory-model", Ok(text=FACTS))
    raw = client.chat.completions.with_raw_response.create(
        model="persona/coach",
        messages=[{"role": "user", "content": "Hi, I'm Ada. I play the Sicilian."}],
    )
    answer = UsageRecord.objects.get(request_id=raw.headers["x-request-id"])
    [step] = wait_for_memory_steps(customer.account)

    memory = wait_for_facts(customer.user, coach)
    assert memory.fact_list == ["The user's name is Ada.", "The user plays the Sicilian Defence."]
    # The memory step read the exchange: the question and the answer.
    exchange = catalog.requests_for("memory-model")[-1].json["messages"][1]["content"]
    assert "I'm Ada" in exchange
    assert raw.parse().choices[0].message.content in exchange
    # Two calls, each settled once at its own model's price, within its own hold.
    assert (step.model, step.requested_model, step.status) == (
        "memory-model",
        "persona-memory/coach",
        UsageRecord.Status.OK,
    )
    for record, model in ((answer, "chat-model"), (step, "memory-model")):
        assert record.cost_micro_usd == price(model, record) > 0
        assert record.cost_micro_usd <= record.reserved_micro_usd
        entry = LedgerEntry.objects.get(idempotency_key=f"usage:{record.request_id}")
        assert entry.amount_micro_usd == -record.cost_micro_usd
    assert UsageRecord.objects.filter(account=customer.account).count() == 2
    assert_books_balance(customer.account)

    # A new conversation: the persona remembers.
    client.chat.completions.create(
        model="persona/coach", messages=[{"role": "user", "content": "What do I play?"}]
    )
    system = system_sent(catalog)
    assert "- The user's name is Ada." in system
    assert "- The user plays the Sicilian Defence." in system
    wait_for_memory_steps(customer.account, count=2)
    # The second step found nothing new (the fake's default answer has no facts).
    memory.refresh_from_db()
    assert len(memory.fact_list) == 2


def test_a_failing_memory_step_leaves_the_answer_and_its_bill_alone(client, customer, catalog):
    catalog.script("memory-model", Fail(status=400, message="bad request"))
    reply = client.chat.completions.create(
        model="persona/coach", messages=[{"role": "user", "content": "I am Ada."}]
    )

    assert reply.choices[0].message.content.startswith("Hello from chat-model")
    [step] = wait_for_memory_steps(customer.account)
    assert step.status == UsageRecord.Status.ERROR
    answer = UsageRecord.objects.get(requested_model="persona/coach")
    assert answer.status == UsageRecord.Status.OK
    assert answer.cost_micro_usd == price("chat-model", answer) > 0
    assert LedgerEntry.objects.filter(idempotency_key=f"usage:{answer.request_id}").count() == 1
    assert not PersonaMemory.objects.filter(user=customer.user, facts__gt="").exists()
    assert_books_balance(customer.account)


def test_a_streamed_answer_is_remembered_too(client, customer, coach, catalog):
    catalog.script("memory-model", Ok(text="- The user is learning chess."))
    stream = client.chat.completions.create(
        model="persona/coach",
        messages=[{"role": "user", "content": "I'm learning chess."}],
        stream=True,
    )
    chunks = list(stream)

    assert {chunk.model for chunk in chunks} == {"chat-model"}
    wait_for_memory_steps(customer.account)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in catalog.requests_for("memory-model")[-1].json["messages"][1]["content"]
    memory = wait_for_facts(customer.user, coach)
    assert memory.fact_list == ["The user is learning chess."]


def test_lcm_is_the_default_public_persona(client, customer, catalog):
    Persona.objects.create(
        name="Helper", slug="helper", system_prompt="You are Helper.", model="auto", is_default=True
    )
    reply = client.chat.completions.create(
        model="lcm", messages=[{"role": "user", "content": "Hi"}]
    )

    # Helper answers through the router, which has one candidate.
    assert reply.model == "chat-model"
    assert system_sent(catalog) == "You are Helper."
    assert UsageRecord.objects.get(requested_model="lcm").model == "chat-model"
    wait_for_memory_steps(customer.account)


def test_lcm_without_a_default_persona_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="lcm", messages=[{"role": "user", "content": "Hi"}])

    assert missing.value.body["code"] == "persona_not_found"
    assert "default persona" in missing.value.body["message"]


def test_another_users_persona_is_a_404_and_its_own_slug_wins_over_a_public_one(
    client, customer, make_customer, catalog
):
    other = make_customer()
    Persona.objects.create(owner=other.user, name="Secret", slug="secret", system_prompt="S")
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="persona/secret", messages=[{"role": "user", "content": "Hi"}]
        )
    assert missing.value.body["code"] == "persona_not_found"
    assert not UsageRecord.objects.exists()

    Persona.objects.create(
        owner=customer.user,
        name="My coach",
        slug="coach",
        system_prompt="Mine.",
        model="chat-model",
    )
    client.chat.completions.create(
        model="persona/coach", messages=[{"role": "user", "content": "Hi"}]
    )
    assert system_sent(catalog) == "Mine."
    wait_for_memory_steps(customer.account)


def test_the_messages_door_sends_the_persona_prompt_to_an_anthropic_route(
    live_server_url, customer, coach, catalog
):
    coach.model = "claude-model"
    coach.save()
    client = anthropic.Anthropic(
        base_url=live_server_url, api_key=customer.secret, max_retries=0, timeout=10
    )
    raw = client.messages.with_raw_response.create(
        model="persona/coach",
        max_tokens=200,
        system="Answer in English.",
        messages=[{"role": "user", "content": "Hello"}],
    )

    assert raw.parse().model == "claude-model"
    sent = catalog.requests_for("claude-model")[-1].json
    system = sent["system"] if isinstance(sent["system"], str) else sent["system"][0]["text"]
    assert system.startswith(COACH_PROMPT)
    record = UsageRecord.objects.get(request_id=raw.headers["x-request-id"])
    assert (record.requested_model, record.source) == ("persona/coach", "messages")
    wait_for_memory_steps(customer.account)
    assert_books_balance(customer.account)


def test_a_memory_step_the_balance_cannot_cover_is_skipped_and_the_answer_billed_once(
    live_server_url, make_customer, coach, catalog, caplog
):
    # Enough for the answer's worst case (5 tokens out), not then for the memory step's.
    poor = make_customer(credit_micro_usd=150)
    client = openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=poor.secret, max_retries=0, timeout=10
    )
    caplog.set_level("INFO", logger="gateway.personas")
    client.chat.completions.create(
        model="persona/coach", messages=[{"role": "user", "content": "Hi"}], max_tokens=5
    )

    deadline = time.monotonic() + 10
    while "memory step for persona coach skipped" not in caplog.text:
        assert time.monotonic() < deadline, "the memory step was neither run nor skipped"
        time.sleep(0.05)
    assert "Insufficient credits" in caplog.text
    [answer] = UsageRecord.objects.settled().filter(account=poor.account)
    assert answer.requested_model == "persona/coach"
    assert 0 < answer.cost_micro_usd <= answer.reserved_micro_usd
    poor.account.refresh_from_db()
    assert poor.account.balance_micro_usd == 150 - answer.cost_micro_usd >= 0
    assert_books_balance(poor.account)


def test_the_responses_door_takes_a_persona_and_auto(client, customer, catalog):
    persona = client.responses.create(model="persona/coach", input="Hello", store=False)
    routed = client.responses.create(model="auto", input="Hello", store=False)

    assert persona.model == routed.model == "chat-model"
    first, second = catalog.requests_for("chat-model")[:2]
    assert first.json["messages"][0]["content"].startswith(COACH_PROMPT)
    assert second.json["messages"] == [{"role": "user", "content": "Hello"}]
    wait_for_memory_steps(customer.account)
    # The memory step is billed under the door of its exchange.
    records = UsageRecord.objects.filter(source=UsageRecord.Source.RESPONSES)
    assert sorted(records.values_list("requested_model", flat=True)) == [
        "auto",
        "persona-memory/coach",
        "persona/coach",
    ]
    assert_books_balance(customer.account)


@pytest.mark.parametrize(
    "name", ["persona/", "persona/nobody", "persona/../coach", "persona/coach/extra", "PERSONA/x"]
)
def test_a_name_that_is_no_persona_of_this_account_is_a_404(client, name):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])

    assert missing.value.body["code"] == "persona_not_found"
    assert missing.value.body["param"] == "model"
    assert not UsageRecord.objects.exists()
