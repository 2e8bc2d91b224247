"""RAG end to end: a document uploaded over HTTP grounds an answer asked with the openai SDK.

The gateway is the real ASGI application under uvicorn, the upstream the fake one on
127.0.0.1, which records what it was sent: the passage must reach it, the answer must
cite it, and the added tokens must be in the hold and the charge, billed once. Another
account asking the same question never gets the passage.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from django.test import Client

from billing.models import LedgerEntry
from gateway.calls import worst_case_cost
from gateway.catalog import get_catalog
from gateway.documents.grounding import BEGIN, END
from gateway.documents.models import Document
from gateway.models import Model, Provider, Route
from gateway.tokens import count_prompt
from tests.fakes.upstream import prompt_tokens_for
from tests.gateway.test_chat_completions_sdk import (
    assert_books_balance,
    expected_cost,
    wait_for_record,
)

pytestmark = pytest.mark.django_db(transaction=True)

FACT = "The Quokka project's launch code is ZEBRA-4417."
HANDBOOK = f"""# Quokka handbook

## Launch

{FACT} Only the release manager may use it.

## Lunch

The canteen serves soup on Tuesdays.
"""
QUESTION = [{"role": "user", "content": "What is the launch code of the Quokka project?"}]
MAX_TOKENS = 50


@pytest.fixture
def catalog(fake_upstream):
    provider = Provider.objects.create(
        name="primary", kind="openai", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    model = Model.objects.create(
        id="gpt-test",
        context_length=8_000,
        max_output_tokens=1_000,
        input_price=2_000_000,
        output_price=8_000_000,
        cached_input_price=500_000,
    )
    Route.objects.create(model=model, provider=provider, upstream_model="primary-model")
    return fake_upstream


def upload(base_url: str, secret: str, name: str, text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base_url}/v1/documents",
        headers={"Authorization": f"Bearer {secret}"},
        files={"file": (name, text.encode(), "text/markdown")},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def sdk(base_url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=secret, max_retries=0, timeout=10)


def sent_messages(fake) -> list[dict[str, Any]]:
    (request,) = fake.requests
    return request.json["messages"]


def worst_case(messages: list[dict[str, Any]]) -> int:
    return worst_case_cost(get_catalog().resolve("gpt-test"), count_prompt(messages), MAX_TOKENS)


def test_an_answer_is_grounded_in_the_accounts_document_and_bills_the_passage_once(
    live_server_url, customer, catalog
):
    document = upload(live_server_url, customer.secret, "handbook.md", HANDBOOK)
    client = sdk(live_server_url, customer.secret)

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        extra_body={"rag": {"enabled": True, "top_k": 2}},
    )
    reply = raw.parse()

    messages = sent_messages(catalog)
    assert messages[-1] == QUESTION[0]
    context = messages[-2]
    assert context["role"] == "system"
    assert BEGIN in context["content"] and END in context["content"]
    assert FACT in context["content"] and "Source: handbook.md — Launch" in context["content"]
    sources = reply.model_extra["rag"]["sources"]
    assert sources and sources[0]["document_id"] == document["id"]
    assert sources[0]["document_name"] == "handbook.md"
    assert isinstance(sources[0]["passage_id"], int)

    record = wait_for_record(raw.headers["x-request-id"])
    assert record.rag_sources == sources
    # The hold was placed for the prompt with the passages in it, and the upstream's
    # count of that prompt is what was charged.
    assert record.reserved_micro_usd == worst_case(messages)
    assert record.reserved_micro_usd > worst_case(QUESTION)
    assert record.prompt_tokens == prompt_tokens_for(messages) > prompt_tokens_for(QUESTION)
    cost = expected_cost(record.prompt_tokens, record.completion_tokens)
    assert record.cost_micro_usd == cost == int(raw.headers["x-request-cost-micro-usd"])
    entries = LedgerEntry.objects.filter(idempotency_key__startswith="usage:")
    assert [(e.idempotency_key, e.amount_micro_usd) for e in entries] == [
        (f"usage:{record.request_id}", -cost)
    ]
    assert_books_balance(customer.account)
    browser = Client()
    browser.force_login(customer.user)
    log = browser.get(f"/billing/usage/{record.request_id}/").content.decode()
    assert "Grounded in" in log and "handbook.md" in log
    assert f"passage {sources[0]['passage_id']}" in log


def test_a_stream_names_its_sources_in_a_chunk_before_the_usage(live_server_url, customer, catalog):
    document = upload(live_server_url, customer.secret, "handbook.md", HANDBOOK)
    client = sdk(live_server_url, customer.secret)

    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=QUESTION,
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"rag": {"enabled": True}},
        )
    )

    assert FACT in sent_messages(catalog)[-2]["content"]
    (position,) = [i for i, c in enumerate(chunks) if (c.model_extra or {}).get("rag")]
    sources = chunks[position].model_extra["rag"]["sources"]
    assert chunks[position].choices == []
    assert [s["document_id"] for s in sources][:1] == [document["id"]]
    assert chunks[position + 1].usage is not None and position + 2 == len(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    # The stream's id is the request's (chatcmpl-<id> for req_<id>); it settles just after [DONE].
    record = wait_for_record("req_" + chunks[0].id.removeprefix("chatcmpl-"))
    assert record.rag_sources == sources and record.stream
    assert record.prompt_tokens == prompt_tokens_for(sent_messages(catalog))
    assert_books_balance(customer.account)


def test_another_account_never_retrieves_the_document(live_server_url, make_customer, catalog):
    owner, stranger = make_customer(), make_customer()
    upload(live_server_url, owner.secret, "handbook.md", HANDBOOK)

    reply = sdk(live_server_url, stranger.secret).chat.completions.create(
        model="gpt-test", messages=QUESTION, extra_body={"rag": {"enabled": True, "top_k": 20}}
    )

    assert reply.model_extra["rag"] == {"sources": []}
    messages = sent_messages(catalog)
    assert messages == QUESTION
    assert "ZEBRA" not in str(catalog.requests[0].json)


def test_without_rag_nothing_is_retrieved_and_the_answer_has_no_rag_field(
    live_server_url, customer, catalog
):
    upload(live_server_url, customer.secret, "handbook.md", HANDBOOK)
    client = sdk(live_server_url, customer.secret)

    plain = client.chat.completions.create(model="gpt-test", messages=QUESTION)
    off = client.chat.completions.create(
        model="gpt-test", messages=QUESTION, extra_body={"rag": {"enabled": False}}
    )

    assert "rag" not in (plain.model_extra or {}) and "rag" not in (off.model_extra or {})
    assert [r.json["messages"] for r in catalog.requests] == [QUESTION, QUESTION]


def test_parallel_uploads_never_pass_the_accounts_document_limit(
    live_server_url, customer, settings
):
    settings.DOCUMENTS_MAX_PER_ACCOUNT = 3

    def post(number: int) -> int:
        return httpx.post(
            f"{live_server_url}/v1/documents",
            headers={"Authorization": f"Bearer {customer.secret}"},
            files={"file": (f"note-{number}.txt", f"note number {number}".encode())},
            timeout=10,
        ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(post, range(6)))

    assert statuses == [201, 201, 201, 403, 403, 403]
    assert Document.objects.filter(account=customer.account).count() == 3
